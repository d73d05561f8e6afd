"""`bench/svd_init.py --quick` (tiny random Qwen2): every method's quality and time are reported side by side,
krylov meets the quality targets there, and the init ratios against peft TinyLoRA are computed from paired
rounds. The SmolLM2 figures are in docs/performance_svd.md ("Init quality"; too slow for a test)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_reports_quality_and_init_ratios(tmp_path):
    out = tmp_path / "svd_init.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "svd_init.py"), "--quick", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["threads"] == 1 and r["real"]["modules"] == 14 and r["engineered"]["modules"] == 4
    for part in ("real", "engineered"):
        assert set(r[part]["methods"]) == {"randomized", "krylov", "exact"}
        for row in r[part]["rows"]:
            assert all(row[m]["seconds"] > 0 for m in ("randomized", "krylov", "exact"))
    for row in r["engineered"]["rows"]:
        assert abs(row["rel_gap"] - 1.5e-3) < 1e-5  # s_2 and s_3 0.15 % apart, as engineered
    k = {part: r[part]["methods"]["krylov"] for part in ("real", "engineered")}
    assert max(q["angle_all"] for q in k.values()) < 1e-2 and max(q["energy"] for q in k.values()) < 1e-6
    assert r["verdict"]["krylov"]["angle_ok"] and r["verdict"]["krylov"]["energy_ok"]
    assert r["engineered"]["methods"]["randomized"]["angle_all"] > 1e-2  # the close gap defeats it
    assert set(r["init_seconds"]) == {"peft-tinylora", "ours-randomized", "ours-krylov"}
    t = r["init_seconds"]
    assert r["init_ratios"]["peft / ours-krylov"] == t["peft-tinylora"][0] / t["ours-krylov"][0]
    assert "init time ratio peft / ours-krylov" in proc.stdout
