"""Time and memory bounds of the rewards on adversarial input (issue 14 item 4).

Contract: no call over 1 s, none over 100 MiB, at any input up to 1 MB (tests/reward_fns/adversarial.py
holds the families and strategies; docs/rewards.md the measured figures). Times are the best of a few
calls, so a busy 2-core machine does not flake them; a quadratic parser misses them by minutes anyway.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from reward_fns._limits import MAX_INPUT_CHARS
from reward_fns._verify_worker import shared_worker
from tests.reward_fns.adversarial import FAMILIES, REWARDS, adversarial_text, measure

MB = 1_000_000
TIME_BOUND_S = 1.0
MEMORY_BOUND_MIB = 100.0
REPO = Path(__file__).resolve().parents[2]

# scores at 50k characters (all parsed): (gsm8k, math, arith_hash, arith_number). Zeros are right:
# no #### for arith_hash, an answer that is not 5 (escaped braces, \text nested past 3 levels, 5^), ...
EXPECTED = {
    "backslash_run": (1, 1, 0, 1),
    "backslash_run_brace": (1, 1, 0, 1),
    "nested_braces": (1, 1, 0, 1),
    "nested_boxed": (1, 1, 0, 1),
    "unclosed_boxed": (1, 1, 0, 1),
    "many_boxed": (1, 1, 0, 1),
    "many_bare_boxed": (1, 1, 0, 1),
    "unbalanced_closes": (1, 1, 0, 1),
    "unbalanced_opens": (1, 1, 0, 1),
    "escaped_braces": (1, 0, 0, 1),
    "digit_run": (0, 0, 0.1, 0),
    "many_numbers": (1, 0, 1, 1),
    "comma_numbers": (1, 0, 1, 1),
    "many_markers": (1, 0, 1, 1),
    "text_wraps": (1, 0, 0, 1),
    "spaces_after_commands": (1, 0, 0, 1),
    "mixed": (1, 1, 0, 1),
}


@pytest.fixture(scope="module", autouse=True)
def warm_math_child():
    """Start the math-verify children (~1 s of imports each, paid once per process, not per call)."""
    assert shared_worker().warm_up()


def _best_of(fn, text, calls=3):
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - t0)
    return best


def test_every_family_is_expected():
    assert set(EXPECTED) == set(FAMILIES), "add the new family's expected scores to EXPECTED"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_scores_are_unchanged_by_the_bounds(family):
    """Below the input cap the whole structure is parsed, and the answer it holds still counts."""
    text = FAMILIES[family](50_000)
    assert len(text) < MAX_INPUT_CHARS
    assert tuple(fn(text) for fn in REWARDS.values()) == EXPECTED[family]


@pytest.mark.parametrize("size", [MAX_INPUT_CHARS - 100, MB])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_time_and_memory(family, size):
    text = FAMILIES[family](size)
    for name, fn in REWARDS.items():
        _, _, peak = measure(fn, text)
        seconds = _best_of(fn, text)
        assert seconds < TIME_BOUND_S, f"{name} on {family} ({len(text):,} chars): {seconds:.2f} s"
        assert peak < MEMORY_BOUND_MIB, f"{name} on {family} ({len(text):,} chars): {peak:.0f} MiB traced"


@settings(
    max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(text=adversarial_text)
def test_generated_adversarial_input_is_bounded(text):
    """Nesting, backslash runs, digit runs, many boxes and markers, unbalanced braces, mixed."""
    for name, fn in REWARDS.items():
        score, _, peak = measure(fn, text)
        seconds = _best_of(fn, text, calls=2)
        assert score in (0.0, 0.1, 1.0)
        assert seconds < TIME_BOUND_S, f"{name}: {seconds:.2f} s on {len(text):,} chars: {text[:200]!r}..."
        assert peak < MEMORY_BOUND_MIB, f"{name}: {peak:.0f} MiB on {len(text):,} chars: {text[:200]!r}..."


_RSS_PROBE = """
import json, resource, sys
from tests.reward_fns.adversarial import FAMILIES, REWARDS
REWARDS["math"]("\\\\boxed{\\\\frac{1}{2}}")  # imports and the first child start
out = {}
for family, build in FAMILIES.items():
    text = build(int(sys.argv[1]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for fn in REWARDS.values():
        fn(text)
    out[family] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(out))
"""


def test_resident_memory_grows_less_than_the_bound_in_a_fresh_process():
    """The whole process's peak RSS (not only what tracemalloc sees) per family at 1 MB."""
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(MB)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    growth = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(growth) == set(FAMILIES)
    over = {family: mib for family, mib in growth.items() if mib >= MEMORY_BOUND_MIB}
    assert not over, f"peak RSS grew by more than {MEMORY_BOUND_MIB} MiB: {over}"
