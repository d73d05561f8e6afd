"""Intervals that account for both the seeds and the problems: a two-level bootstrap.

A method's accuracy on a set is the mean over its seeds of the mean over the set's problems of each
problem's sampled accuracy (per_prompt in the eval record). One bootstrap replicate draws the problems
with replacement (the same draw for every method, so comparisons are paired over problems) and, per
method, its seeds with replacement, and recomputes that mean. The interval is the 2.5th-97.5th
percentile of N_BOOT replicates. With one seed only the problems vary; with one problem only the seeds.

What it does not cover: the choice of the best learning rate on the validation set (the winner's
validation score is optimistic; its test score is not, since test problems played no part in the choice).
"""

from __future__ import annotations

import numpy as np

N_BOOT = 4000
LEVEL = 0.95


def problem_draws(n_problems: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """[n_boot, n_problems] problem indices drawn with replacement (one row per replicate)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_problems, size=(n_boot, n_problems))


def replicates(per_seed: np.ndarray, draws: np.ndarray, seed: int = 1) -> np.ndarray:
    """[n_boot] replicate means for one method: per_seed is [seeds, problems] of per-problem accuracies."""
    per_seed = np.asarray(per_seed, dtype=np.float64)
    if per_seed.ndim != 2 or per_seed.shape[1] != draws.shape[1]:
        raise ValueError(
            f"per-seed scores of shape {per_seed.shape} do not match {draws.shape[1]} drawn problems"
        )
    n_seeds, n_boot = per_seed.shape[0], draws.shape[0]
    seed_means = per_seed[:, draws].mean(axis=2)  # [seeds, n_boot]: each seed on each problem draw
    picks = np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))
    return seed_means[picks, np.arange(n_boot)[:, None]].mean(axis=1)


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central percentile interval of finite replicate values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return (float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def share_recovered(method: np.ndarray, base: np.ndarray, full: np.ndarray) -> dict:
    """(method - base) / (full - base) per replicate (paired: same problem draws), with its interval and
    the share of replicates where the reference gain full - base is not positive (the ratio is then
    undefined and left out of the interval)."""
    gain = full - base
    ok = gain > 0
    ratio = np.where(ok, (method - base) / np.where(ok, gain, 1.0), np.nan)
    return {"interval": interval(ratio), "undefined": float(1 - ok.mean())}
