"""tinylora-verl surface --model PATH (--arithmetic add | --train F --val F) --out DIR [--grid 21 --extent 0.5]

The SFT loss of a 2-parameter TinyLoRA (one shared v = (v1, v2), tie_mode all, u = 2) over a grid of
(v1, v2) (tinylora_verl/experiments/surface.py): DIR/surface.json (saved after every row; running the same
command again continues an interrupted scan) and DIR/surface.png (heatmap). The loss is the masked
next-token loss on the reference solutions of the first --n-examples training rows.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidValue, check_dir_path
from ..experiments.options import add_task_arguments, task_from_args


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="HF model directory, hub id, or 'smollm2'")
    p.add_argument("--out", required=True, help="output directory (a previous scan there is continued)")
    add_task_arguments(p)
    p.add_argument("--grid", type=int, default=21, help="points per axis (odd: the middle one is v = 0)")
    p.add_argument("--extent", type=float, default=0.5, help="each axis spans [-extent, +extent]")
    p.add_argument("--n-examples", type=int, default=32, help="training rows the loss is averaged over")
    p.add_argument("--seed", type=int, default=0, help="seed of the random projections P")
    p.add_argument("--frozen-rank", type=int, default=2, help="r of the frozen SVD")
    p.add_argument("--micro-batch-size", type=int, default=16, help="examples per forward pass")
    p.add_argument("--max-length", type=int, default=1024, help="longer examples are left out")


def run(args) -> int:
    import torch
    from transformers import AutoTokenizer

    from ..experiments import surface
    from ..experiments.objective import build_examples, pad_id_of
    from ..experiments.rl import resolve_model
    from ..experiments.sweep import DATA_DIR
    from ..experiments.tasks import check_task, materialise, read_rows
    from ..hf import load_causal_lm

    if args.grid < 2 or args.extent <= 0 or args.n_examples < 1:
        raise InvalidValue(
            f"--grid {args.grid} --extent {args.extent} --n-examples {args.n_examples}: "
            "need grid >= 2, extent > 0, n-examples >= 1"
        )
    task = task_from_args(args)
    errors = check_task(task)
    if errors:
        raise InvalidValue("; ".join(errors))
    out = check_dir_path(args.out, "--out").resolve()
    files = materialise(task, out / DATA_DIR)
    grid = surface.axis(args.grid, args.extent)
    settings = {
        "model": args.model,
        "task": task,
        "n_examples": args.n_examples,
        "seed": args.seed,
        "frozen_rank": args.frozen_rank,
        "max_length": args.max_length,
    }
    surface.load_state(out, {**settings, "grid1": grid, "grid2": grid})  # refuse a mismatch before loading
    model_path = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(model_path)
    examples, dropped = build_examples(tok, read_rows(files.train, args.n_examples), args.max_length)
    if not examples:
        raise InvalidValue(
            f"none of the first {args.n_examples} training rows fits --max-length {args.max_length}"
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    handle = surface.surface_adapter(
        load_causal_lm(model_path, device=device), seed=args.seed, frozen_rank=args.frozen_rank
    )
    print(
        f"surface: {len(examples)} examples ({dropped} too long), {args.grid}x{args.grid} grid over "
        f"[-{args.extent}, {args.extent}]^2, {len(handle.layers)} modules share v = (v1, v2)",
        flush=True,
    )
    loss = surface.loss_at(handle, examples, pad_id_of(tok), args.micro_batch_size)
    with torch.no_grad():  # a scan of the loss, no training; scoped: the command also runs in-process
        values = surface.scan(loss, grid, grid, out, settings, log=lambda m: print(m, flush=True))
    png = surface.plot_surface(
        values,
        grid,
        grid,
        out / surface.FIGURE,
        title=f"SFT loss, 2-parameter TinyLoRA ({Path(model_path).name})",
    )
    mid = args.grid // 2
    i, j = divmod(int(values.argmin()), values.shape[1])
    base = f"loss at v=(0, 0) (base model) {values[mid, mid]:.4f}; " if args.grid % 2 else ""
    print(f"{base}minimum {values[i, j]:.4f} at v=({grid[i]:+.4g}, {grid[j]:+.4g}); wrote {png}")
    return 0
