"""Property-based fuzz: 10,000 random inputs (5,000 per reward), no exception, each call under 1 s, score in {0, 1}.

Inputs mix arbitrary unicode with LaTeX-ish fragments (boxes, fractions, braces, #### markers), so the
extraction code and the math-verify child both see malformed and adversarial text.

Every call, including those that kill a hung math-verify child and those that follow while its
replacement is still importing sympy, stays under 1 s (stretched by the load factor on a busy machine):
MATH's timeout_s (0.5 s here) bounds the whole call (issue 14). Worst cases: test_reward_bounds.py.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reward_fns import gsm8k, math
from reward_fns._verify_worker import shared_worker
from tests.reward_fns.adversarial import load_factor

FRAGMENTS = [
    "\\boxed{",
    "\\fbox{",
    "\\boxed ",
    "}",
    "{",
    "\\{",
    "\\}",
    "\\frac",
    "\\dfrac",
    "\\sqrt",
    "^",
    "_",
    "\\pi",
    "\\infty",
    "\\cup",
    "\\text{",
    "\\left(",
    "\\right)",
    "(",
    ")",
    "[",
    "]",
    ",",
    "=",
    "+",
    "-",
    "*",
    "/",
    ".",
    "$",
    "%",
    "\\%",
    "^\\circ",
    "####",
    "x",
    "y",
    "i",
    "e",
    "0",
    "1",
    "2",
    "7",
    "42",
    "1,000",
    "3.50",
    "-",
    " ",
    "\n",
    "\\\\",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "&",
    "\\cdot",
]
text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
    st.tuples(st.text(max_size=50), st.lists(st.sampled_from(FRAGMENTS), max_size=20).map("".join)).map(
        lambda t: t[0] + "\\boxed{" + t[1] + "}"
    ),
)
ground_truth = st.one_of(text, st.integers(-(10**6), 10**6), st.floats(allow_nan=True), st.none())
FUZZ = settings(
    max_examples=5000, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module", autouse=True)
def warm_math_child():
    """Start the math-verify children (~1 s of imports each, paid once per process, not per call)."""
    assert shared_worker().warm_up()


def _check(fn, solution, gt, **kw):
    t0 = time.perf_counter()
    score = fn("fuzz", solution, gt, **kw)
    seconds = time.perf_counter() - t0
    assert score in (0.0, 1.0)
    bound = load_factor()
    assert seconds < bound, f"{seconds:.2f} s on {solution!r} vs {gt!r} (bound {bound:.1f} s at this load)"
    return score


@FUZZ
@given(solution=text, gt=ground_truth)
def test_gsm8k_fuzz(solution, gt):
    _check(gsm8k.compute_score, solution, gt)


@FUZZ
@given(solution=text, gt=ground_truth)
def test_math_fuzz(solution, gt):
    _check(math.compute_score, solution, gt, timeout_s=0.5)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(answer=st.integers(-(10**9), 10**9))
def test_fuzzed_answers_are_recognised(answer):
    """Random correct answers score 1.0 and off-by-one answers 0.0 (the fuzz is not vacuous)."""
    assert gsm8k.compute_score("fuzz", f"work... #### {answer:,}", str(answer)) == 1.0
    assert gsm8k.compute_score("fuzz", f"work... #### {answer + 1}", str(answer)) == 0.0
    assert math.compute_score("fuzz", f"so $\\boxed{{{answer}}}$", str(answer)) == 1.0
    assert math.compute_score("fuzz", f"so $\\boxed{{{answer + 1}}}$", str(answer)) == 0.0
