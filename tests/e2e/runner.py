"""Runner for the end-to-end GRPO tests (verl + Ray + vLLM CPU + TinyLoRA, tiny Qwen2)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
from tests.tiny_model import build_tiny_qwen2  # noqa: E402


def start_training(tmp: Path, extra: list[str], log_name: str = "train.log"):
    """Start the training driver in its own session; returns (process, run_dir, log_path)."""
    cmd, env, run_dir = _command(tmp, extra)
    log_path = tmp / log_name
    proc = subprocess.Popen(
        cmd, cwd=tmp, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    return proc, run_dir, log_path


def _command(tmp: Path, extra: list[str], tie_word_embeddings: bool = True):
    model = build_tiny_qwen2(tmp / "model", tie_word_embeddings=tie_word_embeddings)
    run_dir = tmp / "run"
    overrides = [
        f"actor_rollout_ref.model.path={model}",
        f"reward.custom_reward_function.path={ROOT / 'tests/e2e/length_reward.py'}",
        f"task.dir={tmp / 'data'}",
        "task.n_train=16",
        "task.n_val=4",
        f"trainer.default_local_dir={run_dir}",
        "trainer.experiment_name=e2e",
        "trainer.total_training_steps=2",
        "trainer.save_freq=2",
        "data.train_batch_size=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "data.max_response_length=12",
        "actor_rollout_ref.rollout.n=4",
        "actor_rollout_ref.actor.optim.lr=0.05",
        "tinylora.budget=4",
        "tinylora.verify_sync=true",
        # float32 unless the case picks a precision (the demo's default is bf16; both are covered)
        *([] if any(x.startswith("precision=") for x in extra) else ["precision=fp32"]),
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("VERL_PLATFORM", None)
    return [sys.executable, "-m", "tinylora_verl.main", *overrides], env, run_dir


def run_training(tmp: Path, extra: list[str], timeout: int = 1500, tie_word_embeddings: bool = True) -> dict:
    cmd, env, run_dir = _command(tmp, extra, tie_word_embeddings)
    model = tmp / "model"
    start = time.time()
    log_path = tmp / "train.log"
    with open(log_path, "w") as log:
        res = subprocess.run(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    wall = time.time() - start
    console = log_path.read_text()  # what a person sees: the command, step lines, summary
    full_log = run_dir / "tinylora_train.log"  # everything verl, Ray and vLLM print
    text = full_log.read_text() if full_log.exists() else ""
    assert res.returncode == 0, f"training failed (console: {log_path}, log: {full_log}):\n{console[-6000:]}"
    rows = [json.loads(x) for x in (run_dir / "tinylora_metrics.jsonl").read_text().splitlines()]
    print(f"e2e wall time {wall:.0f} s; steps: {rows}")
    return {"model": model, "run": run_dir, "rows": rows, "wall": wall, "log": text, "console": console}
