"""Symbolic answer equivalence (math-verify) in a child process, with a hard per-call time limit.

Why a child process: math-verify's own timeouts use `signal.alarm`, which only works in a process's
main thread (verl calls reward functions from executor threads, where math-verify then raises), and a
signal cannot interrupt sympy stuck in C code (`9^{9^{9^9}}` runs unbounded with its timeouts off).
A child process can always be killed. So:

- `VerifyWorker.equal(pred, gold, timeout_s)` sends one request to a long-lived child
  (`python -m reward_fns._verify_worker`, JSON lines over stdin/stdout) and waits at most `timeout_s`
  seconds for the answer (select() on the pipe). On timeout the child is killed and a warmed-up standby
  child takes over, so the next call does not wait for sympy's ~1 s of imports; a new standby starts
  in the background. (Only the very first call of a process waits for a child to start.)
- Works from any thread (one lock per worker serialises calls), from daemonic processes (it uses
  subprocess, not multiprocessing), and after fork (a worker is owned by the pid that started it).
- Returns True/False for a verdict, None when there is none (timeout, unparseable input, or the
  child could not be started) — the caller decides what None means. Never raises. After
  MAX_FAILED_STARTS children in a row fail to start (math-verify missing), it stops trying.

The child caches parsed gold answers (the same reference is scored n times per GRPO group).
"""

from __future__ import annotations

import atexit
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
_READY = {"ready": True}


# ----------------------------------------------------------------------------------------- child side


@lru_cache(maxsize=4096)
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


def serve() -> None:
    """Child main loop: one JSON request per line on stdin, one JSON reply per line on stdout."""
    import logging

    logging.disable(logging.WARNING)  # math-verify warns on every disabled timeout
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    verify_in_process(
        "\\frac{1}{2}", "0.5"
    )  # first parse builds the LaTeX parser (~1 s): do it before "ready"
    out.write(json.dumps(_READY) + "\n")
    for line in sys.stdin:
        try:
            req = json.loads(line)
            result = verify_in_process(req["pred"], req["gold"])
        except Exception:  # noqa: BLE001 - a bad expression is a non-verdict, not a dead worker
            result = None
        out.write(
            json.dumps({"id": req.get("id") if isinstance(req, dict) else None, "equal": result}) + "\n"
        )


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

    def alive(self) -> bool:
        return self.proc.poll() is None

    def read_line(self, deadline: float):
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
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
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            pass


class VerifyWorker:
    """A killable child process answering `equal(pred, gold)` within a time limit (see module docstring).

    A second, warmed-up standby child is kept beside the active one, so that after a kill the next call
    is answered at once instead of waiting ~1 s (more on a loaded machine) for a fresh child's imports.
    Cost: two idle processes of ~60 MB each per process that scores MATH answers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: _Child | None = None
        self._standby: _Child | None = None
        self._next_id = 0
        self._pid = os.getpid()
        self.restarts = 0  # how many times a child was killed (for tests and logs)
        self.failed_starts = 0  # consecutive children that never became ready

    def _new_child(self) -> _Child | None:
        try:
            return _Child()
        except OSError:
            return None

    def _ensure_ready(self) -> bool:
        """A live, ready active child (start-up time is not charged to the call) and a standby behind it."""
        if self.failed_starts >= MAX_FAILED_STARTS:
            return False
        if self._active is None or not self._active.alive():
            self._active, self._standby = (self._standby or self._new_child()), None
            if self._active is None:
                self.failed_starts += 1
                return False
        if not self._active.wait_ready(STARTUP_TIMEOUT_S):
            self._active.kill()
            self._active = None
            self.failed_starts += 1
            return False
        self.failed_starts = 0
        if self._standby is None or not self._standby.alive():
            self._standby = self._new_child()
        return True

    def equal(self, pred: str, gold: str, timeout_s: float) -> bool | None:
        with self._lock:
            if self._pid != os.getpid():  # inherited through fork: never share the parent's pipes
                self._active, self._standby, self._pid = None, None, os.getpid()
            if not self._ensure_ready():
                return None
            child = self._active
            self._next_id += 1
            request = json.dumps({"id": self._next_id, "pred": pred, "gold": gold}) + "\n"
            try:
                child.proc.stdin.write(request.encode())
                child.proc.stdin.flush()
            except OSError:
                child.kill()
                self._active = None
                return None
            reply = child.read_line(time.monotonic() + timeout_s)
            if not isinstance(reply, dict) or reply.get("id") != self._next_id:
                self.restarts += 1
                child.kill()
                self._active = None  # the standby takes over on the next call
                return None
            return reply.get("equal")

    def close(self) -> None:
        with self._lock:
            for child in (self._active, self._standby):
                if child is not None:
                    child.kill()
            self._active = self._standby = None


_WORKER: VerifyWorker | None = None
_WORKER_LOCK = threading.Lock()


def shared_worker() -> VerifyWorker:
    """The process-wide worker (one per process; killed at exit)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = VerifyWorker()
            atexit.register(_WORKER.close)
        return _WORKER


if __name__ == "__main__":
    serve()
