"""Exact-match reward for the arithmetic demo task (verl's custom_reward_function signature).

score = 1.0 when the last "#### <integer>" in the response equals the ground truth, else 0.0. Strict on
purpose (DESIGN.md §5): the model must both compute and follow the answer format, so a few trained
parameters can move the reward by teaching the format.
"""

from __future__ import annotations

import re

_ANSWER = re.compile(r"####\s*(-?\d[\d,]*)")


def extract_answer(text: str) -> str | None:
    """The integer after the last '####' (commas removed), or None."""
    found = _ANSWER.findall(text or "")
    return found[-1].replace(",", "") if found else None


def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
    answer = extract_answer(solution_str)
    if answer is None:
        return 0.0
    try:
        return 1.0 if int(answer) == int(str(ground_truth).strip()) else 0.0
    except ValueError:
        return 0.0
