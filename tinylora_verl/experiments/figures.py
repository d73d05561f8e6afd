"""The paper's figure: accuracy vs trainable parameters (log x) per eval set, from table.py's best-LR rows.

Per method and variant (RL, SFT, SFT (matched), ...): TinyLoRA budgets as a line at their exact trainable
counts; the rank-1 LoRA baseline as a marker at its count and a dash-dotted horizontal line (the paper's
reference line); the full fine-tune as a dotted horizontal line, all in the series' colour. Error bars are
the rows' 95 % bootstrap intervals over seeds and problems when the table has them (table.add_intervals),
else ± the std over seeds. The base model is a horizontal dashed grey line. Agg backend, PNG.
"""

from __future__ import annotations

from pathlib import Path

from .table import Row

COLORS = {("rl", None): "tab:blue", ("sft", None): "tab:orange"}
OTHER_COLORS = ("tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def _series(rows: list[Row]) -> list[tuple[str, str | None]]:
    """(method, variant) pairs in table order."""
    out: list[tuple[str, str | None]] = []
    for r in rows:
        if r.kind != "base" and (r.method, r.variant) not in out:
            out.append((r.method, r.variant))
    return out


def _colored_series(rows: list[Row]):
    """(method, variant, colour) per series: RL blue, SFT orange, other variants from OTHER_COLORS."""
    others = iter(OTHER_COLORS)
    for method, variant in _series(rows):
        yield method, variant, COLORS.get((method, variant)) or next(others, "black")


def _new_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 4.4))


def _finish(fig, ax, rows: list[Row], eval_set: str, path, labels: tuple[str, str, int]):
    """The base model's dashed line, log x, labels = (x label, title, legend font size); saved, closed."""
    xlabel, title, legend_size = labels
    import matplotlib.pyplot as plt

    for r in rows:
        if r.kind == "base" and eval_set in r.acc:
            ax.axhline(100 * r.acc[eval_set][0], color="grey", linestyle="--", label="base model", gid="base")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{eval_set} accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=legend_size, loc="best")
    fig.tight_layout()
    fig.savefig(Path(path), dpi=150)
    plt.close(fig)
    return fig


def _yerr(rows: list[Row], eval_set: str) -> list[list[float]]:
    """[below, above] per row in percent: the bootstrap interval, else the std (0 for one seed)."""
    below, above = [], []
    for r in rows:
        m, sd = r.acc[eval_set]
        lo, hi = r.ci.get(eval_set, (m - (sd or 0.0), m + (sd or 0.0)))
        below.append(100 * max(0.0, m - lo))
        above.append(100 * max(0.0, hi - m))
    return [below, above]


def plot_accuracy_vs_params(rows: list[Row], eval_set: str, path, title: str | None = None):
    """Draw one eval set's figure to PATH; returns the matplotlib Figure (closed, for inspection)."""
    fig, ax = _new_axes()
    for method, variant, color in _colored_series(rows):
        mine = [r for r in rows if (r.method, r.variant) == (method, variant) and eval_set in r.acc]
        name = mine[0].method_label if mine else method.upper()
        gid = method + (f"-{variant}" if variant else "")
        tiny = sorted((r for r in mine if r.kind == "tinylora"), key=lambda r: r.trainable_params or 0)
        if tiny:
            ax.errorbar(
                [r.trainable_params for r in tiny],
                [100 * r.acc[eval_set][0] for r in tiny],
                yerr=_yerr(tiny, eval_set),
                color=color,
                marker="o",
                capsize=3,
                label=f"{name} TinyLoRA",
                gid=f"{gid}-tinylora",
            )
        for r in mine:
            y = 100 * r.acc[eval_set][0]
            if r.kind == "lora":
                ax.errorbar(
                    [r.trainable_params],
                    [y],
                    yerr=_yerr([r], eval_set),
                    color=color,
                    marker="s",
                    linestyle="none",
                    capsize=3,
                    label=f"{name} LoRA r=1",
                    gid=f"{gid}-lora",
                )
                ax.axhline(y, color=color, linestyle="-.", linewidth=0.8, gid=f"{gid}-lora-line")
            if r.kind == "full":
                ax.axhline(y, color=color, linestyle=":", label=f"{name} full FT", gid=f"{gid}-full")
    labels = ("trainable parameters", title or f"{eval_set}: accuracy vs trainable parameters", 8)
    return _finish(fig, ax, rows, eval_set, path, labels)


def plot_accuracy_vs_update(rows: list[Row], eval_set: str, path):
    """Accuracy against the update's relative size ||Delta W|| / ||W|| (log x), one point per row that has
    both, coloured by series, marked by adapter (o TinyLoRA, s LoRA, D full), the base model's accuracy
    as a dashed line: the paper's claim is that RL gets its accuracy with smaller updates than SFT."""
    fig, ax = _new_axes()
    for method, variant, color in _colored_series(rows):
        mine = [
            r for r in rows if (r.method, r.variant) == (method, variant) and eval_set in r.acc and r.update
        ]
        for kind, marker in (("tinylora", "o"), ("lora", "s"), ("full", "D")):
            pts = [r for r in mine if r.kind == kind]
            if pts:
                ax.errorbar(
                    [r.update for r in pts],
                    [100 * r.acc[eval_set][0] for r in pts],
                    yerr=_yerr(pts, eval_set),
                    color=color,
                    marker=marker,
                    linestyle="none",
                    capsize=3,
                    label=f"{pts[0].method_label} {'TinyLoRA' if kind == 'tinylora' else kind}",
                    gid=f"{method}{'-' + variant if variant else ''}-{kind}",
                )
    labels = ("update size ||ΔW|| / ||W||", f"{eval_set}: accuracy vs the size of the update", 7)
    return _finish(fig, ax, rows, eval_set, path, labels)


def write_figures(rows: list[Row], sets: list[str], out) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in sets:
        if any(s in r.acc and r.kind in ("tinylora", "lora") for r in rows):
            path = out / f"accuracy_vs_params_{s}.png"
            plot_accuracy_vs_params(rows, s, path)
            paths.append(path)
        if any(s in r.acc and r.update for r in rows):
            path = out / f"accuracy_vs_update_{s}.png"
            plot_accuracy_vs_update(rows, s, path)
            paths.append(path)
    return paths
