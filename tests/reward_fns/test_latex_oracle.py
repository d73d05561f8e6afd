"""The linear box scanner answers as the former quadratic one did (kept here as the oracle) on small input."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from reward_fns._latex import boxed_all, last_boxed
from reward_fns.math import normalize

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_RE = re.compile(r"(\\*)([{}])")
_BARE_END_RE = re.compile(r"[\s$]")


def _oracle_boxed_all(text: str) -> list[str]:
    """reward_fns/_latex.py before issue 14 (quadratic on backslash runs, O(depth²) memory)."""
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    if not starts:
        return []
    stack, pairs = [], {}
    for m in _BRACE_RE.finditer(text, starts[0]):
        if len(m.group(1)) % 2 == 0:
            if m.group(2) == "{":
                stack.append(m.start(2))
            elif stack:
                pairs[stack.pop()] = m.start(2)
    out = []
    for pos in starts:
        brace = pos
        while brace < len(text) and text[brace] in " \t":
            brace += 1
        if brace < len(text) and text[brace] == "{":
            if pairs.get(brace) is not None:
                out.append(text[brace + 1 : pairs[brace]])
        elif pos < len(text) and text[pos] in " \t":
            m = _BARE_END_RE.search(text, brace)
            content = text[brace : m.start() if m else len(text)]
            if content:
                out.append(content)
    return out


def _oracle_outer_strip(s: str) -> str:
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}":
        found = _oracle_boxed_all("\\boxed" + s)
        if not found or found[-1] != s[1:-1]:
            break
        s = s[1:-1]
    return s


PIECES = [
    "\\boxed",
    "\\fbox",
    "\\boxedx",
    "{",
    "}",
    "\\",
    "\\\\",
    " ",
    "\t",
    "\n",
    "$",
    "5",
    "a",
    "x{}",
    "\\{",
]
latexish = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@settings(max_examples=3000, deadline=None, database=None, derandomize=True)
@given(text=latexish)
def test_boxes_match_the_former_scanner(text):
    assert boxed_all(text) == _oracle_boxed_all(text)
    expected = _oracle_boxed_all(text)
    assert last_boxed(text) == (expected[-1] if expected else None)


@settings(max_examples=3000, deadline=None, database=None, derandomize=True)
@given(body=st.lists(st.sampled_from(["{", "}", "\\{", "\\}", "\\\\", "5", "a"]), max_size=20).map("".join))
def test_outer_braces_are_stripped_as_before(body):
    """normalize() strips grouping outer braces in one pass; the former loop re-scanned per layer."""
    for s in (body, "{" + body + "}", "{{" + body + "}}"):
        assert normalize(s) == _oracle_outer_strip(s), s
