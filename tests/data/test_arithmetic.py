"""The arithmetic tasks' parquet files: verl's row format, both prompt styles, disjoint splits, correct
answers, caching."""

import json

import pandas as pd
import pytest

from tinylora_verl.data.arithmetic import PROMPT, SYSTEM, ensure_dataset, make_rows


def _pairs(df):
    return {(e["a"], e["b"]) for e in df["extra_info"]}


@pytest.mark.parametrize(
    "op,lo,hi,sym,fn", [("mul", 2, 9, "*", lambda a, b: a * b), ("add", 10, 99, "+", lambda a, b: a + b)]
)
@pytest.mark.parametrize("style", ["number", "hash"])
def test_rows_and_files(tmp_path, op, lo, hi, sym, fn, style):
    out = ensure_dataset(tmp_path / "d", op=op, n_train=40, n_val=10, seed=3, style=style)
    train, val = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "val.parquet")
    assert len(train) == 40 and len(val) == 10
    assert not _pairs(train) & _pairs(val)
    for _, row in train.iterrows():
        a, b = row["extra_info"]["a"], row["extra_info"]["b"]
        assert lo <= a <= hi and lo <= b <= hi and row["extra_info"]["op"] == op
        assert row["extra_info"]["style"] == style
        assert row["reward_model"]["ground_truth"] == str(fn(a, b))
        if style == "number":
            system, user = row["prompt"]
            assert system["role"] == "system" and system["content"] == SYSTEM
            assert user["role"] == "user" and user["content"] == f"What is {a} {sym} {b}?"
        else:
            (user,) = row["prompt"]
            assert user["role"] == "user" and user["content"] == PROMPT.format(a=a, sym=sym, b=b)
            assert f"{a} {sym} {b}" in user["content"] and "####" in user["content"]
    again = make_rows(op, 40, 3, "train", exclude=_pairs(val), style=style)
    assert [r["extra_info"]["a"] for r in again] == list(train["extra_info"].map(lambda e: e["a"]))


def test_styles_share_the_problems():
    hash_rows, number_rows = (
        make_rows("mul", 20, 0, "train"),
        make_rows("mul", 20, 0, "train", style="number"),
    )
    assert [r["extra_info"]["style"] for r in hash_rows] == ["hash"] * 20  # the default
    strip = lambda rows: [
        (r["extra_info"]["a"], r["extra_info"]["b"], r["reward_model"]["ground_truth"])  # noqa: E731
        for r in rows
    ]
    assert strip(hash_rows) == strip(number_rows)


def test_all_multiplication_problems_fit_and_no_more():
    rows = make_rows("mul", 64, 0, "train")
    assert len(_pairs(pd.DataFrame(rows))) == 64  # 2..9 x 2..9, each once
    with pytest.raises(ValueError, match="distinct"):
        make_rows("mul", 65, 0, "train")


def test_cached_data_set_is_reused_only_when_it_is_the_same(tmp_path):
    d = tmp_path / "d"
    ensure_dataset(d, op="mul", n_train=8, n_val=4, seed=0, style="number")
    stamp = (d / "train.parquet").stat().st_mtime_ns
    ensure_dataset(d, op="mul", n_train=8, n_val=4, seed=0, style="number")
    assert (d / "train.parquet").stat().st_mtime_ns == stamp  # same request: not rewritten
    ensure_dataset(d, op="mul", n_train=12, n_val=4, seed=0, style="number")
    assert len(pd.read_parquet(d / "train.parquet")) == 12  # other size: rebuilt
    ensure_dataset(d, op="mul", n_train=12, n_val=4, seed=0, style="hash")
    assert pd.read_parquet(d / "train.parquet")["extra_info"][0]["style"] == "hash"  # other style: rebuilt
    (d / "task.json").write_text(json.dumps({**json.loads((d / "task.json").read_text()), "version": 1}))
    ensure_dataset(d, op="mul", n_train=12, n_val=4, seed=0, style="hash")
    assert json.loads((d / "task.json").read_text())["version"] != 1  # an older row format: rebuilt


def test_bad_input():
    with pytest.raises(ValueError, match="not one of"):
        make_rows("div", 3, 0, "train")
    with pytest.raises(ValueError, match="style"):
        make_rows("mul", 3, 0, "train", style="boxed")
    with pytest.raises(ValueError, match="distinct"):
        make_rows("mul", 1000, 0, "train")
