"""The two-level bootstrap against exact enumerations written out by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tinylora_verl.experiments.intervals import interval, problem_draws, replicates, share_recovered


def _frequencies(values: np.ndarray) -> dict[float, float]:
    keys, counts = np.unique(np.round(values, 12), return_counts=True)
    return {float(k): c / values.size for k, c in zip(keys, counts)}


def _exact(per_seed: list[list[float]]) -> dict[float, float]:
    """Every equally likely (problem draw, seed draw) pair enumerated: the bootstrap's exact distribution."""
    s, p = len(per_seed), len(per_seed[0])
    out: dict[float, float] = {}
    outcomes = list(
        itertools.product(itertools.product(range(p), repeat=p), itertools.product(range(s), repeat=s))
    )
    for problems, seeds in outcomes:
        value = sum(sum(per_seed[k][j] for j in problems) / p for k in seeds) / s
        out[round(value, 12)] = out.get(round(value, 12), 0.0) + 1 / len(outcomes)
    return out


@pytest.mark.parametrize(
    "per_seed",
    [
        [[0.0, 1.0]],  # one seed: only the problems vary
        [[0.0, 0.0], [1.0, 1.0]],  # problems alike: only the seeds vary
        [[0.25, 1.0], [0.5, 0.0]],  # both
    ],
)
def test_replicates_follow_the_exact_bootstrap_distribution(per_seed):
    draws = problem_draws(len(per_seed[0]), n_boot=40000, seed=3)
    got = _frequencies(replicates(np.array(per_seed), draws, seed=4))
    want = _exact(per_seed)
    assert set(got) == set(want)
    for value, prob in want.items():
        assert got[value] == pytest.approx(prob, abs=0.01), value


def test_interval_is_the_central_percentile_range():
    assert interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert interval(np.array([np.nan, 1.0, np.inf, 1.0])) == (1.0, 1.0)
    lo, hi = interval(np.array([np.nan]))
    assert np.isnan(lo) and np.isnan(hi)


def test_one_seed_two_problems_gives_the_full_range():
    draws = problem_draws(2, seed=0)
    assert interval(replicates(np.array([[0.0, 1.0]]), draws)) == (0.0, 1.0)


def test_shapes_that_do_not_match_the_draws_are_refused():
    with pytest.raises(ValueError, match="do not match 3 drawn problems"):
        replicates(np.ones((2, 4)), problem_draws(3))


def test_share_recovered_is_paired_per_replicate_and_skips_undefined_ones():
    out = share_recovered(np.array([0.5, 0.6, 0.3]), np.array([0.0, 0.1, 0.1]), np.array([1.0, 0.1, 0.5]))
    # replicate 1: 0.5 / 1.0; replicate 2: no reference gain (left out); replicate 3: 0.2 / 0.4
    assert out["undefined"] == pytest.approx(1 / 3)
    assert out["interval"] == pytest.approx((0.5, 0.5))
