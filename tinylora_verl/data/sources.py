"""Where raw rows come from: local JSONL files (offline copies) or the Hugging Face hub.

- `read_jsonl(path)` yields every line as a RawRow (line number + parsed dict) or, for a line that is
  not UTF-8, not JSON, nested deeper than MAX_JSON_DEPTH or not a JSON object, a Rejected record naming
  the file and line: nothing is dropped silently, and one bad line never stops the others.
- `hub_reachable(repo_id, timeout_s)` decides in at most `timeout_s` seconds (an HTTP request to the
  hub API in a thread abandoned at the deadline; HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1 mean "no" at
  once), so an unreachable hub never hangs.
- `default_jsonl_dir()`: $TINYLORA_JSONL_DIR, the offline copies of the data sets (layout: docs/data.md).
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingPath

HUB_CHECK_TIMEOUT_S = 3.0
JSONL_DIR_ENV = "TINYLORA_JSONL_DIR"  # the offline copies: the directory `--from-jsonl` defaults to
# a row of these data sets is a flat object; deeper nesting is refused before json.loads (whose
# recursion would end in a RecursionError somewhere around Python's recursion limit)
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


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
    file: str = field(default="")  # the source file, for rows read from JSONL

    def as_dict(self) -> dict:
        where = {"file": self.file} if self.file else {}
        return {"split": self.split, **where, "line": self.line, "reason": self.reason, "raw": self.raw[:500]}

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else f"{self.split} line {self.line}"


def default_jsonl_dir() -> Path | None:
    """$TINYLORA_JSONL_DIR when set (an error if it is not a directory), else None."""
    value = os.environ.get(JSONL_DIR_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise MissingPath(
            f"{JSONL_DIR_ENV}={value}: no such directory (unset it, or point it at the JSONL layout of docs/data.md)"
        )
    return path


def read_jsonl(path: Path, split: str) -> tuple[list[RawRow], list[Rejected]]:
    """All rows of a JSONL file; lines that are not JSON objects come back as Rejected (blank lines skipped)."""
    if not path.is_file():
        raise MissingPath(
            f"{path} does not exist (expected a JSONL file; see docs/data.md "
            "for the layout, or pass --from-jsonl DIR)"
        )
    rows, rejected = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                text = raw.decode("utf-8", errors="backslashreplace").rstrip("\n")
                reason = f"not UTF-8: byte 0x{raw[err.start]:02x} at column {err.start + 1}"
                rejected.append(Rejected(split, number, reason, text, str(path)))
                continue
            if not line.strip():
                continue
            try:
                data = _parse_object(line)
            except ValueError as err:
                rejected.append(Rejected(split, number, str(err), line.rstrip("\n"), str(path)))
                continue
            rows.append(RawRow(number, data))
    return rows, rejected


def json_depth(line: str) -> int:
    """Deepest nesting of arrays/objects in a JSON text (strings skipped); linear time, no recursion."""
    depth = deepest = 0
    for ch in _BRACKETS.findall(_JSON_STRING.sub('""', line)):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _parse_object(line: str) -> dict:
    depth = json_depth(line)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested {depth} levels deep (a row is a flat object; limit {MAX_JSON_DEPTH})")
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    return data


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
