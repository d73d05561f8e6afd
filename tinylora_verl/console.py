"""What a person sees while a run trains (`python -m tinylora_verl.main`, `tinylora-verl train`, the demo).

verl, Ray, vLLM and TransferQueue print ~1,700 lines for a 10-step CPU demo (verl's resolved config, Ray's
and vLLM's warnings from every process, a progress bar). `Console` sends all of it to
`<run directory>/tinylora_train.log` and keeps the terminal for people:

    the run directory and the log's path
    step  1/10  reward 0.172  resp 15  | gen 17.0 s  log-prob 23.3 s  update 90.8 s  sync 2.01 s  | step 134.3 s
    held-out acc 0.219 (mean@8, step 0)
    ... one line per step, held-out lines when verl validates, then a summary (or, on failure, the log's tail)

How: at the file-descriptor level, so nothing escapes. The driver's fds 1 and 2 are pointed at the log
(dup2), and sys.stdout / sys.stderr with them: verl's prints in the driver, Python's warnings and logging handlers, Hydra, C-level writes, child
processes, and every Ray worker's output, which Ray's log monitor forwards to the driver (`log_to_driver`,
Ray's default) and the driver prints to its sys.stdout / sys.stderr: the TaskRunner (verl's resolved config,
the trainer's own `[tinylora]` lines, the console logger's metrics, the progress bar), the FSDP workers, vLLM
servers and engine processes, TransferQueue. `RAY_COLOR_PREFIX=0` (Ray's knob, read when it prints) keeps
ANSI colour codes out of the file. The console keeps a duplicate of the original stdout; a thread follows
the per-step rows the trainer appends (`tinylora_metrics.jsonl`, `tinylora_val.jsonl`, written in the
TaskRunner process, read here in the driver) and prints one line per row. When the TaskRunner runs on
another node than the driver (a multi-node Ray job) and the run directory is not shared, no rows arrive:
the log still has everything.

`TINYLORA_CONSOLE=all` turns this off (everything on the terminal, as verl prints it).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from .verl_seam.trainer_files import LOG_FILE, METRICS_FILE, VAL_FILE

ENV = "TINYLORA_CONSOLE"
TAIL_LINES = 30

# (label, metrics-row key, format) of the per-step line; missing keys are left out
PHASES = (
    ("gen", "t_gen", "{:.1f} s"),
    ("log-prob", "t_old_logprob", "{:.1f} s"),
    ("ref", "t_ref", "{:.1f} s"),
    ("update", "t_update", "{:.1f} s"),
    ("sync", "t_sync", "{:.2f} s"),
)

_active: Console | None = None


def enabled() -> bool:
    """False when TINYLORA_CONSOLE=all (everything on the terminal)."""
    return os.environ.get(ENV, "steps").strip().lower() != "all"


def user_error(message: str) -> None:
    """One line on the terminal's stderr for a mistake in the user's input (and in the log when a console
    is active): the caller then exits 2."""
    if _active is not None:
        _active.error(message)
    else:
        print(message, file=sys.stderr, flush=True)


def step_line(row: dict, total_steps: int | None = None) -> str:
    """`step  3/10  reward 0.281  resp 15  | gen 18.6 s  log-prob 8.8 s  update 20.8 s  sync 1.91 s  | step 52.0 s`"""
    step = row.get("step", "?")
    width = len(str(total_steps)) if total_steps else 2
    parts = [f"step {step:>{width}}/{total_steps}" if total_steps else f"step {step:>{width}}"]
    if row.get("reward") is not None:
        parts.append(f"reward {row['reward']:.3f}")
    if row.get("response_len") is not None:
        parts.append(f"resp {row['response_len']:.0f}")
    phases = [f"{label} {fmt.format(row[key])}" for label, key, fmt in PHASES if row.get(key) is not None]
    text = "  ".join(parts)
    if phases:
        text += "  | " + "  ".join(phases)
    if row.get("t_step") is not None:
        text += f"  | step {row['t_step']:.1f} s"
    return text


def headline_metric(row: dict) -> str | None:
    """The held-out metric to show from a validation row: verl's val-core/<source>/<var>/mean@N, preferring
    var 'acc', then 'reward' / 'score'; None when the row has none."""
    names = sorted(k for k in row if k.startswith("val-core/") and "/mean@" in k)
    for var in ("acc", "reward", "score"):
        for name in names:
            if name.split("/")[-2] == var:
                return name
    return names[0] if names else None


def held_out_line(row: dict) -> str | None:
    """`held-out acc 0.219 (mean@8, step 0)`, or None for a row without a mean@N metric."""
    name = headline_metric(row)
    if name is None:
        return None
    var, stat = name.split("/")[-2:]
    return f"held-out {var} {row[name]:.3f} ({stat}, step {row.get('step', '?')})"


class _Follower:
    """New complete JSON lines of a file another process appends to."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0  # a resumed run: only rows from now on

    def new_rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        rows = []
        for line in data[:end].decode(errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows


class Console:
    """Context manager: the process's output goes to RUN_DIR/tinylora_train.log, the terminal gets the step
    lines and a summary (see the module docstring). `stream` is where the console writes (default: a
    duplicate of the original stdout)."""

    def __init__(self, run_dir, total_steps: int | None = None, poll_s: float = 1.0, stream=None):
        self.run_dir = Path(run_dir)
        self.log_path = self.run_dir / LOG_FILE
        self.total_steps = total_steps
        self.poll_s = poll_s
        self._stream = stream
        self.steps: list[dict] = []
        self.held_out: list[dict] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # ---- terminal output -------------------------------------------------------------------------
    def say(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def error(self, text: str) -> None:
        """A line for the person at the terminal's stderr, also written to the log."""
        with self._lock:
            self.err.write(text + "\n")
            self.err.flush()
        print(text, file=sys.stderr, flush=True)

    def _poll(self) -> None:
        # in step order; a validation at step s came after step s's update (step 0: before training)
        rows = [(r.get("step", 0), 0, r) for r in self._metrics.new_rows()]
        rows += [(r.get("step", 0), 1, r) for r in self._val.new_rows()]
        for _, is_val, row in sorted(rows, key=lambda t: t[:2]):
            if not is_val:
                self.steps.append(row)
                self.say(step_line(row, self.total_steps))
            elif held_out_line(row):
                self.held_out.append(row)
                self.say(held_out_line(row))

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._poll()
            except OSError:  # the run directory is being written; try again next time
                pass

    # ---- redirection -----------------------------------------------------------------------------
    def __enter__(self) -> Console:
        global _active
        self.run_dir.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        self.out = self._stream or os.fdopen(os.dup(1), "w", buffering=1)
        self.err = self._stream or os.fdopen(os.dup(2), "w", buffering=1)
        self._log = open(self.log_path, "a", buffering=1)
        self._log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
        self._log.flush()
        os.dup2(self._log.fileno(), 1)
        os.dup2(self._log.fileno(), 2)
        self._sys_streams = (sys.stdout, sys.stderr)  # Python-level too, should they not be fds 1 and 2
        sys.stdout = sys.stderr = self._log
        self._ray_color = os.environ.get("RAY_COLOR_PREFIX")
        os.environ["RAY_COLOR_PREFIX"] = "0"  # Ray prints worker lines without ANSI colours
        self._metrics = _Follower(self.run_dir / METRICS_FILE)
        self._val = _Follower(self.run_dir / VAL_FILE)
        self.start = time.time()
        self.say(f"run directory: {self.run_dir}")
        self.say(f"log (verl, Ray, vLLM output): {self.log_path}")
        self._thread = threading.Thread(target=self._follow, name="tinylora-console", daemon=True)
        self._thread.start()
        _active = self
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        global _active
        self._stop.set()
        self._thread.join()
        self._poll()
        failed = exc_type is not None and not (
            issubclass(exc_type, SystemExit) and exc.code in (0, None, 2)  # 2: a user error, already said
        )
        if failed and not issubclass(exc_type, SystemExit):
            traceback.print_exception(exc_type, exc, tb)  # into the log
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = self._sys_streams
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        if self._ray_color is None:
            os.environ.pop("RAY_COLOR_PREFIX", None)
        else:
            os.environ["RAY_COLOR_PREFIX"] = self._ray_color
        _active = None
        self._log.close()
        if exc_type is None:
            self.say(self.summary())
        elif failed:
            what = exc_type.__name__ + (f" {exc.code}" if issubclass(exc_type, SystemExit) else "")
            self.say(f"FAILED ({what}) after {len(self.steps)} step(s); last lines of {self.log_path}:")
            for line in tail(self.log_path, TAIL_LINES):
                self.say("  " + line)
        if self._stream is None:
            self.out.close()
            self.err.close()
        return False

    def summary(self) -> str:
        minutes = (time.time() - self.start) / 60
        parts = [f"done: {len(self.steps)} step(s) in {minutes:.1f} min"]
        rewards = [r for r in self.steps if r.get("reward") is not None]
        if rewards:
            first, last = rewards[0], rewards[-1]
            parts.append(
                f"reward {first['reward']:.3f} -> {last['reward']:.3f} (step {first['step']} -> {last['step']})"
            )
        if self.held_out:
            first, last = self.held_out[0], self.held_out[-1]
            name = headline_metric(first)
            var = name.split("/")[-2]
            if last is first or headline_metric(last) != name:
                parts.append(f"held-out {var} {first[name]:.3f} (step {first['step']})")
            else:
                parts.append(
                    f"held-out {var} {first[name]:.3f} -> {last[name]:.3f} "
                    f"(step {first['step']} -> {last['step']})"
                )
        return "; ".join(parts)


def tail(path, n: int) -> list[str]:
    """The last n lines of a text file ([] when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        lines = f.read().decode(errors="replace").splitlines()
    return lines[-n:]
