"""Symbolic answer equivalence (math-verify) in a child process, with a hard per-call time limit.

Why a child process: math-verify's own timeouts use `signal.alarm`, which only works in a process's
main thread (verl calls reward functions from executor threads, where math-verify then raises), and a
signal cannot interrupt sympy stuck in C code (`9^{9^{9^9}}` runs unbounded with its timeouts off).
A child process can always be killed. So:

- `VerifyWorker.check(pred, gold, timeout_s)` sends one request to a long-lived child
  (`python -m reward_fns._verify_worker`, JSON lines over stdin/stdout); the whole call (the lock,
  a restarting child, the answer: select() on the pipe) takes at most `timeout_s`. On timeout the
  child is killed and a warmed-up standby takes over, so the next call does not wait for sympy's ~1 s
  of imports; a new standby starts in the background. Only the first start of a worker is not charged
  to the call (it waits up to STARTUP_TIMEOUT_S, once per process, whatever the input).
- The child's heap is capped (CHILD_HEADROOM_MB over its size at start-up): a MemoryError there is
  answered as an error, and the child is replaced.
- `shared_worker()` is a pool of such workers (one per CPU, at most 4; TINYLORA_VERIFY_WORKERS sets
  it): verl scores a batch from many threads, and each call takes a free worker (one lock per worker).
- Works from any thread, from daemonic processes (it uses
  subprocess, not multiprocessing), and after fork (a worker is owned by the pid that started it).
- `check` returns (True/False, None) for a verdict, (None, None) for unparseable input, and
  (None, reason) when there is no verdict for another reason (timeout, child starting or dead,
  MemoryError): the caller reports those (reward_fns/_limits.py). `equal` is its first element.
  Never raises. After MAX_FAILED_STARTS children in a row fail to start (math-verify missing), it
  stops trying.

The child caches parsed gold answers (the same reference is scored n times per GRPO group).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

STARTUP_TIMEOUT_S = 60.0
MAX_FAILED_STARTS = 3  # then stop trying: math answers are compared as strings only
CHILD_HEADROOM_MB = 100  # heap a child may grow by after start-up (parsed-answer cache included)
_READY = {"ready": True}
_KILLED: list[subprocess.Popen] = []  # killed children not reaped yet


# ----------------------------------------------------------------------------------------- child side


@lru_cache(maxsize=1024)
def _parse(text: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(
        "\\boxed{" + text + "}",
        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
        parsing_timeout=None,
    )


def verify_in_process(pred: str, gold: str) -> bool | None:
    """math-verify's verdict on `pred` vs `gold` (box contents), with no time limit; None if unparseable."""
    from math_verify import verify

    gold_parsed, pred_parsed = _parse(gold), _parse(pred)
    if not gold_parsed or not pred_parsed:
        return None
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _limit_memory() -> None:
    """Cap the child's heap at its size now + CHILD_HEADROOM_MB: sympy on a hostile answer gets a
    MemoryError (reported, then the child is replaced) instead of taking the machine's memory."""
    import resource

    with open("/proc/self/status") as f:
        data_kb = next(int(line.split()[1]) for line in f if line.startswith("VmData:"))
    limit = (data_kb << 10) + (CHILD_HEADROOM_MB << 20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))


def serve() -> None:
    """Child main loop: one JSON request per line on stdin, one JSON reply per line on stdout."""
    import logging

    logging.disable(logging.WARNING)  # math-verify warns on every disabled timeout
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    # first parse builds the LaTeX parser (~1 s): do it before "ready"
    verify_in_process("\\frac{1}{2}", "0.5")
    try:
        _limit_memory()
    except (OSError, ValueError, StopIteration):  # no /proc or no RLIMIT_DATA: run without the cap
        pass
    out.write(json.dumps(_READY) + "\n")
    for line in sys.stdin:
        reply = {"id": None, "equal": None}
        try:
            req = json.loads(line)
            reply["id"] = req.get("id") if isinstance(req, dict) else None
            reply["equal"] = verify_in_process(req["pred"], req["gold"])
        except (MemoryError, RecursionError) as exc:  # reported by the parent, which replaces this child
            reply["error"] = type(exc).__name__
        except Exception:  # noqa: BLE001 - a bad expression is a non-verdict, not a dead worker
            pass
        out.write(json.dumps(reply) + "\n")


