"""2-D loss surface of a 2-parameter TinyLoRA: the SFT loss over a (v1, v2) grid, resumable row by row.

Budget 2 is one shared vector v = (v1, v2) for every adapted module (tie_mode "all", u = 2), so the whole
adapted model is a function of two numbers. The grid has `n` points per axis symmetric around 0 with
exact 0.0 in the middle for odd n (the base model). Row i holds v1 = grid1[i] for every v2 = grid2[j]:
surface[i][j] = masked SFT loss (objective.py) of the first `n_examples` examples at v = (grid1[i], grid2[j]).

State: OUT/surface.json (settings, grids, finished rows) rewritten atomically after every row, so an
interrupted scan continues from the first missing row; a state written with other settings is refused.
OUT/surface.png is the heatmap (drawn when the scan completes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..adapter import TinyLoRAConfig, apply_tinylora
from ..errors import InvalidValue
from .objective import Example, mean_loss

STATE = "surface.json"
FIGURE = "surface.png"
SURFACE_CONFIG = {"budget": None, "projection_dim": 2, "tie_mode": "all"}  # exactly 2 trainable numbers


def axis(n: int, extent: float) -> list[float]:
    """n points from -extent to +extent; the middle one is exactly 0.0 when n is odd."""
    if n < 2:
        raise InvalidValue(f"grid size {n}: need at least 2 points per axis")
    half = (n - 1) / 2
    return [float(extent * (i - half) / half) for i in range(n)]


def surface_adapter(model, seed: int = 0, frozen_rank: int = 2):
    handle = apply_tinylora(model, TinyLoRAConfig(seed=seed, frozen_rank=frozen_rank, **SURFACE_CONFIG))
    if handle.num_trainable != 2:
        raise RuntimeError(f"surface adapter has {handle.num_trainable} parameters, expected 2")
    return handle


def loss_at(
    handle, examples: list[Example], pad_id: int, micro_batch_size: int
) -> Callable[[float, float], float]:
    def f(v1: float, v2: float) -> float:
        handle.set_vectors([torch.tensor([v1, v2], dtype=torch.float32)])
        return mean_loss(handle.model, examples, pad_id, micro_batch_size)

    return f


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)


def load_state(out: Path, settings: dict) -> list[list[float]]:
    """Finished rows from OUT/surface.json ([] if none); refuse a state written with other settings."""
    path = out / STATE
    if not path.exists():
        return []
    state = json.loads(path.read_text())
    if state.get("settings") != settings:
        diff = sorted(
            k
            for k in set(settings) | set(state.get("settings", {}))
            if settings.get(k) != state.get("settings", {}).get(k)
        )
        raise InvalidValue(
            f"{path} was written with other settings (differs in {', '.join(diff)}); "
            "use a new --out or the same settings to continue it"
        )
    return state["rows"]


def scan(
    loss: Callable[[float, float], float],
    grid1: list[float],
    grid2: list[float],
    out: Path,
    settings: dict,
    log=print,
) -> np.ndarray:
    """Fill the [len(grid1), len(grid2)] loss grid row by row, saving after each row; resumes from OUT."""
    out.mkdir(parents=True, exist_ok=True)
    settings = {**settings, "grid1": grid1, "grid2": grid2}
    rows = load_state(out, settings)
    if rows and log:
        log(f"resuming: {len(rows)}/{len(grid1)} rows already in {out / STATE}")
    for i in range(len(rows), len(grid1)):
        rows.append([loss(grid1[i], v2) for v2 in grid2])
        _write_atomic(out / STATE, {"settings": settings, "rows": rows})
        if log:
            log(
                f"row {i + 1}/{len(grid1)} (v1={grid1[i]:+.4g}): loss {min(rows[-1]):.4f} .. {max(rows[-1]):.4f}"
            )
    return np.array(rows, dtype=np.float64)


def plot_surface(
    grid: np.ndarray, grid1: list[float], grid2: list[float], path: Path, title: str = ""
) -> Path:
    """Heatmap of grid[i, j] (v1 = grid1[i] on the y axis, v2 = grid2[j] on x), with the base (0, 0) and
    the grid minimum marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    mesh = ax.pcolormesh(grid2, grid1, grid, shading="nearest", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="SFT loss (token mean)")
    if grid.shape[0] > 2 and grid.shape[1] > 2:
        ax.contour(grid2, grid1, grid, levels=10, colors="white", linewidths=0.5, alpha=0.6)
    i, j = np.unravel_index(np.argmin(grid), grid.shape)
    ax.plot([0.0], [0.0], "o", color="white", markeredgecolor="black", label="base model (0, 0)")
    ax.plot([grid2[j]], [grid1[i]], "*", color="red", markersize=12, label=f"min {grid[i, j]:.3f}")
    ax.set_xlabel("v2")
    ax.set_ylabel("v1")
    ax.set_title(title or "loss surface of a 2-parameter TinyLoRA")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
