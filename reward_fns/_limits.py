"""Bounds shared by the rewards: the input cap, and how a bounded failure is reported.

Input cap: a reward parses only the last MAX_INPUT_CHARS characters of a response (and of a reference).
The parsers are linear (one regex pass each), so the cap is what makes a call's time and memory
constant rather than merely linear: any input, 1 KB or 1 GB, costs at most what 100k characters cost.
Why the tail: every answer convention scored here (last `\\boxed{}`, last `####`, last number) is at
the end, and 100k characters is far more than a response can hold at our configs' limits (4096 tokens
× ~4 characters ≈ 16k). A box or `####` that starts before the tail is not seen.

Failures: when a score is 0.0 for a reason other than "the answer is wrong or missing" (the symbolic
check timed out, the verifier was restarting, an exception such as MemoryError), the reward still
returns 0.0, so that one odd output never stops training, but `report` counts it in FAILURES and logs
a warning on the "reward_fns" logger (the 1st, 2nd, 4th, 8th... time per reason, so logs stay short
while every kind of failure is seen). A truncated input is reported the same way (it is still scored).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

MAX_INPUT_CHARS = 100_000
FAILURES: Counter[str] = Counter()
_LOCK = threading.Lock()
log = logging.getLogger("reward_fns")


def report(reason: str, detail: str) -> None:
    """Count a bounded failure and log it (powers of two per reason)."""
    with _LOCK:
        FAILURES[reason] += 1
        count = FAILURES[reason]
    if count & (count - 1) == 0:
        log.warning("reward %s (%d so far): %s", reason, count, detail)


def tail(text, what: str = "response"):
    """`text`, or its last MAX_INPUT_CHARS characters (reported) when it is longer; non-str unchanged."""
    if isinstance(text, str) and len(text) > MAX_INPUT_CHARS:
        report(
            "input_truncated",
            f"{what} of {len(text)} characters: only its last {MAX_INPUT_CHARS} are parsed",
        )
        return text[-MAX_INPUT_CHARS:]
    return text