# ---------------------------------------------------------------------------------------- parent side


class _Child:
    """One `python -m reward_fns._verify_worker` process and its stdout buffer."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reward_fns._verify_worker"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.buf = b""
        self.ready = False
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def read_line(self, deadline: float):
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:  # past the deadline: one look at what is already there
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # child died
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return None

    def wait_ready(self, timeout_s: float) -> bool:
        if not self.ready:
            self.ready = self.read_line(time.monotonic() + timeout_s) == _READY
        return self.ready

    def kill(self) -> None:
        """SIGKILL, without waiting for the exit (a big heap takes a while to tear down): reaped later."""
        for step in (self.proc.kill, self.proc.stdin.close, self.proc.stdout.close):
            with contextlib.suppress(Exception):
                step()
        _KILLED.append(self.proc)
        _KILLED[:] = [proc for proc in _KILLED if proc.poll() is None]


class VerifyWorker:
    """A killable child process answering `equal(pred, gold)` within a time limit (see module docstring).

    A second, warmed-up standby child is kept beside the active one, so that after a kill the next call
    is answered at once instead of waiting ~1 s (more on a loaded machine) for a fresh child's imports.
    Cost: two idle processes of ~60 MB each.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: _Child | None = None
        self._standby: _Child | None = None
        self._next_id = 0
        self._pid = os.getpid()
        self.restarts = 0  # how many times a child was killed (for tests and logs)
        self.failed_starts = 0  # consecutive children that never became ready
        self._ever_ready = False  # the first start is not charged to a call's deadline

    def _new_child(self) -> _Child | None:
        try:
            return _Child()
        except OSError:
            return None

    def is_ready(self) -> bool:
        """Whether the active child has answered "ready" (a look at its pipe, no waiting)."""
        child = self._active
        return self._pid == os.getpid() and child is not None and child.alive() and child.wait_ready(0.0)

    def _ensure_ready(self, deadline: float) -> str | None:
        """A live, ready active child and a standby behind it; else the reason there is none.

        Waiting for a child to start counts against the call's deadline, except on the first start of
        the worker (sympy's imports, ~1 s, paid once per process). A child still starting when the
        deadline passes is left to finish for the next call; only after STARTUP_TIMEOUT_S is it killed.
        """
        if self.failed_starts >= MAX_FAILED_STARTS:
            return "verifier_unavailable"
        if self._active is None or not self._active.alive():
            self._active, self._standby = (self._standby or self._new_child()), None
            if self._active is None:
                self.failed_starts += 1
                return "verifier_unavailable"
        child = self._active
        if not child.ready:
            wait = STARTUP_TIMEOUT_S if not self._ever_ready else deadline - time.monotonic()
            if not child.wait_ready(
                max(0.0, min(wait, child.started + STARTUP_TIMEOUT_S - time.monotonic()))
            ):
                if child.alive() and time.monotonic() < child.started + STARTUP_TIMEOUT_S:
                    return "verifier_starting"
                child.kill()
                self._active = None
                self.failed_starts += 1
                return "verifier_unavailable"
        self._ever_ready = True
        self.failed_starts = 0
        if self._standby is None or not self._standby.alive():
            self._standby = self._new_child()
        return None

    def check(self, pred: str, gold: str, timeout_s: float) -> tuple[bool | None, str | None]:
        """(verdict, None) when the child answered (verdict None: unparseable), else (None, reason).

        The whole call, waiting for the lock and for a restarting child included, takes at most
        `timeout_s` (plus the kill), except the worker's very first start (see _ensure_ready).
        """
        deadline = time.monotonic() + timeout_s
        if not self._lock.acquire(timeout=max(0.0, timeout_s)):
            return None, "verifier_busy"
        try:
            if self._pid != os.getpid():  # inherited through fork: never share the parent's pipes
                self._active, self._standby, self._pid = None, None, os.getpid()
                self._ever_ready = False
            first_start = not self._ever_ready
            reason = self._ensure_ready(deadline)
            if reason is not None:
                return None, reason
            if first_start:  # the first start is not charged to the call
                deadline = time.monotonic() + timeout_s
            elif time.monotonic() >= deadline:  # no time left: do not kill a healthy child for it
                return None, "deadline"
            child = self._active
            self._next_id += 1
            request = json.dumps({"id": self._next_id, "pred": pred, "gold": gold}) + "\n"
            try:
                child.proc.stdin.write(request.encode())
                child.proc.stdin.flush()
            except OSError:
                child.kill()
                self._active = None
                return None, "verifier_died"
            reply = child.read_line(deadline)
            if not isinstance(reply, dict) or reply.get("id") != self._next_id:
                timed_out = reply is None and child.alive()
                self.restarts += 1
                child.kill()
                self._active = None  # the standby takes over on the next call
                return None, "verifier_timeout" if timed_out else "verifier_died"
            if reply.get("error"):  # MemoryError/RecursionError: replace the child, its heap may be full
                self.restarts += 1
                child.kill()
                self._active = None
                return None, f"verifier_{reply['error']}"
            return reply.get("equal"), None
        finally:
            self._lock.release()

    def equal(self, pred: str, gold: str, timeout_s: float) -> bool | None:
        """True/False for a verdict, None when there is none (see `check` for why)."""
        return self.check(pred, gold, timeout_s)[0]

    def close(self) -> None:
        with self._lock:
            for child in (self._active, self._standby):
                if child is not None:
                    child.kill()
            self._active = self._standby = None


