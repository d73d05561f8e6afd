"""GSM8K exact-match reward: compute_score(data_source, solution_str, ground_truth, extra_info) -> 1.0 | 0.0.

The final answer of a response is, in order of precedence:
  1. the first number after the last `####` (the GSM8K convention our prompt asks for);
  2. else the last number inside the last complete `\\boxed{...}`;
  3. else the last number anywhere in the text (skipped when `strict=True`).
Numbers are normalised before comparison: thousands commas, currency/unit symbols and words around the
number, a trailing period, and trailing fractional zeros are dropped (`$1,234.50.` -> `1234.5`,
`18.0` -> `18`, `-0` -> `0`). The reference answer goes through the same normalisation (a full GSM8K
solution with `#### N` works as well as a bare `N`). Score 1.0 iff both normalised numbers are equal.

`extract_answer` is the extraction used here and by `tinylora-verl eval`, so both agree by construction.
Never raises on model output; non-str input scores 0.0. Cost is linear in the length of the text, and
only the last MAX_INPUT_CHARS characters are parsed (reward_fns/_limits.py says why); an exception is
reported there (counted and logged) before scoring 0.0.
"""

from __future__ import annotations

import re
from collections import deque

from reward_fns._latex import last_boxed
from reward_fns._limits import report, tail

# A number: optional sign, digits with well-formed thousands commas or plain digits, optional decimals;
# or a bare decimal like .5. Currency signs, %, units and trailing periods are simply not part of it.
# A minus sign counts only when it does not follow a word or a closing bracket ("5-3" is 5 and 3).
_NUMBER_RE = re.compile(
    r"(?:(?<![\w)\]}])-)?"
    r"(?:(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?<![\d.])\.\d+)"
)
_MARKER = "####"
_CANON_RE = re.compile(r"(-?)(\d*)(?:\.(\d+))?")


def normalize_number(token: str) -> str | None:
    """'1,234.50' -> '1234.5', '18.0' -> '18', '-0' -> '0', '007' -> '7'; None if `token` is not a number.

    Exact string arithmetic (no float/Decimal rounding), so 40-digit numbers stay distinct.
    """
    m = _CANON_RE.fullmatch(token.replace(",", ""))
    if m is None or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac = m.group(1), m.group(2).lstrip("0") or "0", (m.group(3) or "").rstrip("0")
    body = whole + ("." + frac if frac else "")
    return body if body == "0" or not sign else "-" + body


def _last_number(text: str) -> str | None:
    """The last number in `text` (keeps one match in memory, not all of them)."""
    last = deque(_NUMBER_RE.finditer(text), maxlen=1)
    return last[0].group(0) if last else None


def extract_answer(text: str, strict: bool = False) -> str | None:
    """The normalised final answer of `text` (see the module docstring), or None if there is none."""
    if not isinstance(text, str) or not text:
        return None
    text = tail(text)
    marker = text.rfind(_MARKER)
    if marker >= 0:
        m = _NUMBER_RE.search(text, marker + len(_MARKER))
        if m is not None:
            return normalize_number(m.group(0))
    if strict:
        return None
    boxed = last_boxed(text)
    number = _last_number(boxed) if boxed is not None else None
    if number is None:
        number = _last_number(text)
    return normalize_number(number) if number is not None else None


def normalize_ground_truth(ground_truth) -> str | None:
    """A reference answer ('72', '1,000', 72, or a full solution ending in '#### 72') -> '72'."""
    if isinstance(ground_truth, (int, float)) and not isinstance(ground_truth, bool):
        ground_truth = repr(ground_truth)
    if not isinstance(ground_truth, str):
        return None
    return extract_answer(ground_truth.strip(), strict=False)


def compute_score(
    data_source=None, solution_str=None, ground_truth=None, extra_info=None, strict: bool = False, **kwargs
) -> float:
    """1.0 if the response's final answer equals the reference answer, else 0.0.

    strict: only accept an answer written after `####` (no boxed/last-number fallback).
    Extra keyword arguments verl may pass are accepted and ignored.
    """
    try:
        gt = normalize_ground_truth(ground_truth)
        if gt is None:
            return 0.0
        pred = extract_answer(solution_str, strict=strict)
        return 1.0 if pred is not None and pred == gt else 0.0
    except Exception as exc:  # noqa: BLE001 - a reward must never crash training on odd model output
        size = len(solution_str) if isinstance(solution_str, str) else type(solution_str).__name__
        report(f"error_{type(exc).__name__}", f"{exc!r:.200} while scoring a response of {size} characters")
        return 0.0
