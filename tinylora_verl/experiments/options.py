"""Command-line pieces shared by `sweep`, `sft` and `surface`: the task flags, comma lists, --set KEY=VALUE."""

from __future__ import annotations

import yaml

from ..data.arithmetic import STYLES
from ..errors import InvalidValue
from .tasks import ARITH_DEFAULTS


def add_task_arguments(p) -> None:
    g = p.add_argument_group("task (one of: a generated arithmetic task, or verl parquet files)")
    g.add_argument(
        "--arithmetic",
        choices=("add", "mul"),
        default=None,
        help="generate the arithmetic task: two-digit addition or single-digit multiplication",
    )
    g.add_argument(
        "--n-train", type=int, default=ARITH_DEFAULTS["n_train"], help="arithmetic training problems"
    )
    g.add_argument(
        "--n-val", type=int, default=ARITH_DEFAULTS["n_val"], help="arithmetic validation problems"
    )
    g.add_argument("--n-test", type=int, default=ARITH_DEFAULTS["n_test"], help="arithmetic test problems")
    g.add_argument(
        "--task-seed", type=int, default=ARITH_DEFAULTS["seed"], help="seed of the arithmetic problems"
    )
    g.add_argument(
        "--task-style",
        choices=STYLES,
        default=ARITH_DEFAULTS["style"],
        help="how the answer is asked for and scored: 'hash' (#### 42) or 'number' (the CPU demo's "
        "calculator prompt, scored by the last number)",
    )
    g.add_argument(
        "--operands",
        default=None,
        metavar="LO,HI",
        help="inclusive range of both arithmetic operands (default: the op's, add 10,99 and mul 2,9)",
    )
    g.add_argument(
        "--train", default=None, help="training parquet (verl rows; SFT needs extra_info.solution)"
    )
    g.add_argument("--val", default=None, help="validation parquet (model selection)")
    g.add_argument(
        "--test", action="append", default=[], metavar="NAME=FILE", help="test parquet (repeatable)"
    )


def _operands(text: str) -> list[int]:
    try:
        lo, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise InvalidValue(f"--operands {text!r} must be LO,HI, two integers (e.g. 2,12)") from None
    return [lo, hi]


def task_from_args(args, required: bool = True) -> dict | None:
    """The task dict the flags describe; None when none was given and not required."""
    if args.arithmetic and (args.train or args.val or args.test):
        raise InvalidValue("give either --arithmetic OP or --train/--val/--test files, not both")
    if args.arithmetic:
        task = {
            "kind": "arithmetic",
            "op": args.arithmetic,
            "n_train": args.n_train,
            "n_val": args.n_val,
            "n_test": args.n_test,
            "seed": args.task_seed,
            "style": args.task_style,
        }
        if args.operands is not None:
            task["operands"] = _operands(args.operands)
        return task
    if args.train or args.val or args.test:
        if not (args.train and args.val):
            raise InvalidValue(
                "file tasks need both --train FILE and --val FILE (the validation set picks the LR)"
            )
        tests = {}
        for item in args.test:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise InvalidValue(
                    f"--test {item!r}: write NAME=FILE, e.g. --test gsm8k=data/gsm8k/test.parquet"
                )
            tests[name] = path
        return {"kind": "files", "train": args.train, "val": args.val, "tests": tests}
    if required:
        raise InvalidValue(
            "no task: give --arithmetic add|mul, or --train FILE --val FILE [--test NAME=FILE]"
        )
    return None


def comma_list(text: str | None, kind, flag: str) -> list | None:
    if text is None:
        return None
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InvalidValue(f"{flag} {text!r}: expected comma-separated {kind.__name__} values") from None
    if not values:
        raise InvalidValue(f"{flag} is empty")
    return values


def apply_sets(spec: dict, items: list[str]) -> dict:
    """--set a.b=VALUE (VALUE parsed as YAML: 0.5, [1, 2], true, text) into the nested spec dict."""
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidValue(f"--set {item!r}: write KEY=VALUE, e.g. --set sft.steps=50")
        node = spec
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidValue(f"--set {item!r}: {part} is not a mapping")
        node[parts[-1]] = yaml.safe_load(raw)
    return spec
