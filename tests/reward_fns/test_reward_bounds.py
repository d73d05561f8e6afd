"""Time and memory bounds of the rewards on adversarial input (issue 14 item 4).

Contract: no call over 1 s, none over 100 MiB, at any input up to 1 MB (tests/reward_fns/adversarial.py
holds the families and strategies; docs/rewards.md the measured figures). Times are the best of a few
calls, and a busy machine stretches the wall-clock bound by its load factor (load / CPUs); the CPU
time of the calling thread is held to 1 s as it is. A quadratic parser misses both by minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from reward_fns._limits import MAX_INPUT_CHARS
from reward_fns._verify_worker import shared_worker
from tests.reward_fns.adversarial import FAMILIES, REWARDS, adversarial_text, load_factor, measure

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


def _check_bounds(name, fn, text, calls=3):
    runs = [measure(fn, text) for _ in range(calls)]
    what = f"{name} on {len(text):,} chars starting {text[:120]!r}"
    seconds, cpu = min(r[1] for r in runs), min(r[2] for r in runs)
    peak = max(r[3] for r in runs)
    wall_bound = TIME_BOUND_S * load_factor()
    assert cpu < TIME_BOUND_S, f"{what}: {cpu:.2f} s of CPU"
    assert seconds < wall_bound, f"{what}: {seconds:.2f} s (bound {wall_bound:.1f} s at this load)"
    assert peak < MEMORY_BOUND_MIB, f"{what}: {peak:.0f} MiB traced"
    return runs[0][0]


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
        _check_bounds(f"{name}/{family}", fn, text)


@settings(
    max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(text=adversarial_text)
def test_generated_adversarial_input_is_bounded(text):
    """Nesting, backslash runs, digit runs, many boxes and markers, unbalanced braces, mixed."""
    for name, fn in REWARDS.items():
        assert _check_bounds(name, fn, text, calls=2) in (0.0, 0.1, 1.0)


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
