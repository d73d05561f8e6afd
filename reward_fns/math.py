"""MATH-style exact-match reward: compute_score(data_source, solution_str, ground_truth, extra_info) -> 1.0 | 0.0.

1. The response's answer is the content of its last complete `\\boxed{...}` / `\\fbox{...}` (nested
   braces handled, see reward_fns/_latex.py). No box -> 0.0. The reference answer is used as given,
   or its last box if it contains one (so a full reference solution also works).
2. Both sides are normalised as strings (`normalize`: spacing, `\\left`/`\\right`, `\\dfrac`/`\\tfrac`,
   `\\text{}` wrappers, degrees, percent, `$`, thousands commas, a trailing period, a leading `x =`).
   Equal strings -> 1.0 at once.
3. Otherwise math-verify decides (both sides parsed as LaTeX/expressions, then `verify(gold, pred)`),
   in a killable child process with a hard limit of `timeout_s` seconds per call
   (reward_fns/_verify_worker.py explains why a child process and not signals).
   No verdict (timeout, unparseable, answer longer than MAX_VERIFY_CHARS) -> 0.0.

Bounds (issue 14): only the last MAX_INPUT_CHARS characters of a response are parsed
(reward_fns/_limits.py says why), parsing and normalising are linear, and `timeout_s` bounds the whole
call: what parsing used is taken off the symbolic check's time. A 0.0 that is not a verdict (timeout,
verifier restarting, an exception such as MemoryError) is reported: counted in `_limits.FAILURES` and
logged as a warning on the "reward_fns" logger.

Deviation to know about: percent signs and units written with \\text{} are dropped before comparing
("50\\%" matches "50"), as in the MATH grading convention.
Never raises on model output; non-str input scores 0.0.
"""

from __future__ import annotations

import re
import time

from reward_fns._latex import last_boxed, outer_groups
from reward_fns._limits import report, tail
from reward_fns._verify_worker import shared_worker

DEFAULT_TIMEOUT_S = 2.0  # same as config/reward/math.yaml; typical checks take 1-30 ms
MAX_VERIFY_CHARS = 1000  # longer "answers" are not worth a symbolic check (string comparison only)

_DROP = re.compile(
    r"\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\displaystyle|\\[!,;: ]|~|\\\$|\$"
    r"|\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\%|%"
)
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_LEADING_VAR = re.compile(r"^[a-zA-Z]\s*=(?!=)")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def extract_answer(text: str) -> str | None:
    """The content of the last complete box in `text`, stripped; None if there is none."""
    boxed = last_boxed(tail(text)) if isinstance(text, str) else None
    return boxed.strip() if boxed is not None else None


def normalize(answer: str) -> str:
    """A canonical string form of a LaTeX answer (conservative: only rewrites that keep the meaning)."""
    s = answer.strip()
    s = s.replace("{,}", ",")
    s = _FRAC.sub(r"\\frac", s)
    s = _DROP.sub("", s)
    for _ in range(3):  # \text{\textbf{x}}: unwrap a few levels, no more
        s, n = _TEXT_WRAP.subn(r"\1", s)
        if not n:
            break
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    s = _LEADING_VAR.sub("", s)
    strip = outer_groups(s)  # outer braces that group the whole answer (unless a box is inside)
    if strip and last_boxed(s) is None:
        s = s[strip : len(s) - strip]
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    return s


def reference_answer(ground_truth) -> str | None:
    """The reference as a box content: its last box if it has one, else the string itself."""
    if isinstance(ground_truth, (int, float)) and not isinstance(ground_truth, bool):
        ground_truth = repr(ground_truth)
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        return None
    ground_truth = tail(ground_truth, "reference")
    boxed = last_boxed(ground_truth)
    return (boxed if boxed is not None else ground_truth).strip().strip("$").strip() or None


def is_equiv(pred: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether two answers (box contents) are the same: string-normalised equal, else math-verify.

    The symbolic check gets what is left of `timeout_s` after normalising; a missing verdict is reported.
    """
    deadline = time.monotonic() + timeout_s
    norm_pred, norm_gold = normalize(pred), normalize(gold)
    if not norm_pred or not norm_gold:
        return False
    if norm_pred == norm_gold:
        return True
    if len(pred) > MAX_VERIFY_CHARS or len(gold) > MAX_VERIFY_CHARS:
        return False
    left = deadline - time.monotonic()
    if left <= 0:
        report("deadline", f"{timeout_s:.2f} s spent before the symbolic check of {pred[:80]!r}")
        return False
    verdict, reason = shared_worker().check(pred, gold, left)
    if reason is not None:
        report(reason, f"no symbolic verdict on {pred[:80]!r} vs {gold[:80]!r} within {timeout_s:.2f} s")
    return verdict is True


def compute_score(
    data_source=None,
    solution_str=None,
    ground_truth=None,
    extra_info=None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **kwargs,
) -> float:
    """1.0 if the last boxed answer of `solution_str` equals `ground_truth`, else 0.0.

    timeout_s: hard limit on the whole call (set from Hydra via reward_kwargs); the symbolic check
    gets what parsing left of it. Extra keyword arguments verl may pass are accepted and ignored.
    """
    start = time.monotonic()
    try:
        gold = reference_answer(ground_truth)
        pred = extract_answer(solution_str)
        if gold is None or pred is None:
            return 0.0
        return 1.0 if is_equiv(pred, gold, float(timeout_s) - (time.monotonic() - start)) else 0.0
    except Exception as exc:  # noqa: BLE001 - a reward must never crash training on odd model output
        size = len(solution_str) if isinstance(solution_str, str) else type(solution_str).__name__
        report(f"error_{type(exc).__name__}", f"{exc!r:.200} while scoring a response of {size} characters")
        return 0.0
