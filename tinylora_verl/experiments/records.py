"""A run directory and its one result record.

    <run>/run.json      the run's settings (spec.run_settings), written before it starts
    <run>/result.json   written once, atomically, when the run ends: status "finished" or "failed"
    <run>/log.txt       everything the run printed (local backend; Ray keeps job logs itself)

result.json:
    name, status, attempt          attempt counts 1, 2, ... across retries of a failed run
    params                         method, kind, budget, lr, seed, label (as in run.json; label null unless set)
    trainable_params               what actually trained (the planner's exact count for TinyLoRA)
    train                          method metrics (SFT: losses, steps; RL: last step's reward, ...)
    eval                           {set: {accuracy, pass_at_n, n_prompts, ..., per_prompt, prompt_ids}} for
                                   val and every test set
    update                         trained runs: the size of the weight update (update_size.py), else null
    wall_s, finished_at            seconds from start to record, ISO time
    error                          failed runs: the exception / exit status and the log's tail
A run is "finished" (skipped by later sweeps), "failed" (retried with --retry-failed) or "pending"
(no record: never started, or interrupted before it could write one — it runs again).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

RUN_FILE = "run.json"
RESULT_FILE = "result.json"
LOG_FILE = "log.txt"
PARAM_KEYS = ("method", "kind", "budget", "lr", "seed", "label")


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_settings(run_dir) -> dict | None:
    return read_json(Path(run_dir) / RUN_FILE)


def write_settings(run_dir, settings: dict) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    _write_json(Path(run_dir) / RUN_FILE, settings)


def read_result(run_dir) -> dict | None:
    return read_json(Path(run_dir) / RESULT_FILE)


def status(run_dir) -> str:
    result = read_result(run_dir)
    return result["status"] if result and result.get("status") in ("finished", "failed") else "pending"


def previous_attempts(run_dir) -> int:
    result = read_result(run_dir)
    return int(result.get("attempt", 1)) if result else 0


def make_record(
    settings: dict,
    status_: str,
    *,
    attempt: int,
    wall_s: float,
    trainable_params: int | None = None,
    train: dict | None = None,
    eval_: dict | None = None,
    error: str | None = None,
    update: dict | None = None,
) -> dict:
    return {
        "name": settings["name"],
        "status": status_,
        "attempt": attempt,
        "params": {k: settings.get(k) for k in PARAM_KEYS},
        "model": settings.get("model"),
        "trainable_params": trainable_params,
        "train": train or {},
        "eval": eval_ or {},
        "update": update,
        "wall_s": round(wall_s, 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "error": error,
    }


def write_result(run_dir, record: dict) -> None:
    _write_json(Path(run_dir) / RESULT_FILE, record)


def log_tail(path, chars: int = 2000) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return text[-chars:]
