"""The Ray paths against a real Ray cluster, not stand-ins: one local head node started on loopback with
`ray start --head --block` (free ports, its own short temp dir, token auth off: loopback only), shared by
the tests of this module and stopped at the end, failures included, by ending the processes it started.

- launch/ray_job.sh submits a one-step GRPO run of the tiny Qwen2 (verl + vLLM CPU + TinyLoRA, no
  validation, no checkpoint) with `ray job submit`, follows its logs and exits with the job's status; the
  job ships this checkout as its working_dir, and the driver imports tinylora_verl from that copy;
- `tinylora-verl sweep --backend ray` runs two tiny SFT runs as two Ray jobs through the real Jobs API
  (JobSubmissionClient) and records both.

CPU-heavy (the GRPO job starts Ray workers, an FSDP actor and a vLLM engine): marked slow; CI runs them.
Measured on 2 cores shared with other jobs (load average 9-20): cluster start 16-18 s, the one-step job
219-363 s (start-up dominates: the step itself is ~70 s), the two-run sweep 45-55 s, teardown 8-18 s;
the module 5.2 min.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.runner import _command as tiny_grpo_command
from tests.helpers import TINY_SFT_SWEEP_ARGS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXCLUDES = [".git", ".venv", "**/__pycache__", ".pytest_cache", "outputs", "runs", ".cache"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_env() -> dict:
    """This Python's bin first on PATH (so a job's `python` is this one); token auth off (loopback only); no
    outside Ray settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k not in ("PYTHONPATH",)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("VERL_PLATFORM", None)
    return env


def _stop(proc: subprocess.Popen, temp_dir: str) -> None:
    """End every process this cluster started, and only those: the `ray start` process's descendants, its
    session (start_new_session), and any process naming the cluster's own temp dir."""
    pids = set()
    try:
        pids |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        pass
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getsid(p.pid) == proc.pid or temp_dir in " ".join(p.info["cmdline"] or []):
                pids.add(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    pids.add(proc.pid)
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
            procs[-1].send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=15)
    proc.wait(timeout=15)


