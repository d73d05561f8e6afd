"""The demo task: single-digit multiplication (or two-digit addition) as verl parquet files.

Each row is what verl's RLHFDataset and reward loop read: `data_source`, `prompt` (a chat message list:
a one-line system prompt, then the question), `ability`, `reward_model: {style: rule, ground_truth}`,
`extra_info: {split, index, a, b, op}`. reward_fns/arithmetic.py scores the last number of the response.
Problems come from a seeded RNG; train and validation problems are disjoint.

Why this prompt and "mul" (measured with vLLM on SmolLM2-135M-Instruct, 64-token responses): asking
for the answer after "####" gave 1-3% exact answers at T=1 (the model rarely uses the format), so GRPO
groups were almost all-equal and the reward stayed flat. With "Reply with only the number" and the last
number as the answer, two-digit addition is 1-4% at T=1 and 11-12% at T=0.7 (48 problems x 4 samples);
single-digit multiplication is 17% at T=1, 42% at T=0.7 (all 64 problems x 16 samples) and 62% greedy:
a task the model can do but samples badly, and at T=0.7 most groups of 4 samples mix right and wrong.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DATA_SOURCE = "tinylora/arithmetic"
OPS = {"add": ("+", lambda a, b: a + b, (10, 99)), "mul": ("*", lambda a, b: a * b, (2, 9))}
SYSTEM = "You are a calculator. Reply with only the number."
QUESTION = "What is {a} {sym} {b}?"
VERSION = 2  # of the prompt format; a cached data set written by another version is rebuilt


def make_rows(op: str, n: int, seed: int, split: str, exclude: set | None = None) -> list[dict]:
    if op not in OPS:
        raise ValueError(f"task op {op!r} is not one of {sorted(OPS)}")
    sym, fn, (lo, hi) = OPS[op]
    space = (hi - lo + 1) ** 2 - len(exclude or ())
    if n > space:
        raise ValueError(f"asked for {n} distinct {op} problems but only {space} exist; lower n_train/n_val")
    rng, seen, rows = random.Random(f"{seed}-{split}"), set(exclude or ()), []
    while len(rows) < n:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        rows.append({
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "system", "content": SYSTEM},
                       {"role": "user", "content": QUESTION.format(a=a, sym=sym, b=b)}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(fn(a, b))},
            "extra_info": {"split": split, "index": len(rows), "a": a, "b": b, "op": op},
        })
    return rows


def ensure_dataset(directory, op: str = "mul", n_train: int = 48, n_val: int = 16, seed: int = 0) -> Path:
    """Write DIR/train.parquet and DIR/val.parquet unless DIR already holds exactly this data set; returns DIR."""
    import pandas as pd

    out = Path(directory).expanduser()
    train, val, spec_file = out / "train.parquet", out / "val.parquet", out / "task.json"
    spec = {"version": VERSION, "op": op, "n_train": n_train, "n_val": n_val, "seed": seed}
    if train.exists() and val.exists() and spec_file.exists() and json.loads(spec_file.read_text()) == spec:
        return out
    out.mkdir(parents=True, exist_ok=True)
    val_rows = make_rows(op, n_val, seed, "val")
    held_out = {(r["extra_info"]["a"], r["extra_info"]["b"]) for r in val_rows}
    train_rows = make_rows(op, n_train, seed, "train", exclude=held_out)
    pd.DataFrame(train_rows).to_parquet(train)
    pd.DataFrame(val_rows).to_parquet(val)
    spec_file.write_text(json.dumps(spec))  # last: a crash before it leaves a data set that is rebuilt
    return out
