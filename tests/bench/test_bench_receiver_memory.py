"""bench/receiver_memory.py runs (one Qwen2.5-7B layer, synthetic weights) and reports both variants."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_receiver_memory_bench_one_layer(tmp_path):
    out = tmp_path / "mem.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench/receiver_memory.py"), "--layers", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = {r["variant"]: r for r in data["rows"]}
    assert set(rows) == {"before", "after"} and all(r["modules"] == 7 for r in rows.values())
    # streaming holds at most a module or two; building all seven first holds all of them
    assert 0 < rows["after"]["peak_extra_bytes"] < rows["before"]["peak_extra_bytes"]
    assert "goal: after <= 2.00x" in res.stdout
