"""The math-verify child process: hard time limit from any thread, recovery after a kill, fork safety."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

from reward_fns._verify_worker import VerifyWorker, shared_worker
from reward_fns.math import compute_score

# sympy evaluates this power tower with no end in sight (verified: > 100 s with math-verify's timeouts off)
HANG = "\\boxed{9^{9^{9^{9}}}}"


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def test_hang_is_cut_off_in_a_worker_thread_and_the_next_call_works():
    worker = shared_worker()
    assert worker.warm_up()  # every child and its standby ready: the next call after a kill is answered
    before = worker.restarts
    with ThreadPoolExecutor(max_workers=1) as pool:  # verl scores in executor threads
        score, seconds = pool.submit(_timed, compute_score, "math", HANG, "1", timeout_s=0.5).result()
        assert score == 0.0
        assert seconds < 1.5, f"timeout 0.5 s but the call took {seconds:.2f} s"
        assert worker.restarts == before + 1
        again, _ = pool.submit(_timed, compute_score, "math", "\\boxed{\\frac{1}{2}}", "0.5").result()
    assert again == 1.0


def test_hang_is_cut_off_in_the_main_thread_too():
    assert shared_worker().warm_up()
    score, seconds = _timed(compute_score, "math", HANG, "1", timeout_s=0.5)
    assert score == 0.0 and seconds < 1.5
    assert compute_score("math", "\\boxed{2x+3}", "3+2x") == 1.0


def test_concurrent_threads_get_their_own_answers():
    assert shared_worker().warm_up()
    cases = [(f"\\boxed{{\\frac{{{i}}}{{2}}}}", str(i / 2), 1.0) for i in range(1, 25)]
    cases += [(f"\\boxed{{{i}+1}}", str(i), 0.0) for i in range(1, 25)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        scores = list(pool.map(lambda c: compute_score("math", c[0], c[1]), cases))
    assert scores == [c[2] for c in cases]


def test_a_private_worker_returns_verdicts_and_none():
    worker = VerifyWorker()
    try:
        assert worker.equal("\\frac{2}{4}", "0.5", 5.0) is True
        assert worker.equal("3", "4", 5.0) is False
        assert worker.equal("", "4", 5.0) is None  # nothing parsed: no verdict
    finally:
        worker.close()


def _score_in_child(queue):
    queue.put(compute_score("math", "\\boxed{\\sqrt{4}}", "2"))


def test_forked_child_does_not_share_the_parents_pipes():
    assert compute_score("math", "\\boxed{\\sqrt{9}}", "3") == 1.0  # parent owns a live child
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_score_in_child, args=(queue,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0 and queue.get(timeout=5) == 1.0
    assert compute_score("math", "\\boxed{\\sqrt{16}}", "4") == 1.0  # the parent's child still answers
