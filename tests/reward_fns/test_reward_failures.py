"""A 0.0 that is not a verdict is never silent: it is counted in _limits.FAILURES and logged (issue 14).

Also: the MATH time limit covers the whole call (lock, restarting child), and the child's heap is capped.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reward_fns import gsm8k, math
from reward_fns._limits import FAILURES, MAX_INPUT_CHARS
from reward_fns._verify_worker import CHILD_HEADROOM_MB, VerifyPool, VerifyWorker, pool_size
from tests.reward_fns.adversarial import load_factor

HANG = "9^{9^{9^{9}}}"  # sympy runs this for minutes (see test_verify_worker.py)
REPO = Path(__file__).resolve().parents[2]


def _bound(limit_s: float) -> float:
    """A call with limit `limit_s` ends by then plus the kill and scheduling: 0.6 s, times the load factor."""
    return limit_s + 0.6 * load_factor()


@pytest.fixture(autouse=True)
def fresh_counts():
    """Each test starts from zero counts, so each report here is a first one (always logged)."""
    FAILURES.clear()


def _boom(*args, **kwargs):
    raise MemoryError("simulated")


@pytest.mark.parametrize("module", [gsm8k, math])
def test_an_exception_scores_zero_and_is_reported(module, monkeypatch, caplog):
    monkeypatch.setattr(module, "extract_answer", _boom)
    with caplog.at_level(logging.WARNING, logger="reward_fns"):
        assert module.compute_score("x", "\\boxed{5} #### 5", "5") == 0.0
    assert FAILURES == {"error_MemoryError": 1}
    assert "MemoryError('simulated')" in caplog.text and "response of 16 characters" in caplog.text


def test_a_symbolic_timeout_is_reported_and_stays_within_the_limit(caplog):
    assert math.compute_score("warm-up", "\\boxed{\\frac{1}{2}}", "0.5") == 1.0
    with caplog.at_level(logging.WARNING, logger="reward_fns"):
        t0 = time.perf_counter()
        assert math.compute_score("x", f"\\boxed{{{HANG}}}", "1", timeout_s=0.5) == 0.0
        seconds = time.perf_counter() - t0
    assert seconds < _bound(0.5), f"time limit 0.5 s, the call took {seconds:.2f} s"
    assert FAILURES == {"verifier_timeout": 1}
    assert "no symbolic verdict on '9^{9^{9^{9}}}'" in caplog.text


def test_a_truncated_input_is_reported_and_its_tail_still_scored():
    text = "\\boxed{" * 50_000 + "x" * MAX_INPUT_CHARS + " #### 5 so \\boxed{5}"
    assert gsm8k.compute_score("x", text, "5") == 1.0
    assert math.compute_score("x", text, "5") == 1.0
    assert FAILURES == {"input_truncated": 2}


def test_deep_nested_boxes_keep_a_correct_answer():
    """Formerly ~8 GB and a swallowed MemoryError (score 0); now linear memory, and the answer counts."""
    depth = MAX_INPUT_CHARS // 8 - 10
    assert math.compute_score("x", "\\boxed{" * depth + "5" + "}" * depth, "5") == 1.0


def test_a_restarting_child_is_charged_to_the_call():
    """Hang after hang: each call ends within its limit (the standby may still be importing sympy)."""
    worker = VerifyWorker()
    try:
        assert worker.check("\\frac{2}{4}", "0.5", 30.0) == (True, None)  # first start: not charged
        reasons = []
        for _ in range(3):
            t0 = time.perf_counter()
            verdict, reason = worker.check(HANG, "1", 0.4)
            seconds = time.perf_counter() - t0
            assert verdict is None and seconds < _bound(0.4), f"limit 0.4 s, took {seconds:.2f} s ({reason})"
            reasons.append(reason)
        assert set(reasons) <= {"verifier_timeout", "verifier_starting"} and "verifier_timeout" in reasons
        deadline = time.monotonic() + 60
        while worker.check("3", "3.0", 2.0) != (True, None):  # and it recovers
            assert time.monotonic() < deadline, "no verdict 60 s after the hangs"
            time.sleep(0.2)
    finally:
        worker.close()


def test_a_call_waiting_for_the_lock_keeps_its_own_limit():
    worker = VerifyWorker()
    try:
        assert worker.check("1", "1.0", 30.0) == (True, None)
        hog = threading.Thread(target=worker.check, args=(HANG, "1", 2.0))
        hog.start()
        time.sleep(0.2)
        t0 = time.perf_counter()
        assert worker.check("2", "2.0", 0.3) == (None, "verifier_busy")
        assert time.perf_counter() - t0 < _bound(0.3)
        hog.join()
    finally:
        worker.close()


def test_a_call_waiting_for_a_free_pool_worker_keeps_its_own_limit():
    pool = VerifyPool(1)
    try:
        assert pool.warm_up()
        hog = threading.Thread(target=pool.check, args=(HANG, "1", 2.0))
        hog.start()
        time.sleep(0.2)
        t0 = time.perf_counter()
        assert pool.check("2", "2.0", 0.3) == (None, "verifier_busy")
        assert time.perf_counter() - t0 < _bound(0.3)
        hog.join()
        assert pool.check("2", "2.0", 30.0) == (True, None)  # the standby answers after the kill
    finally:
        pool.close()


def test_pool_size_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TINYLORA_VERIFY_WORKERS", "3")
    assert pool_size() == 3
    monkeypatch.setenv("TINYLORA_VERIFY_WORKERS", "0")
    with pytest.raises(ValueError, match="TINYLORA_VERIFY_WORKERS='0': set it to a whole number >= 1"):
        pool_size()


_HEAP_PROBE = f"""
from reward_fns._verify_worker import _limit_memory
_limit_memory()
small = bytearray({CHILD_HEADROOM_MB // 4} << 20)
try:
    big = bytearray({2 * CHILD_HEADROOM_MB} << 20)
except MemoryError:
    print("capped")
"""


def test_the_child_heap_is_capped():
    proc = subprocess.run([sys.executable, "-c", _HEAP_PROBE], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "capped", f"{2 * CHILD_HEADROOM_MB} MiB was allocated past the cap"
