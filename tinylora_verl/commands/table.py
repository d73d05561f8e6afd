"""tinylora-verl table RUNS_DIR [--out DIR] [--select-on val]

Reads every result.json under RUNS_DIR (a sweep directory, or any tree of `sft`/sweep runs) and writes
DIR/table.md, DIR/table.csv (best LR per method/variant/adapter/budget on the validation metric, mean ±
std over seeds per eval set, bootstrap intervals over seeds and problems when the records have per-problem
scores, the update's size), DIR/table_all_lrs.csv, DIR/recovered.md (share of the RL full fine-tune's gain,
when there is one) and one figure per eval set, DIR/accuracy_vs_params_<set>.png (accuracy vs trainable
parameters, log x, base-model, LoRA and full-fine-tune lines) and, when the records have update sizes,
DIR/accuracy_vs_update_<set>.png. DIR defaults to RUNS_DIR.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidValue, MissingPath, check_dir_path


def add_arguments(p) -> None:
    p.add_argument(
        "runs_dir", metavar="RUNS_DIR", help="directory searched (recursively) for result.json files"
    )
    p.add_argument("--out", default=None, help="where the tables and figures go (default: RUNS_DIR)")
    p.add_argument(
        "--select-on", default="val", help="eval set whose mean accuracy picks the best LR (default val)"
    )
    p.add_argument("--no-figures", action="store_true", help="tables only")


def run(args) -> int:
    from ..experiments.figures import write_figures
    from ..experiments.table import add_intervals, eval_sets, load_records, summarize, write_tables

    runs = Path(args.runs_dir)
    if not runs.is_dir():
        raise MissingPath(f"{runs}: no such directory")
    records, failed = load_records(runs)
    if not records:
        raise InvalidValue(
            f"no finished result.json under {runs} ({failed} failed); run `tinylora-verl sweep` first"
        )
    out = check_dir_path(args.out, "--out") if args.out else runs
    paths = write_tables(records, out, args.select_on)
    figures = []
    if not args.no_figures:
        best, sets = summarize(records, args.select_on)[0], eval_sets(records)
        add_intervals(best, sets)  # the same draws as the tables': the same intervals
        figures = write_figures(best, sets, out)
    print(paths["md"].read_text())
    print(
        f"{len(records)} finished runs ({failed} failed, left out); wrote {paths['md']}, {paths['csv']}, "
        f"{paths['all_csv']}" + "".join(f", {f}" for f in figures)
    )
    return 0
