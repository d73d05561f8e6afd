"""`bench/svd_time.py` on a toy layer: the table and JSON have one row per (method, threads) setting with
a positive time for each of the 7 projections, and the projection is the layer's time x the layer count.
The 7B figures themselves are in docs/performance_svd.md (too slow for a test)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import svd_time

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_toy_run_reports_every_setting(tmp_path):
    out = tmp_path / "svd_time.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "svd_time.py"), "--shapes", "toy", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["shape"] == "toy" and r["layers"] == 2 and r["modules"] == 14 and r["skipped"] == []
    assert list(r["projections"]) == NAMES
    threads = [1] if r["cores"] == 1 else [1, r["cores"]]
    assert [(s["method"], s["threads"]) for s in r["settings"]] == [
        (m, t) for t in threads for m in svd_time.SVD_METHODS
    ]
    for s in r["settings"]:
        assert list(s["module_s"]) == NAMES and all(v > 0 for v in s["module_s"].values())
        assert 0 < s["svd_sum_s"] <= s["apply_s"] <= s["layer_s"] and s["identity_s"] > 0
        assert s["projected_s"] == s["layer_s"] * r["layers"]
        assert set(s["within"]) == set(r["timeouts_s"])
    header = proc.stdout.splitlines()[-2 - len(r["settings"]) - 1]
    assert header.startswith("| method | threads | q_proj (s)") and "x2 layers (s)" in header
    rows = [
        line
        for line in proc.stdout.splitlines()
        if line.startswith(tuple(f"| {m} |" for m in svd_time.SVD_METHODS))
    ]
    assert len(rows) == len(r["settings"])


def test_quick_is_one_thread_and_budget_skips():
    r = svd_time.run("toy", quick=True, methods=("randomized",), budget_s=60.0, frozen_rank=2)
    assert [(s["method"], s["threads"]) for s in r["settings"]] == [("randomized", 1)]
    r = svd_time.run("toy", quick=True, methods=("randomized", "exact"), budget_s=0.0, frozen_rank=2)
    assert r["settings"] == [] and [(s["method"], s["threads"]) for s in r["skipped"]] == [
        ("randomized", 1),
        ("exact", 1),
    ]
