"""Paper-style tables from result records: best LR per (method, adapter, budget), mean ± std over seeds.

For every group (method, kind, budget) of finished runs:
1. per learning rate, the mean over seeds of the selection metric (default: accuracy on the validation set
   "val"; never a test set unless asked) — the best LR has the highest mean (ties: the smaller LR);
2. at the best LR, every eval set's accuracy: mean and sample standard deviation (ddof 1) over its seeds
   (std is empty for a single seed).
The base model (kind "base") is one row with its own mean over whatever records exist.
Outputs: table.md, table.csv (best LR rows), table_all_lrs.csv (every LR, for inspection).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidValue
from .tasks import VAL

KIND_ORDER = {"base": 0, "tinylora": 1, "lora": 2, "full": 3}
METHOD_LABEL = {"rl": "RL", "sft": "SFT", "base": "base"}


@dataclass
class Row:
    method: str
    kind: str
    budget: int | None
    trainable_params: int | None
    lr: float | None
    n_seeds: int
    select: float  # mean of the selection metric at this LR
    acc: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # set -> (mean, std)
    n_lrs: int = 1  # learning rates compared

    @property
    def label(self) -> str:
        if self.kind == "base":
            return "base model"
        what = {"tinylora": f"TinyLoRA {self.budget}", "lora": "LoRA r=1", "full": "full FT"}[self.kind]
        return f"{METHOD_LABEL[self.method]} {what}"


def load_records(runs_dir) -> tuple[list[dict], int]:
    """(finished records under RUNS_DIR, number of failed ones), found at any depth."""
    finished, failed = [], 0
    for path in sorted(Path(runs_dir).rglob("result.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("status") == "finished":
            finished.append(rec)
        elif rec.get("status") == "failed":
            failed += 1
    return finished, failed


def mean_std(values: list[float]) -> tuple[float, float | None]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _metric(rec: dict, name: str) -> float:
    ev = rec.get("eval") or {}
    if name not in ev:
        raise InvalidValue(
            f"run {rec.get('name')} has no eval set {name!r} to select on (it has {sorted(ev)}); "
            "choose another with --select-on"
        )
    return float(ev[name]["accuracy"])


def _row(recs: list[dict], select_on: str, sets: list[str], n_lrs: int) -> Row:
    p = recs[0]["params"]
    acc = {}
    for s in sets:
        vals = [float(r["eval"][s]["accuracy"]) for r in recs if s in (r.get("eval") or {})]
        if vals:
            acc[s] = mean_std(vals)
    select = sum(_metric(r, select_on) for r in recs) / len(recs)
    return Row(
        p["method"],
        p["kind"],
        p.get("budget"),
        recs[0].get("trainable_params"),
        p.get("lr"),
        len(recs),
        select,
        acc,
        n_lrs,
    )


def eval_sets(records: list[dict]) -> list[str]:
    """Every eval set name, validation first, in order of first appearance."""
    names: list[str] = []
    for rec in records:
        for n in rec.get("eval") or {}:
            if n not in names:
                names.append(n)
    return sorted(names, key=lambda n: n != VAL)


def summarize(records: list[dict], select_on: str = VAL) -> tuple[list[Row], list[Row]]:
    """(best-LR rows, every-LR rows), each sorted by method, kind, budget (and LR)."""
    sets = eval_sets(records)
    groups: dict[tuple, dict[float | None, list[dict]]] = {}
    for rec in records:
        p = rec["params"]
        groups.setdefault((p["method"], p["kind"], p.get("budget")), {}).setdefault(p.get("lr"), []).append(
            rec
        )
    best, every = [], []
    for key in sorted(groups, key=lambda k: (k[0] != "base", k[0], KIND_ORDER.get(k[1], 9), k[2] or 0)):
        by_lr = groups[key]
        rows = [
            _row(recs, select_on, sets, len(by_lr))
            for _, recs in sorted(by_lr.items(), key=lambda x: x[0] or 0)
        ]
        every += rows
        best.append(max(rows, key=lambda r: (r.select, -(r.lr or 0))))  # ties: the smaller LR
    return best, every


def _fmt(ms: tuple[float, float | None] | None) -> str:
    if ms is None:
        return "–"
    m, s = ms
    return f"{100 * m:.1f}" + (f" ± {100 * s:.1f}" if s is not None else "")


def to_markdown(rows: list[Row], sets: list[str], select_on: str, title: str = "Accuracy (%)") -> str:
    head = ["method", "trainable params", "best LR", "seeds", *sets]
    lines = [
        f"# {title}",
        "",
        f"Best learning rate per row chosen on mean `{select_on}` accuracy over seeds; cells are mean ± "
        "sample std over seeds at that learning rate.",
        "",
        "| " + " | ".join(head) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(sets),
    ]
    for r in rows:
        lr = "–" if r.lr is None else f"{r.lr:g}" + (f" (of {r.n_lrs})" if r.n_lrs > 1 else "")
        params = (
            "0"
            if r.kind == "base"
            else (f"{r.trainable_params:,}" if r.trainable_params is not None else "?")
        )
        cells = [r.label, params, lr, str(r.n_seeds), *[_fmt(r.acc.get(s)) for s in sets]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Row], sets: list[str], path: Path) -> Path:
    fields = ["method", "kind", "budget", "trainable_params", "lr", "n_seeds", "select_metric"]
    fields += [f"{s}_{x}" for s in sets for x in ("mean", "std")]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            row = {
                "method": r.method,
                "kind": r.kind,
                "budget": r.budget,
                "trainable_params": r.trainable_params,
                "lr": r.lr,
                "n_seeds": r.n_seeds,
                "select_metric": round(r.select, 6),
            }
            for s in sets:
                m, sd = r.acc.get(s, (None, None))
                row[f"{s}_mean"] = None if m is None else round(m, 6)
                row[f"{s}_std"] = None if sd is None else round(sd, 6)
            w.writerow(row)
    return path


def write_tables(records: list[dict], out, select_on: str = VAL) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    best, every = summarize(records, select_on)
    sets = eval_sets(records)
    (out / "table.md").write_text(to_markdown(best, sets, select_on))
    return {
        "md": out / "table.md",
        "csv": to_csv(best, sets, out / "table.csv"),
        "all_csv": to_csv(every, sets, out / "table_all_lrs.csv"),
    }
