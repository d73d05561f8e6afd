"""Which ground truths `prepare` writes: one a reward can score, or the row is rejected with the reason.

- numeric sets (gsm8k, aime24, amc23: SplitSource.numeric): the answer must be one finite decimal number
  (`-12`, `3.5`, `1234` after the thousands commas are dropped), since their rewards compare numbers;
  `nan`, `inf`, `abc`, `1/2 or 3` and `` are refused.
- expression sets (MATH-style, LaTeX answers): non-empty, at most MAX_ANSWER_CHARS, balanced braces,
  not a non-finite float spelling (`nan`, `inf`, `-Infinity`: what a float field turns into, never a
  MATH answer; `\\infty` is fine), and no bare word `or` between alternatives (`1/2 or 3`: the MATH
  convention writes `a \\text{ or } b`, which the reward compares as written). Text answers such as `C`
  or `\\text{east}` are legitimate there.
"""

from __future__ import annotations

import re

MAX_ANSWER_CHARS = 1000
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_NON_FINITE = re.compile(r"[-+]?(?:nan|inf|infinity)", re.IGNORECASE)
_TEXT_BLOCK = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{[^{}]*\}")
_BARE_OR = re.compile(r"(?<![\\\w])or(?!\w)")


def check_answer(answer: str, numeric: bool) -> str:
    """`answer` if a reward can score it; ValueError naming what is wrong otherwise."""
    text = answer.strip()
    if not text:
        raise ValueError("the ground truth is empty")
    if len(text) > MAX_ANSWER_CHARS:
        raise ValueError(f"the ground truth has {len(text)} characters (limit {MAX_ANSWER_CHARS})")
    if _NON_FINITE.fullmatch(text):
        raise ValueError(f"the ground truth {text!r} is not a finite number")
    if numeric:
        if not _NUMBER.fullmatch(text.replace(",", "")):
            raise ValueError(
                f"the ground truth {_short(text)} is not a single finite number (this set's reward compares numbers)"
            )
        return text
    if _brace_balance(text) != 0:
        raise ValueError(f"the ground truth {_short(text)} has unbalanced braces")
    if _BARE_OR.search(_TEXT_BLOCK.sub("", text)):
        raise ValueError(
            f"the ground truth {_short(text)} lists alternatives with a bare 'or' "
            "(ambiguous; MATH writes them as 'a \\text{ or } b')"
        )
    return text


def _brace_balance(text: str) -> int:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return depth
    return depth


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
