"""Where a training run puts our files (no verl import: the demo driver reads them).

<trainer.default_local_dir>/tinylora_metrics.jsonl                      one JSON row per step
<trainer.default_local_dir>/tinylora_val.jsonl                          one row per validation (val-core/*)
<trainer.default_local_dir>/tinylora_train.log                          the driver's output (console.py)
<trainer.default_local_dir>/global_step_<n>/actor/tinylora_adapter/     our adapter at each save
<trainer.default_local_dir>/sync_check/step_<n>/                        with tinylora.verify_sync
"""

from __future__ import annotations

import json
import re
from pathlib import Path

METRICS_FILE = "tinylora_metrics.jsonl"
VAL_FILE = "tinylora_val.jsonl"
LOG_FILE = "tinylora_train.log"
ADAPTER_DIR = "tinylora_adapter"


def adapter_dirs(run_dir) -> list[Path]:
    """Adapter directories of every saved step, oldest first."""
    found = []
    for d in Path(run_dir).glob(f"global_step_*/actor/{ADAPTER_DIR}"):
        m = re.fullmatch(r"global_step_(\d+)", d.parent.parent.name)
        if m and (d / "tinylora_config.json").is_file():
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def append_row(run_dir, name: str, row: dict) -> None:
    """Append one JSON row to <run_dir>/<name> (METRICS_FILE, VAL_FILE), creating the directory."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / name, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_rows(path) -> list[dict]:
    """The JSON rows of a file append_row wrote (blank lines skipped); [] when it does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
