"""Where a sweep's runs execute. Every run is the same entrypoint, `python -m tinylora_verl.experiments.run_one
RUN_DIR`, which writes RUN_DIR/result.json itself; a backend only starts runs and waits for them.

- LocalBackend (default): one child process at a time on this machine, output in RUN_DIR/log.txt. An RL
  run starts its own local Ray cluster inside (as `tinylora-verl train` does).
- RayJobsBackend: each run is submitted to an existing Ray cluster as a Ray job (the Ray Jobs SDK,
  `JobSubmissionClient(address).submit_job`), up to `max_parallel` at a time — the way verl's own docs
  launch training (`ray job submit --address ... -- python3 -m verl.trainer.main_ppo ...`). Inside the job,
  verl's `ray.init()` joins that cluster, so the config must not ask for a private one: the CPU demo
  config's `ray_kwargs.ray_init.num_cpus` is for a local cluster. The sweep directory must be on storage
  the cluster's nodes share (as trainer.default_local_dir must be for verl checkpoints). SFT and base
  runs compute in the job's entrypoint process, so their entrypoint asks for `entrypoint_num_gpus`
  (default 1); RL entrypoints are drivers and ask for none (verl's workers take the GPUs).
When a run ends without a record (killed, crashed before Python could write one), the sweep records it
as failed with the log's tail (finish_without_record).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import records

ENTRY_MODULE = "tinylora_verl.experiments.run_one"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass
class PendingRun:
    name: str
    method: str
    run_dir: Path
    attempt: int


def entry_command(run_dir: Path, python: str = sys.executable) -> list[str]:
    return [python, "-m", ENTRY_MODULE, str(Path(run_dir).resolve())]


def finish_without_record(run: PendingRun, reason: str, log_text: str) -> None:
    """Record a run that ended without writing its own result (killed, crashed before Python started)."""
    if records.status(run.run_dir) != "pending" and records.previous_attempts(run.run_dir) >= run.attempt:
        return
    settings = records.read_settings(run.run_dir) or {"name": run.name}
    records.write_result(
        run.run_dir,
        records.make_record(
            settings,
            "failed",
            attempt=run.attempt,
            wall_s=0.0,
            error=f"{reason}; output tail:\n{log_text[-1500:]}",
        ),
    )


class LocalBackend:
    name = "local"

    def __init__(self, python: str = sys.executable, timeout_s: float | None = None):
        self.python, self.timeout_s = python, timeout_s

    def describe(self, run: PendingRun) -> str:
        return shlex.join(entry_command(run.run_dir, self.python))

    def run_all(self, runs: list[PendingRun], on_done) -> None:
        for run in runs:
            log_path = run.run_dir / records.LOG_FILE
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            with open(log_path, "a") as log:
                try:
                    rc = subprocess.call(
                        entry_command(run.run_dir, self.python),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        timeout=self.timeout_s,
                    )
                    reason = f"run process exited with status {rc}"
                except subprocess.TimeoutExpired:
                    reason = f"run exceeded --timeout {self.timeout_s:.0f} s and was killed"
            finish_without_record(run, reason, records.log_tail(log_path))
            on_done(run)


class RayJobsBackend:
    name = "ray"

    def __init__(
        self,
        address: str | None,
        client=None,
        python: str = "python",
        runtime_env: dict | None = None,
        max_parallel: int = 4,
        poll_s: float = 10.0,
        entrypoint_num_gpus: float = 1.0,
        sweep_dir=None,
    ):
        self.address, self._client, self.python, self.runtime_env = address, client, python, runtime_env or {}
        self.max_parallel, self.poll_s, self.gpus = max_parallel, poll_s, entrypoint_num_gpus
        self.tag = hashlib.sha256(str(Path(sweep_dir or ".").resolve()).encode()).hexdigest()[:8]

    @property
    def client(self):
        """The JobSubmissionClient, connected on first use (a dry run never connects)."""
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.address)
        return self._client

    def submission(self, run: PendingRun) -> dict:
        """The keyword arguments of JobSubmissionClient.submit_job for `run`."""
        env = dict(self.runtime_env)
        env["env_vars"] = {**env.get("env_vars", {}), "PYTHONUNBUFFERED": "1"}
        kwargs = {
            "entrypoint": shlex.join(entry_command(run.run_dir, self.python)),
            "submission_id": f"tinylora-{self.tag}-{run.name}-a{run.attempt}".replace(".", "_"),
            "runtime_env": env,
            "metadata": {
                "tinylora_run": run.name,
                "run_dir": str(run.run_dir.resolve()),
                "attempt": str(run.attempt),
            },
        }
        if run.method in ("sft", "base") and self.gpus:
            kwargs["entrypoint_num_gpus"] = self.gpus
        return kwargs

    def describe(self, run: PendingRun) -> str:
        """The `ray job submit` command line equivalent to this run's submission."""
        s = self.submission(run)
        args = [
            "ray",
            "job",
            "submit",
            *(["--address", self.address] if self.address else []),
            "--submission-id",
            s["submission_id"],
            "--runtime-env-json",
            json.dumps(s["runtime_env"]),
        ]
        if "entrypoint_num_gpus" in s:
            args += ["--entrypoint-num-gpus", str(s["entrypoint_num_gpus"])]
        return shlex.join(args) + " -- " + s["entrypoint"]

    def run_all(self, runs: list[PendingRun], on_done) -> None:
        queue, active = list(runs), {}
        while queue or active:
            while queue and len(active) < self.max_parallel:
                run = queue.pop(0)
                active[self.client.submit_job(**self.submission(run))] = run
            time.sleep(self.poll_s if active else 0)
            for job_id, run in list(active.items()):
                status = self.client.get_job_status(job_id)
                state = str(getattr(status, "value", status))
                if state not in TERMINAL:
                    continue
                del active[job_id]
                try:
                    logs = self.client.get_job_logs(job_id)
                except Exception as err:  # noqa: BLE001 - logs are best effort
                    logs = f"(no logs: {err})"
                (run.run_dir / records.LOG_FILE).write_text(logs)
                finish_without_record(run, f"Ray job {job_id} ended {state}", logs)
                on_done(run)
