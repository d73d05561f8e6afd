"""Exact-match reward for the arithmetic demo task (verl's custom_reward_function signature).

score = 1.0 when the last "#### <integer>" in the response equals the ground truth; FORMAT_CREDIT (0.1)
when the response ends its answer with "#### <integer>" but the integer is wrong; 0.0 otherwise (no
"####", or only a number elsewhere in the text). The answer is read strictly after "####" (DESIGN.md §5).

Why the format credit: measured on SmolLM2-135M-Instruct at T=1 with 80-token responses, a strict 0/1
score was 0 for all 32 samples of the first step (format compliance is the bottleneck), so every GRPO
advantage — and the update — was exactly zero. 0.1 for the format makes samples of a group differ
while a correct answer is still worth 10 times more.
"""

from __future__ import annotations

import re

_ANSWER = re.compile(r"####\s*(-?\d[\d,]*)")
FORMAT_CREDIT = 0.1


def extract_answer(text: str) -> str | None:
    """The integer after the last '####' (commas removed), or None."""
    found = _ANSWER.findall(text or "")
    return found[-1].replace(",", "") if found else None


def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
    answer = extract_answer(solution_str)
    if answer is None:
        return 0.0
    try:
        return 1.0 if int(answer) == int(str(ground_truth).strip()) else FORMAT_CREDIT
    except ValueError:
        return FORMAT_CREDIT
