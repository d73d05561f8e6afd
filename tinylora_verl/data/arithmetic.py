"""The arithmetic tasks (the CPU demo's and the experiments'): verl parquet files.

Each row is what verl's RLHFDataset and reward loop read: `data_source`, `prompt` (a chat message list),
`ability`, `reward_model: {style: rule, ground_truth}`, `extra_info: {split, index, a, b, op, style}`.
Problems come from a seeded RNG; train and validation problems are disjoint. The prompt style says how
the answer is asked for, and reward_fns/arithmetic.py scores it that way (it reads extra_info.style):

- "hash": "What is 27 + 82? Reply with the final answer after ####, for example: #### 42" -> the number
  after the last "####" (0.1 for the format alone). The experiments' SFT solutions ("#### 109") use it.
- "number": system "You are a calculator. Reply with only the number." + "What is 7 * 8?" -> the last
  number of the response, 1 or 0. The CPU demo uses it with op "mul".

Why the demo moved to "number" + "mul" (measured with vLLM on SmolLM2-135M-Instruct, 64-token
responses): "hash" gave 1-3% exact answers at T=1 (the model rarely uses the format), so GRPO groups
were almost all-equal and the demo's reward stayed flat. With "number", two-digit addition is 1-4% at
T=1 and 11-12% at T=0.7 (48 problems x 4 samples); single-digit multiplication is 17% at T=1, 42% at
T=0.7 (all 64 problems x 16 samples) and 62% greedy: a task the model can do but samples badly, and at
T=0.7 most groups of 4 samples mix right and wrong answers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..errors import InvalidValue, check_dir_path

DATA_SOURCE = "tinylora/arithmetic"
OPS = {"add": ("+", lambda a, b: a + b, (10, 99)), "mul": ("*", lambda a, b: a * b, (2, 9))}
PROMPT = "What is {a} {sym} {b}? Reply with the final answer after ####, for example: #### 42"
SYSTEM = "You are a calculator. Reply with only the number."
QUESTION = "What is {a} {sym} {b}?"
STYLES = ("hash", "number")
VERSION = 2  # of the row format; a cached data set written by another version is rebuilt


def _messages(style: str, a: int, sym: str, b: int) -> list[dict]:
    if style == "hash":
        return [{"role": "user", "content": PROMPT.format(a=a, sym=sym, b=b)}]
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION.format(a=a, sym=sym, b=b)},
    ]


def make_rows(
    op: str,
    n: int,
    seed: int,
    split: str,
    exclude: set | None = None,
    style: str = "hash",
    operands: tuple[int, int] | None = None,
) -> list[dict]:
    """n distinct problems a op b with a, b drawn from `operands` (lo, hi inclusive; default: the op's
    range in OPS), none of them in `exclude`."""
    if op not in OPS:
        raise InvalidValue(f"task op {op!r} is not one of {sorted(OPS)}")
    if style not in STYLES:
        raise InvalidValue(f"task style {style!r} is not one of {STYLES}")
    sym, fn, default_range = OPS[op]
    lo, hi = operands or default_range
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi):
        raise InvalidValue(f"task operands {operands!r} must be two integers 0 <= lo <= hi")
    space = (hi - lo + 1) ** 2 - len(exclude or ())
    if n > space:
        raise InvalidValue(
            f"asked for {n} distinct {op} problems but only {space} exist; lower n_train/n_val"
        )
    rng, seen, rows = random.Random(f"{seed}-{split}"), set(exclude or ()), []
    while len(rows) < n:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        rows.append(
            {
                "data_source": DATA_SOURCE,
                "prompt": _messages(style, a, sym, b),
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": str(fn(a, b))},
                "extra_info": {"split": split, "index": len(rows), "a": a, "b": b, "op": op, "style": style},
            }
        )
    return rows


def ensure_dataset(
    directory, op: str = "add", n_train: int = 256, n_val: int = 32, seed: int = 0, style: str = "hash"
) -> Path:
    """Write DIR/train.parquet and DIR/val.parquet unless DIR already holds exactly this data set; returns DIR."""
    import pandas as pd

    out = check_dir_path(directory, "task.dir")
    train, val, spec_file = out / "train.parquet", out / "val.parquet", out / "task.json"
    spec = {"version": VERSION, "op": op, "n_train": n_train, "n_val": n_val, "seed": seed, "style": style}
    if train.exists() and val.exists() and spec_file.exists() and json.loads(spec_file.read_text()) == spec:
        return out
    out.mkdir(parents=True, exist_ok=True)
    val_rows = make_rows(op, n_val, seed, "val", style=style)
    held_out = {(r["extra_info"]["a"], r["extra_info"]["b"]) for r in val_rows}
    train_rows = make_rows(op, n_train, seed, "train", exclude=held_out, style=style)
    pd.DataFrame(train_rows).to_parquet(train)
    pd.DataFrame(val_rows).to_parquet(val)
    spec_file.write_text(json.dumps(spec))  # last: a crash before it leaves a data set that is rebuilt
    return out
