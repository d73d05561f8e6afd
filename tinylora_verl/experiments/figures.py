"""The paper's figure: accuracy vs trainable parameters (log x) per eval set, from table.py's best-LR rows.

Per method (RL, SFT): TinyLoRA budgets as a line with mean ± std error bars at their exact trainable
counts; the rank-1 LoRA baseline as a single marker at its count; the full fine-tune as a horizontal
dotted line in the method's colour. The base model is a horizontal dashed grey line. Agg backend, PNG.
"""

from __future__ import annotations

from pathlib import Path

from .table import Row

COLORS = {"rl": "tab:blue", "sft": "tab:orange"}


def plot_accuracy_vs_params(rows: list[Row], eval_set: str, path, title: str | None = None):
    """Draw one eval set's figure to PATH; returns the matplotlib Figure (closed, for inspection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in ("rl", "sft"):
        color = COLORS[method]
        tiny = sorted(
            (r for r in rows if r.method == method and r.kind == "tinylora" and eval_set in r.acc),
            key=lambda r: r.trainable_params or 0,
        )
        if tiny:
            xs = [r.trainable_params for r in tiny]
            ys = [100 * r.acc[eval_set][0] for r in tiny]
            errs = [100 * (r.acc[eval_set][1] or 0.0) for r in tiny]
            ax.errorbar(
                xs,
                ys,
                yerr=errs,
                color=color,
                marker="o",
                capsize=3,
                label=f"{method.upper()} TinyLoRA",
                gid=f"{method}-tinylora",
            )
        for r in rows:
            if r.method == method and r.kind == "lora" and eval_set in r.acc:
                ax.errorbar(
                    [r.trainable_params],
                    [100 * r.acc[eval_set][0]],
                    yerr=[100 * (r.acc[eval_set][1] or 0)],
                    color=color,
                    marker="s",
                    linestyle="none",
                    capsize=3,
                    label=f"{method.upper()} LoRA r=1",
                    gid=f"{method}-lora",
                )
            if r.method == method and r.kind == "full" and eval_set in r.acc:
                ax.axhline(
                    100 * r.acc[eval_set][0],
                    color=color,
                    linestyle=":",
                    label=f"{method.upper()} full FT",
                    gid=f"{method}-full",
                )
    for r in rows:
        if r.kind == "base" and eval_set in r.acc:
            ax.axhline(100 * r.acc[eval_set][0], color="grey", linestyle="--", label="base model", gid="base")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(f"{eval_set} accuracy (%)")
    ax.set_title(title or f"{eval_set}: accuracy vs trainable parameters")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(Path(path), dpi=150)
    plt.close(fig)
    return fig


def write_figures(rows: list[Row], sets: list[str], out) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in sets:
        if any(s in r.acc and r.kind in ("tinylora", "lora") for r in rows):
            path = out / f"accuracy_vs_params_{s}.png"
            plot_accuracy_vs_params(rows, s, path)
            paths.append(path)
    return paths
