"""A training run's curve as a PNG: the training reward at every step and the held-out accuracy at every
validation (for the demo: before the first step and after the last), from the files the trainer writes
(`tinylora_metrics.jsonl`, `tinylora_val.jsonl`). Agg backend: no display needed.

    python -m tinylora_verl.curve RUN_DIR [OUT.png]      # default OUT: RUN_DIR/curve.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from .console import headline_metric
from .verl_seam.trainer_files import METRICS_FILE, VAL_FILE, read_rows

CURVE_FILE = "curve.png"


def plot_curve(steps: list[dict], validations: list[dict], path, title: str | None = None):
    """Draw the curve to PATH; returns the matplotlib Figure (closed, for inspection). `steps` are metrics
    rows (step, reward), `validations` validation rows (step, val-core/.../mean@N)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    rewarded = [r for r in steps if r.get("reward") is not None]
    if rewarded:
        ax.plot(
            [r["step"] for r in rewarded],
            [r["reward"] for r in rewarded],
            marker="o",
            color="tab:blue",
            label="training reward (mean over the step's samples)",
        )
    name = next((headline_metric(r) for r in validations if headline_metric(r)), None)
    held = [r for r in validations if name in r] if name else []
    if held:
        var, stat = name.split("/")[-2:]
        xs, ys = [r["step"] for r in held], [r[name] for r in held]
        ax.plot(xs, ys, marker="s", linestyle="--", color="tab:orange", label=f"held-out {var} ({stat})")
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center")
    ax.set_xlabel("GRPO step (held-out: step 0 = before training)")
    ax.set_ylabel("fraction correct")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(title or "TinyLoRA GRPO: reward and held-out accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def write_curve(run_dir, path=None, title: str | None = None) -> Path | None:
    """RUN_DIR's curve to PATH (default RUN_DIR/curve.png); None when the run has no step and no validation."""
    run_dir = Path(run_dir)
    steps, validations = read_rows(run_dir / METRICS_FILE), read_rows(run_dir / VAL_FILE)
    if not steps and not validations:
        return None
    path = Path(path) if path else run_dir / CURVE_FILE
    plot_curve(steps, validations, path, title)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) > 2 or argv[0].startswith("-"):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    out = write_curve(argv[0], argv[1] if len(argv) > 1 else None)
    if out is None:
        print(f"{argv[0]}: no {METRICS_FILE} or {VAL_FILE} rows", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
