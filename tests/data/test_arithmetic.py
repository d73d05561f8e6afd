"""The demo task's parquet files: verl's row format, disjoint splits, correct answers, rewards."""

import pandas as pd
import pytest

from reward_fns.arithmetic import compute_score, extract_answer
from tinylora_verl.data.arithmetic import ensure_dataset, make_rows


def test_rows_and_files(tmp_path):
    out = ensure_dataset(tmp_path / "d", op="add", n_train=40, n_val=10, seed=3)
    train, val = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "val.parquet")
    assert len(train) == 40 and len(val) == 10
    pairs = lambda df: {(e["a"], e["b"]) for e in df["extra_info"]}  # noqa: E731
    assert not pairs(train) & pairs(val)
    for _, row in train.iterrows():
        a, b = row["extra_info"]["a"], row["extra_info"]["b"]
        assert 10 <= a <= 99 and 10 <= b <= 99
        assert row["reward_model"]["ground_truth"] == str(a + b)
        assert f"{a} + {b}" in row["prompt"][0]["content"] and row["prompt"][0]["role"] == "user"
    again = make_rows("add", 40, 3, "train", exclude=pairs(val))
    assert [r["extra_info"]["a"] for r in again] == list(train["extra_info"].map(lambda e: e["a"]))


def test_bad_input():
    with pytest.raises(ValueError, match="not one of"):
        make_rows("div", 3, 0, "train")
    with pytest.raises(ValueError, match="distinct"):
        make_rows("mul", 1000, 0, "train")


@pytest.mark.parametrize("text,truth,score", [
    ("12 + 30 = 42\n#### 42", "42", 1.0),
    ("#### 41", "42", 0.1),                         # format followed, wrong number: format credit
    ("the answer is 42", "42", 0.0),                # no '####': strict format
    ("#### 40 then corrected #### 42", "42", 1.0),  # the last one counts
    ("#### 42 then #### 40", "42", 0.1),
    ("#### 1,042", "1042", 1.0),
    ("####", "42", 0.0),
])
def test_reward(text, truth, score):
    assert compute_score("tinylora/arithmetic", text, truth) == score


def test_extract():
    assert extract_answer("x #### -7") == "-7"
    assert extract_answer(None) is None
