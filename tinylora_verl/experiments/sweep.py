"""The sweep driver: spec -> runs -> (skip finished | run pending | retry failed on request) -> records.

    OUT/sweep.yaml        the validated spec of the last invocation (a later `sweep --out OUT` reuses it)
    OUT/data/             generated task data (arithmetic tasks)
    OUT/runs/<name>/      one directory per run (records.py), name from its parameters (spec.Run.name)

Resuming is re-running the same command: finished runs are skipped, pending ones (never started or
interrupted) run, failed ones run again only with retry_failed. With the spec's `select_seeds`, a row's
other seeds join the plan once its LR grid has finished, at the LR the table would choose
(table.select_lr); run_sweep runs them in the same invocation, after the grids. A run directory whose run.json differs
from what the spec now asks for is an error (the spec changed under a finished run: use a new OUT).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import InvalidValue
from . import records
from .backends import PendingRun
from .spec import expand, grid_groups, n_waiting, run_settings, validate
from .table import select_lr
from .tasks import materialise, task_files

SPEC_FILE = "sweep.yaml"
RUNS_DIR = "runs"
DATA_DIR = "data"


@dataclass
class Planned:
    run_dir: Path
    settings: dict
    status: str  # finished | failed | pending
    action: str  # skip | run | retry | skip-failed


@dataclass
class SweepSummary:
    planned: list[Planned]
    results: dict[str, str] = field(default_factory=dict)  # name -> status after this invocation

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.planned:
            s = self.results.get(p.settings["name"], p.status)
            out[s] = out.get(s, 0) + 1
        return out


def load_spec(out: Path, spec: dict | None) -> dict:
    """The spec to use: the given one, else OUT/sweep.yaml from an earlier invocation."""
    if spec is None:
        path = out / SPEC_FILE
        if not path.exists():
            raise InvalidValue(
                f"no sweep spec: give --spec FILE (or flags) for a new sweep; {path} does not exist"
            )
        spec = yaml.safe_load(path.read_text())
    return validate(spec)


def _diff(a: dict, b: dict) -> list[str]:
    same = lambda k: json.dumps(a.get(k), sort_keys=True) == json.dumps(b.get(k), sort_keys=True)  # noqa: E731
    return sorted(k for k in set(a) | set(b) if not same(k))


def best_lrs(spec: dict, out: Path) -> dict[tuple, float]:
    """{group_key: best LR} of every group whose LR-grid runs have all finished (empty without
    select_seeds: then every seed runs the whole grid)."""
    if spec.get("select_seeds") is None:
        return {}
    found = {}
    for key, runs in grid_groups(spec).items():
        recs = [records.read_result(out / RUNS_DIR / r.name) or {} for r in runs]
        if all(rec.get("status") == "finished" for rec in recs):
            by_lr: dict = {}
            for run, rec in zip(runs, recs):
                by_lr.setdefault(run.lr, []).append(rec)
            found[key] = select_lr(by_lr)
    return found


def plan(spec: dict, out: Path, retry_failed: bool = False, best: dict | None = None) -> list[Planned]:
    """best: best_lrs(spec, out) when the caller already has it (it reads every grid run's record)."""
    files = task_files(spec["task"], out / DATA_DIR).to_dict()
    planned, conflicts = [], []
    for run in expand(spec, (best_lrs(spec, out) if best is None else best).get):
        run_dir = out / RUNS_DIR / run.name
        settings = run_settings(spec, run, files)
        existing = records.read_settings(run_dir)
        if existing is not None and _diff(existing, settings):
            conflicts.append(f"{run.name} ({', '.join(_diff(existing, settings))})")
        state = records.status(run_dir)
        action = {"finished": "skip", "pending": "run"}.get(state) or (
            "retry" if retry_failed else "skip-failed"
        )
        planned.append(Planned(run_dir, settings, state, action))
    if conflicts:
        raise InvalidValue(
            f"{len(conflicts)} run directories under {out / RUNS_DIR} were made with other settings: "
            f"{'; '.join(conflicts[:3])}{' ...' if len(conflicts) > 3 else ''} — use a new --out, "
            "or restore the settings they were run with"
        )
    return planned


def pending_runs(planned: list[Planned]) -> list[PendingRun]:
    return [
        PendingRun(
            p.settings["name"], p.settings["method"], p.run_dir, records.previous_attempts(p.run_dir) + 1
        )
        for p in planned
        if p.action in ("run", "retry")
    ]


def dry_run_lines(planned: list[Planned], backend, out: Path) -> list[str]:
    """One line per run (name, status, action), then for runs to start the backend's command (and the Hydra
    command of RL runs)."""
    from . import rl

    lines = [
        f"sweep {out}: {len(planned)} runs; "
        + ", ".join(f"{k} {v}" for k, v in sorted(_count(p.action for p in planned).items()))
    ]
    for p in planned:
        lines.append(f"  {p.settings['name']:<36} {p.status:<9} -> {p.action}")
    for run in pending_runs(planned):
        lines.append(f"$ {backend.describe(run)}")
        settings = next(p.settings for p in planned if p.run_dir == run.run_dir)
        if settings["method"] == "rl":
            lines.append(
                "    runs: " + shlex.join(["tinylora-verl", "train", *rl.overrides(settings, run.run_dir)])
            )
    return lines


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def run_sweep(
    spec: dict | None, out, backend, retry_failed: bool = False, dry_run: bool = False, log=print
) -> SweepSummary:
    out = Path(out).resolve()
    spec = load_spec(out, spec)
    best = best_lrs(spec, out)
    planned = plan(spec, out, retry_failed, best)
    summary = SweepSummary(planned)
    if dry_run:
        for line in dry_run_lines(planned, backend, out):
            log(line)
        waiting = n_waiting(spec, best.get)
        if waiting:
            log(f"  + {waiting} runs of later seeds, planned once their row's LR grid has finished")
        return summary
    out.mkdir(parents=True, exist_ok=True)
    (out / SPEC_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    materialise(spec["task"], out / DATA_DIR)
    done = [0]

    def on_done(run: PendingRun) -> None:
        done[0] += 1
        record = records.read_result(run.run_dir) or {}
        summary.results[run.name] = record.get("status", "pending")
        accs = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in (record.get("eval") or {}).items())
        log(
            f"[{done[0]}/{len(started)}] {run.name}: {record.get('status')} ({record.get('wall_s', 0):.0f} s)"
            + (f" {accs}" if accs else "")
            + (f" — {record['error'].splitlines()[0]}" if record.get("error") else "")
        )

    started: set[str] = set()
    while True:  # twice at most with select_seeds: the LR grids, then the seeds their results unlock
        todo = [r for r in pending_runs(planned) if r.name not in started]
        if not todo:
            break
        for p in planned:
            if p.action in ("run", "retry") and p.settings["name"] not in started:
                records.write_settings(p.run_dir, p.settings)
        waiting = n_waiting(spec, best.get)
        log(
            f"sweep {out}: {len(todo)} to run, {sum(p.action == 'skip' for p in planned)} finished, "
            f"{sum(p.action == 'skip-failed' for p in planned)} failed (not retried)"
            + (f", {waiting} waiting for their row's LR grid" if waiting else "")
            + f" — backend {backend.name}"
        )
        started |= {r.name for r in todo}
        backend.run_all(todo, on_done)
        best = best_lrs(spec, out)
        planned = plan(spec, out, retry_failed, best)
        summary.planned = planned
    log("sweep: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.counts().items())))
    return summary
