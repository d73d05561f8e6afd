"""Where raw rows come from: local JSONL files (offline copies) or the Hugging Face hub.

- `read_jsonl(path)` yields every line as a RawRow (line number + parsed dict) or, for a line that is
  not a JSON object, a Rejected record: nothing is dropped silently.
- `hub_reachable(repo_id, timeout_s)` decides in at most `timeout_s` seconds (an HTTP request to the
  hub API in a thread abandoned at the deadline; HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1 mean "no" at
  once), so an unreachable hub never hangs.
- `default_jsonl_dir()`: $TINYLORA_JSONL_DIR, the offline copies of the data sets (layout: docs/data.md).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HUB_CHECK_TIMEOUT_S = 3.0
JSONL_DIR_ENV = "TINYLORA_JSONL_DIR"  # the offline copies: the directory `--from-jsonl` defaults to


@dataclass
class RawRow:
    line: int  # 1-based line number in the source file (row index + 1 for hub data)
    data: dict


@dataclass
class Rejected:
    split: str
    line: int
    reason: str
    raw: str = field(default="")

    def as_dict(self) -> dict:
        return {"split": self.split, "line": self.line, "reason": self.reason, "raw": self.raw[:500]}


def default_jsonl_dir() -> Path | None:
    """$TINYLORA_JSONL_DIR when set (an error if it is not a directory), else None."""
    value = os.environ.get(JSONL_DIR_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{JSONL_DIR_ENV}={value}: no such directory")
    return path


def read_jsonl(path: Path, split: str) -> tuple[list[RawRow], list[Rejected]]:
    """All rows of a JSONL file; lines that are not JSON objects come back as Rejected (blank lines skipped)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist (expected a JSONL file; see docs/data.md "
            "for the layout, or pass --from-jsonl DIR)"
        )
    rows, rejected = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as err:
                rejected.append(Rejected(split, number, f"not valid JSON: {err}", line.rstrip("\n")))
                continue
            if not isinstance(data, dict):
                rejected.append(
                    Rejected(split, number, f"a JSON {type(data).__name__}, not an object", line.rstrip("\n"))
                )
                continue
            rows.append(RawRow(number, data))
    return rows, rejected


def hub_reachable(repo_id: str = "openai/gsm8k", timeout_s: float = HUB_CHECK_TIMEOUT_S) -> tuple[bool, str]:
    """(reachable, why), decided within `timeout_s` seconds.

    Asks the hub's API for `repo_id` over HTTP (a bare TCP connect is not enough: proxies and sandboxes
    accept connections they cannot serve). The probe runs in a daemon thread that is abandoned at the
    deadline, so a slow DNS lookup or a server that never answers cannot hold us up.
    """
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes"):
            return False, f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/api/datasets/{repo_id}"
    verdict: list[tuple[bool, str]] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                json.loads(response.read(1_000_000))
                verdict.append((True, f"{url} answered"))
        except Exception as err:  # noqa: BLE001 - any failure means "not reachable"
            verdict.append((False, f"{url}: {type(err).__name__}: {err}"))

    thread = threading.Thread(target=probe, daemon=True, name="hub-probe")
    thread.start()
    thread.join(timeout_s)
    if not verdict:
        return False, f"{url} gave no answer within {timeout_s:g} s"
    return verdict[0]


def read_hub(repo_id: str, config: str | None, split: str) -> list[RawRow]:
    """Rows of a hub dataset split (only called after hub_reachable() said yes)."""
    import datasets

    ds = datasets.load_dataset(repo_id, config, split=split)
    return [RawRow(i + 1, dict(row)) for i, row in enumerate(ds)]
