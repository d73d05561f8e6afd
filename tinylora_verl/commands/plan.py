"""tinylora-verl plan --model PATH --budget N [--tie-mode M] [--frozen-rank R] [--json]

Reads only the model's config (weights are never loaded) and prints the group table.
"""

from __future__ import annotations

import argparse
import json

from ..adapter.config import DEFAULT_TARGETS
from ..adapter.model import find_target_modules
from ..adapter.planner import TIE_MODES, plan_tying
from ..errors import InvalidValue
from ..hf import load_on_meta


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the error into a usage line and exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer (1 or more)")
    return value


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="HF model directory, .gguf file, or hub id")
    p.add_argument("--budget", type=positive_int, help="total trainable parameters to aim for (e.g. 13)")
    p.add_argument("--projection-dim", type=positive_int, help="u, instead of (or with) a budget")
    p.add_argument("--tie-factor", type=positive_int, help="modules per shared vector (tiled/structured)")
    p.add_argument("--tie-mode", default="tiled", choices=TIE_MODES)
    p.add_argument(
        "--frozen-rank",
        type=positive_int,
        default=2,
        help="r (planning does not depend on it; checked against the smallest adapted weight)",
    )
    p.add_argument("--target-modules", default=",".join(DEFAULT_TARGETS), help="comma-separated Linear names")
    p.add_argument("--json", action="store_true", help="print the full plan (every module's group) as JSON")


def run(args) -> int:
    model = load_on_meta(args.model)
    targets = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
    found = find_target_modules(model, targets)
    modules = [n for n, _ in found]
    if found:
        name, smallest = min(found, key=lambda item: min(item[1].weight.shape))
        if args.frozen_rank > min(smallest.weight.shape):
            raise InvalidValue(
                f"--frozen-rank {args.frozen_rank} exceeds the rank of {name} "
                f"({tuple(smallest.weight.shape)}); give --frozen-rank {min(smallest.weight.shape)} or less"
            )
    plan = plan_tying(modules, args.tie_mode, args.budget, args.projection_dim, args.tie_factor)
    if args.json:
        print(json.dumps({"model": args.model, "frozen_rank": args.frozen_rank, **plan.to_dict()}, indent=1))
    else:
        print(plan.table())
    return 0
