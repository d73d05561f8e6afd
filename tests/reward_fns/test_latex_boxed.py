"""reward_fns._latex.last_boxed: nesting, escaped braces, truncation, brace-less boxes."""

from __future__ import annotations

import time

import pytest

from reward_fns._latex import boxed_all, last_boxed

CASES = [
    ("\\boxed{5}", "5"),
    ("a \\boxed{1} b \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
    ("\\fbox{7}", "7"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces are literal
    ("\\boxed{3} and then \\boxed{4", "3"),  # truncated last box: the complete one counts
    ("\\boxed 5$ done", "5"),  # brace-less form
    ("\\boxed {6}", "6"),
    ("\\boxedx{6}", None),  # not a box command
    ("no box here", None),
    ("\\boxed{}", ""),
    ("\\boxed{a}{b}", "a"),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_boxed_all_order():
    assert boxed_all("\\boxed{1} x \\fbox{2} y \\boxed{{3}}") == ["1", "2", "{3}"]


def test_pathological_inputs_are_linear():
    t0 = time.perf_counter()
    assert last_boxed("\\boxed{" * 200_000) is None
    assert last_boxed("{" * 500_000 + "\\boxed{9}") == "9"
    assert last_boxed("\\boxed{" + "{}" * 200_000 + "}") == "{}" * 200_000
    assert time.perf_counter() - t0 < 5.0
