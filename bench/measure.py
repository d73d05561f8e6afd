"""Timing and peak-memory primitives for the adapter benchmark.

Timings on a shared CPU are noisy, so every comparison is measured side by side: `interleaved` runs one
call of every variant per round, in a fresh random order each round (no variant always goes first or
follows the same neighbour), after one untimed warm-up call each. A ratio is the median over rounds of
the per-round ratio (paired: a slow spell slows both members of the round).

Peak memory is measured per variant in its own subprocess (`peak_rss_child`): `bench/memory_child.py`
builds one variant, runs a few train steps and reports `getrusage(RUSAGE_SELF).ru_maxrss`, the kernel's
high-water mark of that process's resident memory, so one variant's peak cannot leak into another's.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CHILD = Path(__file__).with_name("memory_child.py")


def interleaved(
    fns: dict[str, Callable[[], None]],
    rounds: int,
    warmup: int = 1,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """{name: [seconds per round]}: every fn once per round, in a shuffled order, after `warmup` calls each."""
    rng = random.Random(seed)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        for name in order:
            gc.collect()
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
        if log:
            log(f"  round {i + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in fns))
    return times


def paired_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of times[num][i] / times[den][i]."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def median(xs) -> float:
    return statistics.median(xs)


def peak_rss_child(
    model: str, variant: str, batch: int, seq: int, steps: int, threads: int | None, timeout: float = 1800
) -> dict:
    """Run one variant's train steps in a fresh interpreter; its JSON report (peak RSS in bytes, ...)."""
    cmd = [
        sys.executable,
        str(CHILD),
        "--model",
        model,
        "--variant",
        variant,
        "--batch",
        str(batch),
        "--seq",
        str(seq),
        "--steps",
        str(steps),
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"memory child for {variant} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"memory child for {variant} printed no JSON report:\n{proc.stdout[-2000:]}")
    return json.loads(lines[-1])
