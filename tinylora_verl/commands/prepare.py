"""tinylora-verl prepare DATASET --out DIR [--from-jsonl DIR] [--template NAME] [--no-hub]

Writes verl parquet files (DIR/train.parquet, DIR/test.parquet as the dataset has them) and
DIR/rejected.jsonl (every rejected row with file, line and reason), all at once: a run that fails (exit 2
on an empty input or a split with no usable row) leaves DIR as it was. See tinylora_verl/data/prepare.py for where rows come from and
tinylora_verl/data/datasets.py for the row layout and the answer of each dataset.
"""

from __future__ import annotations

from ..data.datasets import DATASETS
from ..data.templates import TEMPLATES


def add_arguments(p) -> None:
    p.add_argument(
        "dataset", choices=sorted(DATASETS), metavar="DATASET", help=f"one of: {', '.join(DATASETS)}"
    )
    p.add_argument("--out", required=True, help="output directory for <split>.parquet and rejected.jsonl")
    p.add_argument(
        "--from-jsonl",
        default=None,
        metavar="DIR",
        help="read local JSONL files laid out as docs/data.md describes (default: the hub if "
        "reachable, else $TINYLORA_JSONL_DIR)",
    )
    p.add_argument(
        "--template",
        default=None,
        choices=sorted(TEMPLATES),
        help="prompt template (default: gsm8k for gsm8k, qwen-boxed for the MATH-style sets)",
    )
    p.add_argument("--no-hub", action="store_true", help="never contact the Hugging Face hub")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..data.prepare import prepare

    prepare(
        args.dataset,
        args.out,
        jsonl_dir=args.from_jsonl,
        template=args.template,
        use_hub=not args.no_hub,
        progress=not args.no_progress,
    )
    return 0
