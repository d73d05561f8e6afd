"""Exact-match reward for the arithmetic tasks (verl's custom_reward_function signature).

The row's prompt style (extra_info.style, tinylora_verl/data/arithmetic.py) says how the answer was
asked for, and it is scored that way:

- "hash" (and rows without a style): 1.0 when the number after the last "####" equals the ground truth;
  FORMAT_CREDIT (0.1) when there is a "#### <integer>" but it is wrong; 0.0 otherwise (no "####", or
  only a number elsewhere in the text). Strictly after "####" (docs/cpu_platform.md, "SmolLM2"). The format credit exists
  because, on SmolLM2-135M-Instruct at T=1 with 80-token responses, a strict 0/1 score was 0 for all
  32 samples of the first step (format compliance is the bottleneck): every GRPO advantage was zero.
- "number" (the CPU demo): 1.0 when the last number of the response equals the ground truth, else 0.0,
  no partial credit. The prompt asks for only the number; a worked answer ("7 * 8 = 56") counts by its
  final number, so hedging ("56 or 54") or restating the question after the answer scores 0.
  Thousands separators are dropped ("1,042"); an equal decimal counts ("56.0"). Single-digit
  multiplication scores 17% at T=1 and 42% at T=0.7 this way on the base model, so the samples of a
  GRPO group differ without any format credit ("hash" scored 1-3% at T=1, almost all format credit).

Bounds: only the last MAX_INPUT_CHARS characters of a response are parsed (reward_fns/_limits.py),
and each regex pass keeps only its last match, so time and memory are bounded whatever the input.
"""

from __future__ import annotations

import re
from collections import deque

from reward_fns._limits import tail

_ANSWER = re.compile(r"####\s*(-?\d[\d,]*)")
# a leading "-" is a sign unless it follows a digit ("7-8" is 7 and 8); commas only as thousands separators
_NUMBER = re.compile(r"(?<!\d)-?\d+(?:,\d{3})*(?:\.\d+)?")
FORMAT_CREDIT = 0.1


def _last(pattern: re.Pattern, text, group: int = 0) -> str | None:
    last = deque(pattern.finditer(tail(text) if isinstance(text, str) else ""), maxlen=1)
    return last[0].group(group).replace(",", "") if last else None


def extract_answer(text: str) -> str | None:
    """The integer after the last '####' (commas removed), or None."""
    return _last(_ANSWER, text, 1)


def extract_last_number(text: str) -> str | None:
    """The last number in the text (thousands separators removed), or None."""
    return _last(_NUMBER, text)


def last_number_score(solution_str: str, ground_truth) -> float:
    answer = extract_last_number(solution_str)
    if answer is None:
        return 0.0
    try:
        return 1.0 if float(answer) == float(str(ground_truth).strip()) else 0.0
    except ValueError:
        return 0.0


def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
    if isinstance(extra_info, dict) and extra_info.get("style") == "number":
        return last_number_score(solution_str, ground_truth)
    answer = extract_answer(solution_str)
    if answer is None:
        return 0.0
    try:
        return 1.0 if int(answer) == int(str(ground_truth).strip()) else FORMAT_CREDIT
    except ValueError:
        return FORMAT_CREDIT