class VerifyPool:
    """pool_size() workers: concurrent calls (verl scores a batch from a thread pool) each use a free one.

    Waiting for a free worker counts against the call's `timeout_s`, like everything else; a call takes
    a free worker whose child is ready when there is one. All children start when the pool is made,
    and only the pool's first start is not charged to a call. Cost: two ~60 MB processes per worker.
    """

    def __init__(self, size: int) -> None:
        self.workers = [VerifyWorker() for _ in range(size)]
        self._free = list(self.workers)
        self._cond = threading.Condition()
        self._pid = os.getpid()
        self._any_ready = False
        for worker in self.workers:  # they import sympy in parallel
            worker._active = worker._new_child()

    @property
    def restarts(self) -> int:
        return sum(worker.restarts for worker in self.workers)

    def _take(self, deadline: float) -> VerifyWorker | None:
        with self._cond:
            if self._pid != os.getpid():  # inherited through fork: the workers reset themselves
                self._free, self._any_ready, self._pid = list(self.workers), False, os.getpid()
            while not self._free:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())) and not self._free:
                    return None
            worker = next((w for w in self._free if w.is_ready()), self._free[0])
            self._free.remove(worker)
            if self._any_ready:
                worker._ever_ready = True  # so its own first start is charged
            return worker

    def check(self, pred: str, gold: str, timeout_s: float) -> tuple[bool | None, str | None]:
        deadline = time.monotonic() + timeout_s
        worker = self._take(deadline)
        if worker is None:
            return None, "verifier_busy"
        try:
            return worker.check(pred, gold, deadline - time.monotonic())
        finally:
            with self._cond:
                self._any_ready = self._any_ready or worker.is_ready()
                self._free.append(worker)
                self._cond.notify()

    def equal(self, pred: str, gold: str, timeout_s: float) -> bool | None:
        return self.check(pred, gold, timeout_s)[0]

    def warm_up(self) -> bool:
        """Wait until every worker answers and has a ready standby (calls do this lazily; tests wait)."""
        if not all(worker.check("1", "1", STARTUP_TIMEOUT_S) == (True, None) for worker in self.workers):
            return False
        for worker in self.workers:
            with worker._lock:
                standby = worker._standby
                if standby is None or not standby.wait_ready(STARTUP_TIMEOUT_S):
                    return False
        return True

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def pool_size() -> int:
    """TINYLORA_VERIFY_WORKERS if set, else one worker per CPU, at most 4."""
    value = os.environ.get("TINYLORA_VERIFY_WORKERS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(
                f"TINYLORA_VERIFY_WORKERS={value!r}: set it to a whole number >= 1 (or unset it)"
            )
        return int(value)
    return max(1, min(4, os.cpu_count() or 1))


_POOL: VerifyPool | None = None
_POOL_LOCK = threading.Lock()


def shared_worker() -> VerifyPool:
    """The process-wide pool of workers (one per process; its children are killed at exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = VerifyPool(pool_size())
            atexit.register(_POOL.close)
        return _POOL


if __name__ == "__main__":
    serve()
