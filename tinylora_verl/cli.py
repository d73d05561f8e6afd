"""`tinylora-verl` command line: one subcommand per module in tinylora_verl/commands/.

User mistakes (bad paths, infeasible budgets, mismatching adapters) print one line naming the problem
and the fix, and exit 2 — no traceback. Only the project's user-error types count as user mistakes
(`tinylora_verl.errors.UserError` and its subclasses, plus the adapter's own error types until they
derive from it: `user_error_types()`); any other exception is a bug and shows its traceback.
Set TINYLORA_DEBUG=1 to see the traceback of a user error too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import UserError

__all__ = ["UserError", "build_parser", "main", "user_error_types"]

# name -> module under tinylora_verl.commands exposing add_arguments(parser) and run(args) -> int
COMMANDS = {
    "plan": "Show how a parameter budget is split into tied groups for a model.",
    "export": "Export a trained adapter as a PEFT LoRA adapter or a merged HF model directory.",
    "prepare": "Convert a math dataset (hub or local JSONL) into verl parquet files.",
    "train": "Run GRPO training with TinyLoRA on verl (Hydra overrides follow; default: the CPU demo).",
    "eval": "Generate with vLLM on math benchmarks and score with the training rewards.",
    "sft": "Supervised fine-tuning baseline with the same adapters and budgets, then held-out evaluation.",
    "sweep": "Budget x LR x seed sweep of RL and SFT runs (+ baselines), resumable, local or as Ray jobs.",
    "table": "Best-LR tables (Markdown, CSV) and accuracy-vs-parameters figures from a sweep's records.",
    "surface": "2-D SFT loss surface of a 2-parameter TinyLoRA over (v1, v2), resumable, heatmap PNG.",
}


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types printed as one line with exit 2: the project's UserError (the adapter's
    TinyLoRAUserError derives from it). Anything else is a bug and keeps its traceback."""
    return (UserError,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinylora-verl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"tinylora_verl.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _passthrough(argv: list[str]) -> argparse.Namespace | None:
    """Commands whose module sets PASSTHROUGH = True get every later argument verbatim (Hydra flags such
    as `--cfg job` included, which argparse would reject)."""
    if argv and argv[0] in COMMANDS and argv[0] != "-h":
        module = importlib.import_module(f"tinylora_verl.commands.{argv[0]}")
        if getattr(module, "PASSTHROUGH", False):
            return argparse.Namespace(command=argv[0], overrides=list(argv[1:]), _run=module.run)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _passthrough(argv) or build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except user_error_types() as err:
        if os.environ.get("TINYLORA_DEBUG"):
            raise
        print(f"tinylora-verl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
