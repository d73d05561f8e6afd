"""Paper-style tables from result records: best LR per (method, variant, adapter, budget), over seeds.

For every group (method, label, kind, budget) of finished runs:
1. per learning rate, the mean of the selection metric (default: accuracy on the validation set "val"; never
   a test set unless asked) over the seeds that every LR of the group has — the best LR has the highest mean
   (ties: the smaller LR). A sweep with `select_seeds` runs its other seeds at the best LR only; selecting on
   the shared seeds keeps their results out of the choice (select_lr, also used by the sweep);
2. at the best LR, every eval set's accuracy: mean and sample standard deviation (ddof 1) over its seeds
   (std is empty for a single seed), and, when the records carry per-problem scores, a 95 % interval
   from a bootstrap over seeds and problems (intervals.py; one problem draw shared by all rows);
3. the size of the update (update_size.py): mean over those seeds of ||Delta W|| / ||W||.
The base model (kind "base") is one row with its own mean over whatever records exist.
When an RL full fine-tune row and the base row exist, recovered.md gives each other RL row's share of the
full fine-tune's gain over the base, (acc - base) / (full - base), with its paired bootstrap interval.
Outputs: table.md, table.csv (best LR rows), table_all_lrs.csv (every LR, for inspection), recovered.md.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidValue
from . import intervals
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
    select: float  # mean of the selection metric at this LR (over the seeds every LR of the group has)
    acc: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # set -> (mean, std)
    n_lrs: int = 1  # learning rates compared
    variant: str | None = None  # the sweep's label (e.g. "matched")
    per_prompt: dict[str, np.ndarray] = field(default_factory=dict)  # set -> [seeds, problems]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # set -> 95 % bootstrap interval
    update: float | None = None  # mean ||Delta W|| / ||W|| over seeds

    @property
    def method_label(self) -> str:
        name = METHOD_LABEL.get(self.method, self.method)
        return f"{name} ({self.variant})" if self.variant else name

    @property
    def label(self) -> str:
        if self.kind == "base":
            return "base model"
        what = {"tinylora": f"TinyLoRA {self.budget}", "lora": "LoRA r=1", "full": "full FT"}[self.kind]
        return f"{self.method_label} {what}"


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


def _per_prompt(recs: list[dict], s: str) -> np.ndarray | None:
    """[seeds, problems] per-problem accuracies of set s, when every run has them for the same problems."""
    evs = [(r.get("eval") or {}).get(s) or {} for r in recs]
    if not all("per_prompt" in e for e in evs):
        return None
    if any(e.get("prompt_ids") != evs[0].get("prompt_ids") for e in evs):
        return None  # other problems (another data set): no common draw
    return np.array([e["per_prompt"] for e in evs], dtype=np.float64)


def selection_scores(by_lr: dict, select_on: str = VAL) -> dict:
    """{lr: mean of the selection metric over the seeds every LR in by_lr has}; with no seed in common,
    each LR's mean over its own seeds."""
    seeds = [{r["params"].get("seed") for r in recs} for recs in by_lr.values()]
    shared = set.intersection(*seeds) if seeds else set()
    scores = {}
    for lr, recs in by_lr.items():
        picked = [r for r in recs if r["params"].get("seed") in shared] or recs
        scores[lr] = sum(_metric(r, select_on) for r in picked) / len(picked)
    return scores


def select_lr(by_lr: dict, select_on: str = VAL):
    """The best learning rate of one group {lr: [records]}: highest selection_scores, ties the smaller LR."""
    scores = selection_scores(by_lr, select_on)
    return max(scores, key=lambda lr: (scores[lr], -(lr or 0)))


def _row(recs: list[dict], select: float, sets: list[str], n_lrs: int) -> Row:
    p = recs[0]["params"]
    acc, per_prompt = {}, {}
    for s in sets:
        vals = [float(r["eval"][s]["accuracy"]) for r in recs if s in (r.get("eval") or {})]
        if vals:
            acc[s] = mean_std(vals)
            scores = _per_prompt(recs, s)
            if scores is not None and len(scores) == len(vals):
                per_prompt[s] = scores
    updates = [r["update"]["relative"] for r in recs if r.get("update")]
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
        variant=p.get("label"),
        per_prompt=per_prompt,
        update=sum(updates) / len(updates) if len(updates) == len(recs) else None,
    )


def add_intervals(rows: list[Row], sets: list[str], n_boot: int = intervals.N_BOOT) -> dict[str, dict]:
    """Fill each row's 95 % intervals; returns {set: {row label: replicate means}} for paired comparisons.
    One problem draw per set, shared by every row (paired); each row's seeds drawn on their own."""
    reps: dict[str, dict] = {}
    for s in sets:
        sizes = {r.per_prompt[s].shape[1] for r in rows if s in r.per_prompt}
        if len(sizes) != 1:
            continue  # no per-problem scores, or rows scored on different problems
        draws = intervals.problem_draws(sizes.pop(), n_boot)
        reps[s] = {}
        for i, r in enumerate(rows):
            if s in r.per_prompt:
                reps[s][r.label] = intervals.replicates(r.per_prompt[s], draws, seed=1 + i)
                r.ci[s] = intervals.interval(reps[s][r.label])
    return reps


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
        key = (p["method"], p.get("label") or "", p["kind"], p.get("budget"))
        groups.setdefault(key, {}).setdefault(p.get("lr"), []).append(rec)
    best, every = [], []
    for key in sorted(groups, key=lambda k: (k[0] != "base", k[0], k[1], KIND_ORDER.get(k[2], 9), k[3] or 0)):
        by_lr = groups[key]
        scores = selection_scores(by_lr, select_on)
        rows = [
            _row(recs, scores[lr], sets, len(by_lr))
            for lr, recs in sorted(by_lr.items(), key=lambda x: x[0] or 0)
        ]
        every += rows
        best.append(next(r for r in rows if r.lr == select_lr(by_lr, select_on)))
    return best, every


