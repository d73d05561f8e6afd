"""`bench/adapter.py --quick` runs end to end and writes every metric, finite, with its target.

Timings on a shared CPU are noisy and the quick model is a tiny random Qwen2, so the targets themselves
are not asserted here — only that each measurement exists, is a finite number, and has the right sign.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
METRICS = {
    "fwd_bwd_ratio_tinylora",
    "fwd_bwd_ratio_peft_tinylora",
    "fwd_bwd_ratio_peft_lora_r2",
    "train_step_time_ratio",
    "train_step_peak_rss_ratio",
    "peak_rss_tinylora_gb",
    "peak_rss_full_ft_gb",
    "init_speedup_vs_peft",
    "svd_max_angle_U_rad",
    "svd_max_angle_V_rad",
    "svd_speedup_randomized_vs_exact",
}
TARGETED = {
    "fwd_bwd_ratio_tinylora": 1.10,
    "train_step_time_ratio": 0.70,
    "train_step_peak_rss_ratio": 0.40,
    "init_speedup_vs_peft": 20.0,
    "svd_max_angle_U_rad": 1e-2,
    "svd_max_angle_V_rad": 1e-2,
}


@pytest.mark.slow
def test_quick_bench_writes_every_metric(tmp_path):
    out = tmp_path / "adapter.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "adapter.py"), "--quick", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["model"] == "tiny-qwen2"
    metrics = result["metrics"]
    assert set(metrics) == METRICS
    for name, m in metrics.items():
        assert isinstance(m["value"], float) and math.isfinite(m["value"]) and m["value"] >= 0, (name, m)
        if name in TARGETED:
            assert m["target"] == TARGETED[name] and m["pass"] in (True, False), (name, m)
        else:
            assert m["target"] is None and m["pass"] is None, (name, m)
    for name in (
        "fwd_bwd_ratio_tinylora",
        "train_step_time_ratio",
        "train_step_peak_rss_ratio",
        "init_speedup_vs_peft",
        "peak_rss_tinylora_gb",
    ):
        assert metrics[name]["value"] > 0, name
    # the printed table names every metric row and a verdict
    for m in metrics.values():
        assert m["label"] in proc.stdout
    details = result["details"]
    assert details["trainable_params"]["tinylora"] == details["trainable_params"]["peft-tinylora"] == 13
    assert len(details["svd_per_module_default"]) == result["plan"]["modules"] == 14
