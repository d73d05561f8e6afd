"""The demo task: two-digit addition (or single-digit multiplication) as verl parquet files.

Each row is what verl's RLHFDataset and reward loop read: `data_source`, `prompt` (a chat message list),
`ability`, `reward_model: {style: rule, ground_truth}`, `extra_info: {split, index, a, b, op}`. The
prompt asks for the final answer after "####" (reward_fns/arithmetic.py scores exactly that).
Problems come from a seeded RNG; train and validation problems are disjoint.
"""

from __future__ import annotations

import random
from pathlib import Path

DATA_SOURCE = "tinylora/arithmetic"
OPS = {"add": ("+", lambda a, b: a + b, (10, 99)), "mul": ("*", lambda a, b: a * b, (2, 9))}
PROMPT = "What is {a} {sym} {b}? Reply with the final answer after ####, for example: #### 42"


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
            "prompt": [{"role": "user", "content": PROMPT.format(a=a, sym=sym, b=b)}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(fn(a, b))},
            "extra_info": {"split": split, "index": len(rows), "a": a, "b": b, "op": op},
        })
    return rows


def ensure_dataset(directory, op: str = "add", n_train: int = 256, n_val: int = 32, seed: int = 0) -> Path:
    """Write DIR/train.parquet and DIR/val.parquet unless both exist; returns DIR."""
    import pandas as pd

    out = Path(directory).expanduser()
    train, val = out / "train.parquet", out / "val.parquet"
    if train.exists() and val.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    val_rows = make_rows(op, n_val, seed, "val")
    held_out = {(r["extra_info"]["a"], r["extra_info"]["b"]) for r in val_rows}
    train_rows = make_rows(op, n_train, seed, "train", exclude=held_out)
    pd.DataFrame(train_rows).to_parquet(train)
    pd.DataFrame(val_rows).to_parquet(val)
    return out