def _fmt(ms: tuple[float, float | None] | None, ci: tuple[float, float] | None = None) -> str:
    if ms is None:
        return "–"
    m, s = ms
    text = f"{100 * m:.1f}" + (f" ± {100 * s:.1f}" if s is not None else "")
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def to_markdown(rows: list[Row], sets: list[str], select_on: str, title: str = "Accuracy (%)") -> str:
    updates = any(r.update is not None for r in rows)
    head = ["method", "trainable params", "best LR", "seeds", *sets] + (["‖ΔW‖ / ‖W‖"] if updates else [])
    lines = [
        f"# {title}",
        "",
        f"Best learning rate per row chosen on mean `{select_on}` accuracy over the seeds every learning rate "
        "of the row has; cells are mean ± "
        "sample std over seeds at that learning rate"
        + (", [95 % bootstrap interval over seeds and problems]" if any(r.ci for r in rows) else "")
        + ("; ‖ΔW‖ / ‖W‖: the update's relative size, mean over seeds" if updates else "")
        + ".",
        "",
        "| " + " | ".join(head) + " |",
        "|---|---:|---:|---:|" + "---:|" * (len(sets) + updates),
    ]
    for r in rows:
        lr = "–" if r.lr is None else f"{r.lr:g}" + (f" (of {r.n_lrs})" if r.n_lrs > 1 else "")
        params = (
            "0"
            if r.kind == "base"
            else (f"{r.trainable_params:,}" if r.trainable_params is not None else "?")
        )
        cells = [r.label, params, lr, str(r.n_seeds), *[_fmt(r.acc.get(s), r.ci.get(s)) for s in sets]]
        if updates:
            cells.append("–" if r.update is None else f"{r.update:.2e}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Row], sets: list[str], path: Path) -> Path:
    fields = ["method", "label", "kind", "budget", "trainable_params", "lr", "n_seeds", "select_metric"]
    fields += [f"{s}_{x}" for s in sets for x in ("mean", "std", "ci_low", "ci_high")]
    fields += ["update_relative"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            row = {
                "method": r.method,
                "label": r.variant or "",
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
                lo, hi = r.ci.get(s, (None, None))
                row[f"{s}_ci_low"] = None if lo is None else round(lo, 6)
                row[f"{s}_ci_high"] = None if hi is None else round(hi, 6)
            row["update_relative"] = r.update
            w.writerow(row)
    return path


def write_tables(records: list[dict], out, select_on: str = VAL) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    best, every = summarize(records, select_on)
    sets = eval_sets(records)
    reps = add_intervals(best, sets)
    (out / "table.md").write_text(to_markdown(best, sets, select_on))
    paths = {
        "md": out / "table.md",
        "csv": to_csv(best, sets, out / "table.csv"),
        "all_csv": to_csv(every, sets, out / "table_all_lrs.csv"),
    }
    recovered = recovered_markdown(best, [s for s in sets if s != VAL] or sets, reps)
    if recovered:
        (out / "recovered.md").write_text(recovered)
        paths["recovered"] = out / "recovered.md"
    return paths


def recovered_markdown(rows: list[Row], sets: list[str], reps: dict[str, dict]) -> str | None:
    """Each RL row's share of the RL full fine-tune's gain over the base model, per set (None without an
    RL full fine-tune row and a base row)."""
    base = next((r for r in rows if r.kind == "base"), None)
    full = next((r for r in rows if r.method == "rl" and r.kind == "full" and not r.variant), None)
    if base is None or full is None:
        return None
    lines = [
        "# Share of the RL full fine-tune's gain recovered",
        "",
        "(accuracy − base) / (RL full FT − base) at each row's best LR; [95 % paired bootstrap interval over "
        "seeds and problems; replicates where the full fine-tune's gain is not positive are left out, and "
        "their share is given].",
        "",
        "| method | trainable params | " + " | ".join(sets) + " |",
        "|---|---:|" + "---:|" * len(sets),
    ]
    for r in rows:
        if r.method != "rl" or r is full:
            continue
        cells = []
        for s in sets:
            if s not in r.acc or s not in base.acc or s not in full.acc:
                cells.append("–")
                continue
            gain = full.acc[s][0] - base.acc[s][0]
            if gain <= 0:
                cells.append("undefined (the full fine-tune did not beat the base)")
                continue
            cell = f"{100 * (r.acc[s][0] - base.acc[s][0]) / gain:.0f} %"
            got = reps.get(s, {})
            if all(k in got for k in (r.label, base.label, full.label)):
                share = intervals.share_recovered(got[r.label], got[base.label], got[full.label])
                lo, hi = share["interval"]
                cell += f" [{100 * lo:.0f}, {100 * hi:.0f}]"
                if share["undefined"] > 0:
                    cell += f" ({100 * share['undefined']:.0f} % undefined)"
            cells.append(cell)
        params = f"{r.trainable_params:,}" if r.trainable_params is not None else "?"
        lines.append(f"| {r.label} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
