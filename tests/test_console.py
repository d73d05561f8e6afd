"""The console (tinylora_verl/console.py): framework output goes to RUN_DIR/tinylora_train.log, the terminal
gets one line per step, the held-out lines and a summary (or the log's tail on failure); the curve PNG.

The plumbing test runs the real pieces in a child process (its stdout/stderr are "the terminal"): a real
local Ray cluster whose actor prints like verl's TaskRunner and appends the per-step rows as our trainer
does, verl-like prints in the driver (a pprint of a config), Python warnings, a logging handler made
before the console started, a C-level write to fd 2 and a child process's output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tinylora_verl import console
from tinylora_verl.curve import main as curve_main
from tinylora_verl.curve import write_curve
from tinylora_verl.verl_seam.trainer_files import LOG_FILE, METRICS_FILE, VAL_FILE, append_row

ROOT = Path(__file__).resolve().parents[1]
MARKERS = [
    "VERL_PPRINT_MARKER",
    "WARN_MARKER",
    "LOGGING_MARKER",
    "FD2_MARKER",
    "CHILD_MARKER",
    "RAY_ACTOR_MARKER",
]

SCRIPT = textwrap.dedent(
    """
    import logging, os, pprint, subprocess, sys, time, warnings
    import ray
    from tinylora_verl.console import Console
    from tinylora_verl.verl_seam.trainer_files import LOG_FILE, METRICS_FILE, VAL_FILE, append_row

    run_dir = sys.argv[1]
    logging.basicConfig(level=logging.INFO)  # a handler made before the console, as Hydra's and verl's are
    print("BEFORE_MARKER", flush=True)

    @ray.remote
    class TaskRunner:  # prints like verl's TaskRunner, writes the rows like our trainer (another process)
        def run(self, run_dir):
            print("RAY_ACTOR_MARKER config", flush=True)
            append_row(run_dir, VAL_FILE, {"step": 0, "val-core/t/acc/mean@8": 0.125, "val-core/t/acc/best@8/mean": 0.5})
            for step, reward in ((1, 0.25), (2, 0.5)):
                append_row(run_dir, METRICS_FILE, {"step": step, "reward": reward, "response_len": 12.0,
                                                   "t_gen": 3.0, "t_old_logprob": 1.5, "t_update": 2.25,
                                                   "t_sync": 0.5, "t_step": 7.5})
                time.sleep(0.3)
            append_row(run_dir, VAL_FILE, {"step": 2, "val-core/t/acc/mean@8": 0.375})

    with Console(run_dir, total_steps=2, poll_s=0.1):
        pprint.pprint({"VERL_PPRINT_MARKER": {"actor_rollout_ref": list(range(30))}})
        warnings.warn("WARN_MARKER engine is not available")
        logging.getLogger("verl.something").warning("LOGGING_MARKER")
        os.write(2, b"FD2_MARKER from C\\n")
        subprocess.run([sys.executable, "-c", "print('CHILD_MARKER')"], check=True)
        ray.init(num_cpus=1, include_dashboard=False)
        ray.get(TaskRunner.remote().run.remote(run_dir))
        log = os.path.join(run_dir, LOG_FILE)
        deadline = time.time() + 60  # Ray forwards worker output asynchronously
        while "RAY_ACTOR_MARKER" not in open(log).read() and time.time() < deadline:
            time.sleep(0.2)
        ray.shutdown()
    print("AFTER_MARKER", flush=True)
    """
)


@pytest.mark.slow
def test_framework_output_goes_to_the_log_and_the_terminal_gets_the_steps(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(SCRIPT)
    run_dir = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, str(script), str(run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    log = (run_dir / LOG_FILE).read_text()
    assert res.returncode == 0, res.stdout + res.stderr + log[-3000:]
    terminal = res.stdout + res.stderr
    for marker in MARKERS:
        assert marker in log, (marker, log[-3000:])
        assert marker not in terminal, (marker, terminal)
    assert "(TaskRunner pid=" in log and "\x1b[" not in log  # Ray's prefix, no colour codes in the file
    lines = res.stdout.splitlines()
    assert lines[0] == "BEFORE_MARKER" and lines[-1] == "AFTER_MARKER"
    assert lines[1:-1] == [
        f"run directory: {run_dir}",
        f"log (verl, Ray, vLLM output): {run_dir / LOG_FILE}",
        "held-out acc 0.125 (mean@8, step 0)",
        "step 1/2  reward 0.250  resp 12  | gen 3.0 s  log-prob 1.5 s  update 2.2 s  sync 0.50 s  | step 7.5 s",
        "step 2/2  reward 0.500  resp 12  | gen 3.0 s  log-prob 1.5 s  update 2.2 s  sync 0.50 s  | step 7.5 s",
        "held-out acc 0.375 (mean@8, step 2)",
        lines[-2],
    ], res.stdout
    assert lines[-2].startswith("done: 2 step(s) in ") and lines[-2].endswith(
        "; reward 0.250 -> 0.500 (step 1 -> 2); held-out acc 0.125 -> 0.375 (step 0 -> 2)"
    ), lines[-2]
    assert res.stderr == "", res.stderr


def test_a_failure_shows_the_log_tail_and_the_traceback_goes_to_the_log(tmp_path, capfd):
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="boom"):
        with console.Console(tmp_path, total_steps=3, poll_s=0.05, stream=out):
            append_row(tmp_path, METRICS_FILE, {"step": 1, "reward": 0.5, "t_gen": 1.0})
            print("chatter before the failure")
            raise RuntimeError("boom in a Ray worker")
    text = out.getvalue()
    assert "step 1/3  reward 0.500  | gen 1.0 s" in text
    assert f"FAILED (RuntimeError) after 1 step(s); last lines of {tmp_path / LOG_FILE}:" in text
    assert "  chatter before the failure" in text and "  RuntimeError: boom in a Ray worker" in text
    log = (tmp_path / LOG_FILE).read_text()
    assert "Traceback (most recent call last)" in log and "chatter before the failure" in log
    captured = capfd.readouterr()  # nothing leaked to the process's own stdout/stderr
    assert "chatter" not in captured.out + captured.err


def test_user_error_reaches_the_terminal_and_rows_from_before_are_not_repeated(tmp_path, capfd):
    append_row(tmp_path, METRICS_FILE, {"step": 1, "reward": 0.1})  # an earlier run in the same directory
    out = io.StringIO()
    with pytest.raises(SystemExit):
        with console.Console(tmp_path, stream=out, poll_s=0.05):
            console.user_error("tinylora-verl train: bad tinylora block: budget must be positive")
            raise SystemExit(2)
    text = out.getvalue()
    assert "bad tinylora block: budget must be positive" in text
    assert "step" not in text.replace("run directory", "") and "FAILED" not in text and "done:" not in text
    assert "bad tinylora block" in (tmp_path / LOG_FILE).read_text()
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    console.user_error("outside a console: plain stderr")
    assert capfd.readouterr().err == "outside a console: plain stderr\n"


def test_step_and_held_out_lines():
    row = {"step": 3, "reward": 0.28125, "t_gen": 18.6, "t_ref": 2.0, "t_step": 52.0}
    assert console.step_line(row, 10) == "step  3/10  reward 0.281  | gen 18.6 s  ref 2.0 s  | step 52.0 s"
    assert console.step_line({"step": 12}) == "step 12"
    val = {
        "step": 0,
        "val-core/x/reward/mean@4": 0.5,
        "val-core/x/acc/mean@8": 0.25,
        "val-core/x/acc/best@8/mean": 1,
    }
    assert console.held_out_line(val) == "held-out acc 0.250 (mean@8, step 0)"
    assert console.held_out_line({"step": 1, "val-aux/x": 1.0}) is None


def _write_run(run_dir: Path) -> None:
    for step, reward in enumerate([0.17, 0.31, 0.28, 0.41], start=1):
        append_row(run_dir, METRICS_FILE, {"step": step, "reward": reward, "t_gen": 18.0})
    append_row(
        run_dir, VAL_FILE, {"step": 0, "val-core/t/acc/mean@8": 0.219, "val-core/t/acc/best@8/mean": 0.6}
    )
    append_row(run_dir, VAL_FILE, {"step": 4, "val-core/t/acc/mean@8": 0.438})


def test_curve_png_from_a_metrics_file(tmp_path):
    from tinylora_verl.curve import plot_curve
    from tinylora_verl.verl_seam.trainer_files import read_rows

    _write_run(tmp_path)
    path = write_curve(tmp_path)
    assert path == tmp_path / "curve.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    fig = plot_curve(
        read_rows(tmp_path / METRICS_FILE), read_rows(tmp_path / VAL_FILE), tmp_path / "again.png"
    )
    reward, held = fig.axes[0].get_lines()
    assert list(reward.get_xdata()) == [1, 2, 3, 4] and list(reward.get_ydata()) == [0.17, 0.31, 0.28, 0.41]
    assert list(held.get_xdata()) == [0, 4] and list(held.get_ydata()) == [0.219, 0.438]
    assert "held-out acc (mean@8)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.219", "0.438"]


def test_curve_command(tmp_path, capsys):
    assert curve_main([str(tmp_path)]) == 2  # nothing to draw
    assert "no tinylora_metrics.jsonl" in capsys.readouterr().err
    _write_run(tmp_path)
    assert curve_main([str(tmp_path), str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(json.dumps(capsys.readouterr().out.strip())) == str(tmp_path / "c.png")
