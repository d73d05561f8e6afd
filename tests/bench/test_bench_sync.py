"""`bench/sync.py` runs end to end on a tiny Qwen2 and reports both modes: the vector stream within its
1 KB target, the full stream larger, bit-identical engine weights, and a 7B projection from the rates."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_qwen2

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_sync_bench_reports_both_modes(tmp_path):
    model = build_tiny_qwen2(tmp_path / "model")
    out = tmp_path / "sync.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "sync.py"),
            "--model-dir",
            str(model),
            "--steps",
            "2",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["bit_identical_full_vs_vector"] is True
    assert r["vector_bytes_pass"] and r["bytes_per_step_vector"] <= 1024
    assert r["bytes_per_step_full"] > 1000 * r["bytes_per_step_vector"]
    assert [s["kind"] for s in r["steps"]["vector"]] == ["setup", "vector", "vector"]
    assert [s["kind"] for s in r["steps"]["full"]] == ["full", "delta", "delta"]
    assert r["qwen7b_modules"] == 196 and r["qwen7b_bytes_per_step_full"] == 4 * r["qwen7b_adapted_weights"]
    assert all(
        r[k] > 0 for k in ("sync_s_per_step_full", "sync_s_per_step_vector", "qwen7b_sync_s_full_cpu_rate")
    )
    assert "vector bytes per step ≤ 1024: PASS" in proc.stdout
