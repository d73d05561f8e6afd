"""The arithmetic reward, per prompt style: "hash" (number after "####", 0.1 format credit) and "number"
(the last number of the response, 1 or 0), chosen by the row's extra_info.style."""

import pytest

from reward_fns.arithmetic import compute_score, extract_answer, extract_last_number
from tinylora_verl.data.arithmetic import make_rows

NUMBER = {"style": "number"}


@pytest.mark.parametrize(
    "text,truth,score",
    [
        ("12 + 30 = 42\n#### 42", "42", 1.0),
        ("#### 41", "42", 0.1),  # format followed, wrong number: format credit
        ("the answer is 42", "42", 0.0),  # no '####': strict format
        ("#### 40 then corrected #### 42", "42", 1.0),  # the last one counts
        ("#### 42 then #### 40", "42", 0.1),
        ("#### 1,042", "1042", 1.0),
        ("####", "42", 0.0),
    ],
)
@pytest.mark.parametrize("extra_info", [None, {"style": "hash"}, {"split": "train"}])
def test_hash_style(text, truth, score, extra_info):
    assert compute_score("tinylora/arithmetic", text, truth, extra_info) == score


@pytest.mark.parametrize(
    "text,truth,score",
    [
        ("56", "56", 1.0),
        ("56.", "56", 1.0),
        ("7 * 8 = 56", "56", 1.0),  # worked out: the final number counts
        ("The answer is 56.0", "56", 1.0),
        ("#### 56", "56", 1.0),
        ("55", "56", 0.0),
        ("7 * 8 = 56, so the answer is 54", "56", 0.0),  # the last number counts, not any number
        ("56 or 54", "56", 0.0),  # hedging does not pay
        ("56. What is 7 * 8?", "56", 0.0),  # restating the question after the answer
        ("fifty-six", "56", 0.0),  # no number, no credit
        ("", "56", 0.0),
        ("7 * 8 = 560", "56", 0.0),
        ("5 6", "56", 0.0),
        ("The total is 1,042", "1042", 1.0),  # thousands separator
        ("3,4,5", "345", 0.0),  # a list, not a number
        ("8-56", "56", 1.0),  # a dash after a digit is not a sign
        ("-56", "56", 0.0),
        ("-7", "-7", 1.0),
    ],
)
def test_number_style(text, truth, score):
    assert compute_score("tinylora/arithmetic", text, truth, NUMBER) == score


def test_style_comes_from_the_row():
    """The rows the data generator writes carry their style; the same text scores as each prompt asked."""
    (hash_row,) = make_rows("mul", 1, 0, "train")
    (number_row,) = make_rows("mul", 1, 0, "train", style="number")
    truth = number_row["reward_model"]["ground_truth"]
    assert compute_score(None, f"It is {truth}", truth, number_row["extra_info"]) == 1.0
    assert compute_score(None, f"It is {truth}", truth, hash_row["extra_info"]) == 0.0
    assert compute_score(None, f"#### {int(truth) + 1}", truth, hash_row["extra_info"]) == 0.1
    assert compute_score(None, f"#### {int(truth) + 1}", truth, number_row["extra_info"]) == 0.0


def test_extract():
    assert extract_answer("x #### -7") == "-7"
    assert extract_answer(None) is None
    assert extract_last_number("x = -7 then 12") == "12"
    assert extract_last_number("1,042,000 apples") == "1042000"
    assert extract_last_number(None) is None
    assert extract_last_number("no digits") is None


def test_real_samples_of_the_base_model():
    """Responses SmolLM2-135M-Instruct sampled for the demo prompt (T=1), scored as a reader would."""
    assert compute_score(None, "2 * 2 = 4", "4", NUMBER) == 1.0
    assert compute_score(None, "To calculate 2 * 3, you simply multiply 2 by 3.", "6", NUMBER) == 0.0
    assert compute_score(None, "Two equals four. Two numbers in mathematics.", "4", NUMBER) == 0.0
    assert (
        compute_score(
            None,
            "To perform multiplication operations, in tutorials and other languages it is "
            "generally denoted as 4 * 3 = 12.",
            "12",
            NUMBER,
        )
        == 1.0
    )
