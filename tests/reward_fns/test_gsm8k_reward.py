"""Golden cases for reward_fns.gsm8k: extraction precedence, number normalisation, exact match."""

from __future__ import annotations

import pytest

from reward_fns.gsm8k import compute_score, extract_answer, normalize_number

# (response, reference, expected score)
GOLDEN = [
    ("She pays 5 * 3 = 15.\n#### 15", "15", 1.0),
    ("#### 15", "16", 0.0),
    ("The total is $1,234.\n#### $1,234", "1234", 1.0),
    ("#### 1,234,567", "1234567", 1.0),
    ("#### 18.00", "18", 1.0),
    ("#### 18.0.", "18", 1.0),
    ("#### 18.5", "18", 0.0),
    ("#### -7", "-7", 1.0),
    ("#### -7", "7", 0.0),
    ("#### 45%", "45", 1.0),
    ("#### €30", "30", 1.0),
    ("#### 12 apples", "12", 1.0),
    ("#### 0.50", "0.5", 1.0),
    ("#### .5", "0.5", 1.0),
    ("I think 20 first.\n#### 25\nwait maybe 30", "25", 1.0),  # #### beats the last number
    ("#### 3\nlater\n#### 4", "4", 1.0),  # last #### wins
    ("#### 3\nlater\n#### 4", "3", 0.0),
    ("So the answer is \\boxed{42}.", "42", 1.0),  # boxed when no ####
    ("First \\boxed{41} then \\boxed{42}", "42", 1.0),  # last box
    ("\\boxed{\\$1,000} 7 more words 9", "1000", 1.0),  # box beats last number
    ("The answer is 64 dollars.", "64", 1.0),  # last number fallback
    ("13 cookies and 26 cakes", "13", 0.0),
    ("", "5", 0.0),
    ("no digits at all", "5", 0.0),
    ("#### ", "0", 0.0),  # marker with nothing after it
    ("5-3=2 so the result is -4", "-4", 1.0),
    ("The ranges 5-3", "-3", 0.0),  # a hyphen after a digit is not a sign
    ("#### 72", "Natalia sold 48/2 = 24 clips.\n#### 72", 1.0),  # full reference solution as gt
    ("#### 72", 72, 1.0),  # int ground truth
    ("#### 7.25", 7.25, 1.0),
    ("#### 10", None, 0.0),
    (None, "10", 0.0),
    (12345, "12345", 0.0),  # not a str: no crash, no credit
]


@pytest.mark.parametrize("response,reference,expected", GOLDEN)
def test_golden(response, reference, expected):
    assert compute_score("gsm8k", response, reference) == expected


def test_strict_mode_needs_the_marker():
    assert compute_score("gsm8k", "The answer is 64.", "64", strict=True) == 0.0
    assert compute_score("gsm8k", "\\boxed{64}", "64", strict=True) == 0.0
    assert compute_score("gsm8k", "#### 64", "64", strict=True) == 1.0


@pytest.mark.parametrize(
    "token,expected",
    [("1,234.50", "1234.5"), ("18.0", "18"), ("-0", "0"), ("007", "7"), ("0.125", "0.125"), ("abc", None)],
)
def test_normalize_number(token, expected):
    assert normalize_number(token) == expected


def test_extract_answer_is_what_eval_reports():
    assert extract_answer("blah 3 then\n#### 1,000 dollars") == "1000"
    assert extract_answer("nothing") is None


def test_huge_output_is_linear_and_correct():
    text = ("step 1 2 3 " * 200_000) + "#### 99"
    assert compute_score("gsm8k", text, "99") == 1.0
    assert compute_score("gsm8k", "9" * 1_000_000, "9" * 1_000_000) == 1.0


def test_long_numbers_are_compared_exactly():
    a, b = "1" * 40, "1" * 39 + "2"  # equal in the first 28 digits (Decimal's default precision)
    assert compute_score("gsm8k", f"#### {a}", a) == 1.0
    assert compute_score("gsm8k", f"#### {a}", b) == 0.0
    assert normalize_number("") is None and normalize_number("-") is None
