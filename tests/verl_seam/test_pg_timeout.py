"""The training ranks' process group takes its timeout from `actor_rollout_ref.nccl_timeout`.

verl 0.9.1's TrainingWorker makes the process group with no timeout, so its own `nccl_timeout` key is
dead there; our worker's `init_model` makes the group first with it (`init_training_process_group`).
Two gloo ranks (no Ray) run `apply_tinylora_from_rank0` with rank 0's SVD slowed down by a few seconds:
with a timeout shorter than that the waiting rank 1's collective times out (what a slow 7B SVD does to a
job under torch's default timeout); with a longer one both ranks get the identity.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinylora_verl.verl_seam.worker import init_training_process_group

ROOT = Path(__file__).resolve().parents[2]
SLOW_SVD_S = 6

RANK_SCRIPT = r"""
import json, os, sys, time
rank, port, timeout, slow_s, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0")
import torch
from tests.tiny_model import tiny_qwen2
from tinylora_verl import TinyLoRAConfig
from tinylora_verl.adapter import prepare as adapter_model  # where apply_tinylora calls svd_factors
from tinylora_verl.verl_seam.engine import apply_tinylora_from_rank0
from tinylora_verl.verl_seam.worker import init_training_process_group
model = tiny_qwen2()
# Start both ranks' clocks together: imports on a busy machine can differ by more than the short
# timeout, and the process group's rendezvous is bounded by that timeout too.
open(os.path.join(out, f"ready{rank}"), "w").close()
while not all(os.path.exists(os.path.join(out, f"ready{r}")) for r in (0, 1)):
    time.sleep(0.05)
applied = init_training_process_group({"nccl_timeout": int(timeout)})
pg = torch.distributed.distributed_c10d._get_default_group()
pg_timeout = pg._get_backend(torch.device("cpu")).options._timeout.total_seconds()
svd = adapter_model.svd_factors
def slow_svd(W, r, opts, _first=[True]):      # only rank 0 computes factors; its first one stalls
    if _first[0]:
        _first[0] = False
        time.sleep(slow_s)
    return svd(W, r, opts)
adapter_model.svd_factors = slow_svd
result = {"rank": rank, "applied": applied, "pg_timeout_s": pg_timeout}
try:
    handle, identity = apply_tinylora_from_rank0(model, TinyLoRAConfig(budget=4))
    result["identity"] = list(identity)
except Exception as err:                       # the waiting rank's collective timed out
    result["error"] = f"{type(err).__name__}: {err}"
json.dump(result, open(os.path.join(out, f"rank{rank}.json"), "w"))
os._exit(0)                                    # no teardown: after a timeout the peer may be gone
"""


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _two_ranks(tmp_path, timeout_s: int) -> list[dict]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "DIST_INIT_METHOD")
    }
    env.update(VERL_PLATFORM="cpu", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, str(r), port, str(timeout_s), str(SLOW_SVD_S), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_timeout_key_decides_whether_a_slow_rank0_svd_kills_the_wait(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    short.mkdir(), long.mkdir()
    r = _two_ranks(short, timeout_s=2)
    assert [x["pg_timeout_s"] for x in r] == [2, 2] and [x["applied"] for x in r] == [2, 2]
    assert "error" in r[1], r[1]  # rank 1 gave up waiting for rank 0's SVD
    r = _two_ranks(long, timeout_s=120)
    assert [x["pg_timeout_s"] for x in r] == [120, 120]
    assert all("error" not in x for x in r), r
    assert r[0]["identity"] == r[1]["identity"]


def test_unset_key_leaves_verl_default_and_bad_values_are_refused(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "tinylora_verl.verl_seam.worker.verl_distributed.initialize_global_process_group_ray",
        lambda timeout_second=None: calls.append(timeout_second),
    )
    monkeypatch.setattr("torch.distributed.is_initialized", lambda: False)
    monkeypatch.setattr("torch.distributed.get_rank", lambda: 0)
    assert init_training_process_group({}) is None and calls == [None]
    assert init_training_process_group({"nccl_timeout": 7200}) == 7200 and calls == [None, 7200]
    with pytest.raises(ValueError, match="nccl_timeout"):
        init_training_process_group({"nccl_timeout": 0})
    monkeypatch.setattr("torch.distributed.is_initialized", lambda: True)
    assert init_training_process_group({"nccl_timeout": 7200}) is None and len(calls) == 2