@pytest.fixture(scope="module")
def ray_cluster():
    """A real single-node Ray cluster on 127.0.0.1: yields its dashboard address (what `ray job submit` and
    JobSubmissionClient talk to). 16 logical CPUs and 1 logical GPU, as the CPU config asks of its own
    local cluster."""
    temp_dir = tempfile.mkdtemp(prefix="tlray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    dashboard = _free_port()
    ports = {
        "port": _free_port(),
        "dashboard-port": dashboard,
        "ray-client-server-port": _free_port(),
        "dashboard-agent-listen-port": _free_port(),
        "dashboard-agent-grpc-port": _free_port(),
        "runtime-env-agent-port": _free_port(),
        "metrics-export-port": _free_port(),
        "node-manager-port": _free_port(),
        "object-manager-port": _free_port(),
    }
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        *[f"--{k}={v}" for k, v in ports.items()],
        "--num-cpus=16",
        "--num-gpus=1",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log = open(Path(temp_dir) / "ray_start.log", "w")
    env = _cluster_env()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    started = time.time()
    try:
        from ray.job_submission import JobSubmissionClient

        while True:
            assert proc.poll() is None, (Path(temp_dir) / "ray_start.log").read_text()[-3000:]
            try:
                JobSubmissionClient(address)
                break
            except Exception:  # noqa: BLE001 - the dashboard is not up yet
                assert time.time() - started < 240, "the Ray dashboard did not come up in 240 s"
                time.sleep(1)
        print(f"ray start: {time.time() - started:.0f} s")
        yield {"address": address, "env": env, "temp_dir": temp_dir}
    finally:
        _stop(proc, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_sh_runs_a_one_step_grpo_job_on_a_real_cluster(ray_cluster, tmp_path):
    cmd, _, run_dir = tiny_grpo_command(
        tmp_path,
        [
            "trainer.total_training_steps=1",
            "trainer.save_freq=-1",
            "trainer.val_before_train=false",
            "trainer.test_freq=-1",
            "tinylora.verify_sync=false",
            "actor_rollout_ref.actor.use_kl_loss=false",
        ],
    )
    overrides = cmd[cmd.index("tinylora_verl.main") + 1 :]
    start = time.time()
    res = subprocess.run(
        ["bash", str(REPO / "launch" / "ray_job.sh"), "--address", ray_cluster["address"], *overrides],
        cwd=tmp_path,
        env=dict(ray_cluster["env"], PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    print(f"ray_job.sh one-step job: {time.time() - start:.0f} s")
    log = run_dir / "tinylora_train.log"
    assert res.returncode == 0, (
        res.stdout[-4000:] + res.stderr[-2000:] + (log.read_text()[-4000:] if log.exists() else "")
    )
    # `ray job submit` followed the job's output: the console of tinylora_verl.main (one line per step)
    assert "succeeded" in res.stdout + res.stderr, res.stdout[-3000:]
    assert "step 1/1  reward " in res.stdout and "done: 1 step(s)" in res.stdout, res.stdout[-3000:]
    rows = [json.loads(line) for line in (run_dir / "tinylora_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["v_norm"] > 0 and "reward" in rows[0]
    # the job ran on this cluster, from this checkout shipped as its working_dir (not the editable install)
    text = log.read_text()
    header = text.splitlines()[0]
    assert (
        f"{ray_cluster['temp_dir']}/session_" in header and "/runtime_resources/working_dir_files/" in header
    )
    assert header.split()[3].endswith("tinylora_verl/main.py"), header
    assert "ray_kwargs.ray_init.num_cpus=16 dropped" in text  # joined the cluster instead of starting one
    assert "TaskRunner pid=" in text  # Ray worker output reached the job driver's log
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(ray_cluster["address"]).list_jobs()
    ours = [j for j in jobs if "tinylora_verl.main" in (j.entrypoint or "")]
    assert len(ours) == 1 and str(ours[0].status.value) == "SUCCEEDED", ours
    assert ours[0].runtime_env["working_dir"].startswith("gcs://_ray_pkg_"), ours[0].runtime_env


def test_sweep_ray_backend_runs_two_sft_runs_as_real_ray_jobs(ray_cluster, tmp_path):
    from tests.tiny_model import build_tiny_qwen2
    from tinylora_verl.cli import main

    model = build_tiny_qwen2(tmp_path / "model")
    out = tmp_path / "sweep"
    runtime_env = {"working_dir": str(REPO), "excludes": EXCLUDES}
    argv = [
        *TINY_SFT_SWEEP_ARGS,
        "--out",
        str(out),
        "--model",
        str(model),
        "--backend",
        "ray",
        "--ray-address",
        ray_cluster["address"],
        "--ray-runtime-env",
        json.dumps(runtime_env),
        "--ray-python",
        sys.executable,
        "--ray-entrypoint-gpus",
        "0",
        "--ray-max-parallel",
        "2",
    ]
    start = time.time()
    assert main(argv) == 0, [p.read_text()[-3000:] for p in (out / "runs").glob("*/log.txt")]
    print(f"sweep of two SFT runs as Ray jobs: {time.time() - start:.0f} s")
    recs = {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/result.json")}
    assert sorted(recs) == ["sft-tinylora2-lr0.01-s0", "sft-tinylora2-lr0.1-s0"]
    for name, rec in recs.items():
        assert rec["status"] == "finished" and rec["trainable_params"] == 2, rec
        assert rec["train"]["steps"] == 2 and rec["eval"]["val"]["n_prompts"] == 4
        assert "sft:" in (out / "runs" / name / "log.txt").read_text()  # the job's logs, fetched from Ray
    from ray.job_submission import JobSubmissionClient

    jobs = [
        j
        for j in JobSubmissionClient(ray_cluster["address"]).list_jobs()
        if (j.metadata or {}).get("tinylora_run") in recs
    ]
    assert sorted(j.metadata["tinylora_run"] for j in jobs) == sorted(recs)
    assert all(str(j.status.value) == "SUCCEEDED" for j in jobs), jobs
    assert all(j.runtime_env["working_dir"].startswith("gcs://_ray_pkg_") for j in jobs)
