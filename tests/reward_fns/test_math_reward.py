"""Golden cases for reward_fns.math: boxed extraction, normalisation, math-verify equivalence."""

from __future__ import annotations

import pytest

from reward_fns._verify_worker import shared_worker
from reward_fns.math import compute_score, extract_answer, normalize

# (response, reference answer, expected score)
GOLDEN = [
    ("So the answer is $\\boxed{5}$.", "5", 1.0),
    ("So the answer is $\\boxed{5}$.", "6", 0.0),
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),  # fraction vs decimal
    ("\\boxed{0.5}", "\\frac12", 1.0),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", 1.0),  # \dfrac
    ("\\boxed{\\tfrac{3}{4}}", "0.75", 1.0),
    ("\\boxed{\\frac{3}{4}}", "\\frac{4}{3}", 0.0),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", 1.0),  # nested braces
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{2}}{2}", 0.0),
    ("\\boxed{10\\text{ cm}}", "10", 1.0),  # \text{} units
    ("\\boxed{10 \\text{ inches}}", "10", 1.0),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", 1.0),
    ("\\boxed{\\text{Evelyn}}", "\\text{Amy}", 0.0),
    ("\\boxed{90^\\circ}", "90", 1.0),  # degrees
    ("\\boxed{90^{\\circ}}", "90^\\circ", 1.0),
    ("\\boxed{50\\%}", "50", 1.0),
    ("\\boxed{(1, 2]}", "(1,2]", 1.0),  # intervals
    ("\\boxed{(1, 2)}", "(1,2]", 0.0),
    ("\\boxed{[-3, \\infty)}", "[-3,\\infty)", 1.0),
    ("\\boxed{(-\\infty, 0) \\cup (1, \\infty)}", "(-\\infty,0)\\cup(1,\\infty)", 1.0),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})", 1.0),
    ("\\boxed{x=5}", "5", 1.0),
    ("\\boxed{5}", "x = 5", 1.0),
    ("\\boxed{2x+3}", "3+2x", 1.0),  # symbolic equality
    ("\\boxed{2x+3}", "2x+4", 0.0),
    ("\\boxed{3\\sqrt{13}}", "\\sqrt{117}", 1.0),
    ("\\boxed{6 - 5i}", "6-5i", 1.0),
    ("\\boxed{\\pi}", "\\pi", 1.0),
    ("\\boxed{1,-2}", "-2, 1", 1.0),  # solution sets in any order
    ("\\boxed{\\{1,2\\}}", "\\{2,1\\}", 1.0),
    ("\\boxed{10,000}", "10000", 1.0),  # thousands separator
    ("\\boxed{10{,}000}", "10000", 1.0),
    ("first \\boxed{4} then \\boxed{7}", "7", 1.0),  # multiple boxes: last wins
    ("first \\boxed{7} then \\boxed{4}", "7", 0.0),
    ("\\fbox{12}", "12", 1.0),
    ("\\boxed{12} and then \\boxed{13", "12", 1.0),  # truncated final box ignored
    ("The answer is 5.", "5", 0.0),  # no box, no credit
    ("", "5", 0.0),
    ("\\boxed{}", "5", 0.0),
    ("\\boxed{5}", "", 0.0),
    ("\\boxed{5}", None, 0.0),
    (None, "5", 0.0),
    ("\\boxed{27}", 27.0, 1.0),  # numeric ground truth (amc23 style)
    ("\\boxed{27}", "27.0", 1.0),
    ("\\boxed{5}", "The answer is $\\boxed{5}$.", 1.0),  # full reference solution as gt
    ("\\boxed{\\frac{1}{0}}", "5", 0.0),  # nonsense math must not crash
    ("\\boxed{\\frac{", "5", 0.0),
    ("\\boxed{" + "x" * 5000 + "}", "5", 0.0),  # huge answer: string compare only
    ("x" * 2_000_000 + "\\boxed{8}", "8", 1.0),  # huge output
]


@pytest.fixture(scope="module", autouse=True)
def warm_math_children():
    """Every math-verify child ready: the golden cases test verdicts, not sympy's start-up time."""
    assert shared_worker().warm_up()


@pytest.mark.parametrize("response,reference,expected", GOLDEN)
def test_golden(response, reference, expected):
    assert compute_score("math500", response, reference) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("\\left( 3, \\dfrac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("x = 5.", "5"),
        ("\\text{(A)}", "(A)"),
        ("{42}", "42"),
        ("{1}+{2}", "{1}+{2}"),  # outer braces that do not group the whole answer stay
        ("1,234", "1234"),
        ("$7$", "7"),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_extract_answer():
    assert extract_answer("... $\\boxed{ \\frac{1}{2} }$") == "\\frac{1}{2}"
    assert extract_answer("no box") is None
