"""Prepare a dataset as verl parquet files: DIR/<split>.parquet (+ DIR/rejected.jsonl).

Where the raw rows come from:
- `jsonl_dir` given -> that directory's JSONL files (layout: docs/data.md);
- else, if every split has a hub source and the hub answers within HUB_CHECK_TIMEOUT_S -> the hub;
- else the offline copies in $TINYLORA_JSONL_DIR if it is set;
- else a clear error naming both options. An unreachable hub costs at most a few seconds, never a hang.
Rows that cannot be converted (not UTF-8, not JSON, nested too deep, no question, a ground truth no
reward can score: sources.py, answers.py) are counted, the first few printed with file and line, and all
of them written to DIR/rejected.jsonl with the reason (an empty file when there are none).
A split that ends up with no rows (an empty input, or every row rejected) fails the run (UserError).
The set is written atomically (output.py): a failed run leaves no partial set and the previous one as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidValue, MissingPath, NotADirectory, UserError
from .datasets import DatasetSpec, SplitResult, SplitSource, build_split, get_spec
from .output import check_target, replaced_dir
from .sources import JSONL_DIR_ENV, RawRow, Rejected, default_jsonl_dir, hub_reachable, read_hub, read_jsonl
from .templates import TEMPLATES

SHOW_REJECTED = 3


@dataclass
class Origin:
    kind: str  # "hub" or "jsonl"
    jsonl_dir: Path | None
    note: str  # why this origin was chosen


def choose_origin(spec: DatasetSpec, jsonl_dir: str | Path | None, use_hub: bool = True) -> Origin:
    if jsonl_dir is not None:
        path = Path(jsonl_dir).expanduser()
        if path.exists() and not path.is_dir():
            raise NotADirectory(
                f"--from-jsonl {jsonl_dir}: a file, not a directory (the layout in docs/data.md)"
            )
        if not path.is_dir():
            raise MissingPath(f"--from-jsonl {jsonl_dir}: no such directory")
        return Origin("jsonl", path, f"local JSONL in {path}")
    reason = "not every split has a hub source"
    if use_hub and all(s.hub is not None for s in spec.splits.values()):
        ok, reason = hub_reachable(next(iter(spec.splits.values())).hub[0])
        if ok:
            return Origin("hub", None, f"Hugging Face hub ({reason})")
    elif not use_hub:
        reason = "--no-hub"
    default = default_jsonl_dir()
    if default is None:
        raise MissingPath(
            f"cannot read the data: hub not used ({reason}) and {JSONL_DIR_ENV} is not set; "
            "pass --from-jsonl DIR or set it (the layout is in docs/data.md)"
        )
    return Origin("jsonl", default, f"local JSONL in {default} (hub not used: {reason})")


def load_split(source: SplitSource, split: str, origin: Origin) -> tuple[list[RawRow], list[Rejected]]:
    if origin.kind == "hub":
        repo_id, config, hub_split = source.hub
        return read_hub(repo_id, config, hub_split), []
    return read_jsonl(origin.jsonl_dir / source.jsonl, split)


def _row_count_note(spec: DatasetSpec, split: str, n: int) -> str:
    expected = spec.expected_rows.get(split)
    return "" if expected is None or expected == n else f"  (offline copies give {expected})"


def prepare(
    name: str,
    out: str | Path,
    jsonl_dir: str | Path | None = None,
    template: str | None = None,
    use_hub: bool = True,
    progress: bool = True,
    log=print,
) -> dict[str, SplitResult]:
    """Write DIR/<split>.parquet for every split of dataset `name`; returns the per-split results."""
    import pandas as pd

    spec = get_spec(name)
    template = template or spec.template
    if template not in TEMPLATES:
        raise InvalidValue(f"unknown --template {template!r}; choose one of {', '.join(TEMPLATES)}")
    origin = choose_origin(spec, jsonl_dir, use_hub)
    check_target(out)  # before reading: a file in the way or foreign files in DIR fail at once
    log(f"{name}: reading from {origin.note}; template {template!r}")
    results, all_rejected = {}, []
    with replaced_dir(out) as tmp:
        for split, source in spec.splits.items():
            raw, rejected = load_split(source, split, origin)
            result = build_split(source, split, raw, template, progress=progress)
            result.rejected = sorted(rejected + result.rejected, key=lambda bad: bad.line)
            for bad in result.rejected:  # rows read from a file are reported by file and line
                bad.file = bad.file or (
                    str(origin.jsonl_dir / source.jsonl) if origin.kind == "jsonl" else ""
                )
            results[split] = result
            all_rejected += result.rejected
            filtered = f", {result.filtered} filtered out by design" if result.filtered else ""
            log(
                f"{name} {split}: {len(result.rows)} rows ({len(result.rejected)} rejected{filtered})"
                + _row_count_note(spec, split, len(result.rows))
            )
            for bad in result.rejected[:SHOW_REJECTED]:
                log(f"  rejected {bad.where()}: {bad.reason}")
            _refuse_empty(name, split, source, origin, result)
            pd.DataFrame(result.rows).to_parquet(tmp / f"{split}.parquet", index=False)
        with open(tmp / "rejected.jsonl", "w", encoding="utf-8") as f:
            for bad in all_rejected:
                f.write(json.dumps(bad.as_dict(), ensure_ascii=False) + "\n")
    out = Path(out)
    log(f"{name}: wrote {', '.join(f'{s}.parquet' for s in results)} and rejected.jsonl to {out}")
    if all_rejected:
        log(f"{name}: {len(all_rejected)} malformed rows in total, all listed in {out / 'rejected.jsonl'}")
    return results


def _refuse_empty(name: str, split: str, source, origin: Origin, result: SplitResult) -> None:
    if result.rows:
        return
    where = origin.jsonl_dir / source.jsonl if origin.kind == "jsonl" else f"the hub's {source.hub[0]}"
    if not result.rejected and not result.filtered:
        raise UserError(f"prepare {name}: {where} has no rows (empty input); nothing written")
    first = f"; first: {result.rejected[0].where()}: {result.rejected[0].reason}" if result.rejected else ""
    raise UserError(
        f"prepare {name}: no usable {split} row in {where} ({len(result.rejected)} rejected, "
        f"{result.filtered} filtered out{first}); nothing written"
    )
