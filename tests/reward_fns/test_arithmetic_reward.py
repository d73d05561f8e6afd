"""The demo task's reward: 1 when the last number of the response is the answer, else 0."""

import pytest

from reward_fns.arithmetic import compute_score, extract_answer


@pytest.mark.parametrize("text,truth,score", [
    ("56", "56", 1.0),
    ("56.", "56", 1.0),
    ("7 * 8 = 56", "56", 1.0),                          # worked out: the final number counts
    ("The answer is 56.0", "56", 1.0),
    ("55", "56", 0.0),
    ("7 * 8 = 56, so the answer is 54", "56", 0.0),     # the last number counts, not any number
    ("56 or 54", "56", 0.0),                            # hedging does not pay
    ("56. What is 7 * 8?", "56", 0.0),                  # restating the question after the answer
    ("fifty-six", "56", 0.0),                           # no number
    ("", "56", 0.0),
    ("7 * 8 = 560", "56", 0.0),
    ("5 6", "56", 0.0),
    ("The total is 1,042", "1042", 1.0),                # thousands separator
    ("3,4,5", "345", 0.0),                              # a list, not a number
    ("8-56", "56", 1.0),                                # a dash after a digit is not a sign
    ("-56", "56", 0.0),
    ("-7", "-7", 1.0),
])
def test_reward(text, truth, score):
    assert compute_score("tinylora/arithmetic", text, truth) == score


def test_extract():
    assert extract_answer("x = -7 then 12") == "12"
    assert extract_answer("1,042,000 apples") == "1042000"
    assert extract_answer(None) is None
    assert extract_answer("no digits") is None


def test_real_samples_of_the_base_model():
    """Responses SmolLM2-135M-Instruct sampled for the demo prompt (T=1), scored as a reader would."""
    assert compute_score(None, "2 * 2 = 4", "4") == 1.0
    assert compute_score(None, "To calculate 2 * 3, you simply multiply 2 by 3.", "6") == 0.0
    assert compute_score(None, "Two equals four. Two numbers in mathematics.", "4") == 0.0
    assert compute_score(None, "To perform multiplication operations, in tutorials and other languages it is "
                               "generally denoted as 4 * 3 = 12.", "12") == 1.0
