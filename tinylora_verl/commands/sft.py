"""tinylora-verl sft --model PATH (--arithmetic add | --train F --val F [--test NAME=F]) --out DIR [--budget B --lr X]

Supervised fine-tuning baseline with the same adapters and budgets as RL (tinylora_verl/experiments/sft.py):
masked next-token loss on the reference solutions, AdamW, then held-out evaluation (experiments/evaluate.py).
Writes DIR/adapter (TinyLoRA; DIR/lora_adapter or DIR/model for the baselines), DIR/sft_metrics.jsonl,
DIR/eval/summary.{csv,md} and DIR/result.json — the record `tinylora-verl table` reads, the same as a
sweep's runs. Other SFT/eval settings: --set sft.KEY=VALUE / --set eval.KEY=VALUE.
"""

from __future__ import annotations

from ..errors import InvalidValue, check_dir_path
from ..experiments.options import add_task_arguments, apply_sets, task_from_args
from ..experiments.spec import Run, run_settings, spec_fields, validate


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="HF model directory, hub id, or 'smollm2'")
    p.add_argument("--out", required=True, help="run directory (must not hold a finished run)")
    add_task_arguments(p)
    p.add_argument(
        "--kind",
        default="tinylora",
        choices=("tinylora", "lora", "full"),
        help="what trains: TinyLoRA v's, a rank-1 LoRA, or every weight",
    )
    p.add_argument("--budget", type=int, default=13, help="TinyLoRA trainable parameters")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    p.add_argument("--seed", type=int, default=0, help="data order and TinyLoRA's random projections")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: one epoch)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per step (default 16)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"sft.KEY ({', '.join(spec_fields()['sft'])}) or eval.KEY ({', '.join(spec_fields()['eval'])})",
    )


def run(args) -> int:
    from ..experiments import records
    from ..experiments.run_one import execute
    from ..experiments.sweep import DATA_DIR
    from ..experiments.tasks import materialise

    out = check_dir_path(args.out, "--out").resolve()
    if records.status(out) == "finished":
        raise InvalidValue(f"{out} already holds a finished run ({records.RESULT_FILE}); give a new --out")
    sft = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size)) if v is not None}
    spec = apply_sets(
        {
            "model": args.model,
            "task": task_from_args(args),
            "methods": ["sft"],
            "budgets": [args.budget],
            "lrs": [args.lr],
            "seeds": [args.seed],
            "sft": sft,
        },
        args.set,
    )
    spec = validate(spec)
    files = materialise(spec["task"], out / DATA_DIR)
    settings = run_settings(
        spec,
        Run("sft", args.kind, args.budget if args.kind == "tinylora" else None, float(args.lr), args.seed),
        files.to_dict(),
    )
    records.write_settings(out, settings)
    record = execute(out, log=lambda msg: print(msg, flush=True))
    if record["status"] != "finished":
        print(f"sft failed: {record['error']}")
        return 1
    for name, summary in record["eval"].items():
        print(f"{name}: accuracy {100 * summary['accuracy']:.1f}% ({summary['n_prompts']} prompts)")
    train = record["train"]
    print(
        f"trained {record['trainable_params']} parameters for {train['steps']} steps: loss {train['first_loss']:.4f} "
        f"-> {train['final_loss']:.4f}; val loss {train.get('val_loss_before', float('nan')):.4f} -> "
        f"{train.get('val_loss', float('nan')):.4f}; wrote {out / records.RESULT_FILE}"
    )
    return 0
