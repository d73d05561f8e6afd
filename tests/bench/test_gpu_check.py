"""`bench/gpu_check.py --device cpu --small` runs every check on a CPU, passes them, and writes its JSON;
without a CUDA device the default mode prints one line and exits 2. Neither imports verl, vLLM or Ray
(the device machine the script is for has none of them)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def _run(args, tmp_path, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )


def test_cpu_small_mode_passes_every_check(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = _run(["--device", "cpu", "--small", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["all_pass"] is True and r["complete"] is True and r["device"] == "cpu"
    assert r["imported"] == {"verl": False, "vllm": False, "ray": False, "omegaconf": False, "hydra": False}
    checks = r["checks"]
    assert set(checks) == {"a1", "a2", "b-bf16-7", "b-bf16-5", "b-fp32-7", "b-fp32-5", "c", "d"}
    assert all(c["pass"] for c in checks.values())

    for key, offload in (("a1", False), ("a2", True)):  # FSDP2 over gloo on a cpu mesh
        a = checks[key]
        assert a["offload"] is offload and a["param_type"] == "DTensor"
        assert a["params_with_grad"] == ["tinylora.v.0"] and a["v_grad_dtype"] == "torch.float32"
        assert a["compute_dtype"] == "torch.bfloat16"
        assert a["merged_finite"] and a["merged_equal_pre_shard"] and a["modules"] == 14

    for key, siblings in (("b-bf16-7", 0), ("b-bf16-5", 4), ("b-fp32-7", 0), ("b-fp32-5", 4)):
        b = checks[key]
        assert len(b["siblings"]) == siblings and b["adapted"] == 14 - siblings
        assert [x["kind"] for x in b["rounds"]] == ["setup", "vector"]
        assert all(x["names_match"] and x["mismatched"] == [] and x["tensors"] == 14 for x in b["rounds"])
        assert all(x["changed_frac"] > 0.5 for x in b["rounds"])  # v moves the merge: not a trivial identity

    c = checks["c"]
    assert c["shapes"] == "small" and c["modules"] == 14 and c["finish_returns"] in ("list", "generator")
    assert c["peak_extra_bytes"] is None and c["figure"] is None  # no CUDA allocator on a CPU
    assert c["largest_module_fp32_bytes"] == 1024 * 256 * 4
    assert c["outputs_finite"] and c["outputs_shape_dtype_ok"]

    d = checks["d"]
    assert d["shapes"] == "small" and len(d["seconds"]["frozen"]) == d["rounds"] == 5
    assert math.isfinite(d["ratio_median"]) and d["ratio_median"] > 0 and d["figure"] == d["ratio_median"]

    assert "ALL PASS" in proc.stdout
    for key in checks:  # the table has a row per check
        assert any(line.startswith(key + " ") for line in proc.stdout.splitlines()), key


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_without_cuda_nothing_runs_and_exit_2(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = _run(["--out", str(out)], tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip() == "no CUDA device: nothing run"
    assert json.loads(out.read_text())["status"] == "no CUDA device: nothing run"
