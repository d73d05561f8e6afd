"""Exact-match reward for the arithmetic demo task (verl's custom_reward_function signature).

score = 1.0 when the last number in the response equals the ground truth, else 0.0 (no number, or a
wrong last number). The prompt asks for only the number; a response that works it out ("7 * 8 = 56")
is scored by its final number, so hedging ("56 or 54") or restating the question ("... 7 * 8") after
the answer scores 0. Thousands separators are dropped ("1,042"); a decimal counts when it is equal
("56.0").

Why not "#### <answer>" with 0.1 format credit (the first version): measured on SmolLM2-135M-Instruct
at T=1, almost no sample used the format, so the reward was the format credit on a few samples and
stayed flat for 6 GRPO steps. With the last number, single-digit multiplication scores 17% at T=1 and
42% at T=0.7 (tinylora_verl/data/arithmetic.py), so the samples of a GRPO group differ without partial
credit.
"""

from __future__ import annotations

import re

# a leading "-" is a sign unless it follows a digit ("7-8" is 7 and 8); commas only as thousands separators
_NUMBER = re.compile(r"(?<!\d)-?\d+(?:,\d{3})*(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The last number in the text (commas removed), or None."""
    found = _NUMBER.findall(text or "")
    return found[-1].replace(",", "") if found else None


def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
    answer = extract_answer(solution_str)
    if answer is None:
        return 0.0
    try:
        return 1.0 if float(answer) == float(str(ground_truth).strip()) else 0.0
    except ValueError:
        return 0.0
