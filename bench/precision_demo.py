"""The CPU demo in float32 and in bf16, one after the other with the same seeds and steps, side by side.

    python bench/precision_demo.py --out DIR [--steps N] [--order fp32,bf16] [HYDRA OVERRIDES ...]

Runs `python -m tinylora_verl.demo --out DIR/<precision> precision=<precision>` for each precision
(config/precision/), each run's console going to DIR/<precision>.log, then prints one table: per phase
the median seconds over the steady steps (step 1 excluded: it includes warm-up), the held-out accuracy
before and after, and the means over all steps of the trainer↔rollout log-prob gap, the truncated-IS
weight statistics, the fraction of ΔW entries below half a bf16 ulp and the probe's share of the
adapter's effect the rollout keeps; the last column is bf16 / fp32. The figures also go to
DIR/precision_demo.json. Both runs use the same machine one after the other: on a shared machine, read
the seconds with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tinylora_verl.verl_seam.trainer_files import METRICS_FILE, VAL_FILE, read_rows  # noqa: E402

PHASES = (
    ("generation s", "t_gen"),
    ("old log-prob s", "t_old_logprob"),
    ("reference s", "t_ref"),
    ("update s", "t_update"),
    ("sync s", "t_sync"),
    ("probe s", "probe_s"),
    ("step s", "t_step"),
)
MEANS = (
    ("reward", "reward"),
    ("KL rollout-trainer (k3, tokens)", "logp_k3_kl"),
    ("|log ppl trainer - rollout|", "log_ppl_abs_diff"),
    ("|p trainer - p rollout| max", "prob_diff_max"),
    ("IS weight mean (truncated)", "is_mean"),
    ("IS weight max (truncated)", "is_max"),
    ("IS fraction above the cap", "is_trunc"),
    ("rounded_away_frac", "rounded_away"),
    ("rollout_kl", "rollout_kl"),
    ("effect_kept", "effect_kept"),
)
ACCURACY_KEY = "/acc/mean@"


def summarize(run_dir: Path) -> dict:
    """Phase medians over steady steps, means over all steps, held-out accuracy by step."""
    rows = read_rows(run_dir / METRICS_FILE)
    if not rows:
        raise SystemExit(f"precision_demo: {run_dir} has no {METRICS_FILE}: the run failed (see its log)")
    steady = rows[1:] or rows
    out = {"steps": len(rows)}
    for _, key in PHASES:
        values = [r[key] for r in steady if isinstance(r.get(key), float)]
        out[key] = statistics.median(values) if values else None
    for _, key in MEANS:
        values = [r[key] for r in rows if isinstance(r.get(key), float) and r[key] == r[key]]
        out[key] = statistics.fmean(values) if values else None
    for row in read_rows(run_dir / VAL_FILE):
        for k, v in row.items():
            if ACCURACY_KEY in k:
                out[f"held-out acc, step {row['step']}"] = v
    return out


def table(results: dict[str, dict]) -> str:
    """Rows of figures, a column per precision, and bf16 / fp32 when both ran."""
    names = list(results)
    both = {"fp32", "bf16"} <= set(names)
    keys = list(PHASES + MEANS)
    keys += sorted({(k, k) for r in results.values() for k in r if k.startswith("held-out")})
    head = f"{'':32}" + "".join(f"{n:>14}" for n in names) + (f"{'bf16/fp32':>12}" if both else "")
    lines = [head, "-" * len(head)]
    for label, key in keys:
        vals = [results[n].get(key) for n in names]
        cells = "".join(f"{v:>14.4g}" if isinstance(v, float) else f"{'-':>14}" for v in vals)
        ratio = ""
        if both:
            a, b = results["bf16"].get(key), results["fp32"].get(key)
            ratio = f"{a / b:>12.3f}" if isinstance(a, float) and isinstance(b, float) and b else ""
        lines.append(f"{label:32}{cells}{ratio}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="a new directory for both runs")
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps (default: the demo's)")
    parser.add_argument("--order", default="fp32,bf16", help="precisions, in the order they run")
    args, overrides = parser.parse_known_args(argv)
    out = Path(args.out)
    results = {}
    for precision in args.order.split(","):
        run_dir = out / precision
        cmd = [sys.executable, "-m", "tinylora_verl.demo", "--out", str(run_dir), f"precision={precision}"]
        cmd += [f"--steps={args.steps}"] if args.steps else []
        cmd += overrides
        out.mkdir(parents=True, exist_ok=True)
        log = out / f"{precision}.log"
        print(f"precision_demo: {' '.join(cmd)}  (log: {log})", flush=True)
        with open(log, "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        load = os.getloadavg()
        print(
            f"precision_demo: {precision} exit {rc}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
        )
        results[precision] = {**summarize(run_dir), "exit_code": rc, "load_avg_1_5_15": list(load)}
    print(table(results))
    (out / "precision_demo.json").write_text(json.dumps(results, indent=1))
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
