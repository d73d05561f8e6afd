"""tinylora-verl export --model PATH --adapter DIR --format {peft-lora,merged} --out DIR"""

from __future__ import annotations

from pathlib import Path

from ..adapter.checkpoint import load_adapter, read_metadata
from ..errors import check_dir_path
from ..hf import load_causal_lm


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="the base model the adapter was trained on")
    p.add_argument("--adapter", required=True, help="adapter directory written by save_adapter")
    p.add_argument("--format", required=True, choices=("peft-lora", "merged"))
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="dtype to load the base model in (and of the merged weights)",
    )


def run(args) -> int:
    check_dir_path(args.out, "--out")
    read_metadata(args.adapter)  # refuse a bad adapter before loading a large model
    model = load_causal_lm(args.model, dtype=args.dtype)
    handle = load_adapter(model, args.adapter)
    if args.format == "peft-lora":
        handle.export_peft_lora(args.out)
    else:
        from ..adapter.export import export_merged

        tok_dir = args.model if Path(args.model).is_dir() else None
        export_merged(handle, args.out, tokenizer_dir=tok_dir)
    print(f"wrote {args.format} export of {handle.num_trainable} trained parameters to {args.out}")
    return 0
