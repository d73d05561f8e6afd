"""`tinylora-verl prepare` on the offline copies: row counts, answers, templates, rejected rows, hub fallback."""

from __future__ import annotations

import json
import socket
import time

import pandas as pd
import pytest

from tests.helpers import FIXTURE_JSONL
from tinylora_verl.cli import main
from tinylora_verl.data.prepare import prepare
from tinylora_verl.data.sources import JSONL_DIR_ENV, hub_reachable
from tinylora_verl.data.templates import BOXED_INSTRUCTION, GSM8K_INSTRUCTION

# dataset -> {split: (rows written, rows rejected, rows filtered out by design)}; from docs/data.md:
# MATH 12k split = 12,000 rows, 2 of which have an empty \boxed{} (train/number_theory/7115 and 7117),
# levels 3-5 = 8,888 rows (the same 2 are level 5)
EXPECTED = {
    "gsm8k": {"train": (7473, 0, 0), "test": (1319, 0, 0)},
    "math": {"train": (11998, 2, 0), "test": (500, 0, 0)},
    "simplerl_math35": {"train": (8886, 2, 3112), "test": (500, 0, 0)},
    "math500": {"test": (500, 0, 0)},
    "minerva_math": {"test": (272, 0, 0)},
    "olympiadbench": {"test": (675, 0, 0)},
    "aime24": {"test": (30, 0, 0)},
    "amc23": {"test": (40, 0, 0)},
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, real_data_dir):
    root = tmp_path_factory.mktemp("prepared")
    results = {
        name: prepare(name, root / name, jsonl_dir=real_data_dir, progress=False, log=lambda *_: None)
        for name in EXPECTED
    }
    return root, results


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_row_counts(prepared, name):
    root, results = prepared
    for split, (written, rejected, filtered) in EXPECTED[name].items():
        r = results[name][split]
        assert (len(r.rows), len(r.rejected), r.filtered) == (written, rejected, filtered), split
        frame = pd.read_parquet(root / name / f"{split}.parquet")
        assert len(frame) == written
        assert list(frame.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
        assert frame["extra_info"].map(lambda e: e["index"]).tolist() == list(range(written))
    lines = (root / name / "rejected.jsonl").read_text().splitlines()
    assert len(lines) == sum(v[1] for v in EXPECTED[name].values())


def test_gsm8k_rows_follow_verls_example(prepared, real_data_dir):
    root, _ = prepared
    frame = pd.read_parquet(root / "gsm8k" / "train.parquet")
    raw = [json.loads(line) for line in open(real_data_dir / "gsm8k" / "train.jsonl")]
    row, first = frame.iloc[0], raw[0]
    assert row["data_source"] == "gsm8k" and row["ability"] == "math"
    assert list(row["prompt"]) == [{"role": "user", "content": first["question"] + " " + GSM8K_INSTRUCTION}]
    assert GSM8K_INSTRUCTION == 'Let\'s think step by step and output the final answer after "####".'
    assert row["reward_model"] == {"style": "rule", "ground_truth": "72"}
    assert row["extra_info"]["question"] == first["question"] and row["extra_info"]["split"] == "train"
    truths = frame["reward_model"].map(lambda r: r["ground_truth"]).tolist()
    assert truths == [r["answer"].split("####")[-1].strip().replace(",", "") for r in raw]
    # the reference solution (what `sft` trains on) is the raw answer text, reasoning and "#### N" included
    assert frame["extra_info"].map(lambda e: e["solution"]).tolist() == [r["answer"].strip() for r in raw]


def test_math_style_rows_use_qwen_boxed(prepared, real_data_dir):
    root, _ = prepared
    frame = pd.read_parquet(root / "math500" / "test.parquet")
    raw = [json.loads(line) for line in open(real_data_dir / "math500" / "test.jsonl")]
    assert list(frame.iloc[3]["prompt"]) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": raw[3]["problem"] + "\n" + BOXED_INSTRUCTION},
    ]
    assert BOXED_INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."
    assert frame["reward_model"].map(lambda r: r["ground_truth"]).tolist() == [r["answer"] for r in raw]
    assert frame["extra_info"].map(lambda e: e["source_id"]).tolist() == [r["unique_id"] for r in raw]
    assert frame["extra_info"].map(lambda e: e["solution"]).tolist() == [r["solution"].strip() for r in raw]
    aime = pd.read_parquet(root / "aime24" / "test.parquet")  # no solution field in the source: ""
    assert set(aime["extra_info"].map(lambda e: e["solution"])) == {""}


@pytest.mark.parametrize(
    "name,index,answer",
    [
        ("math", 0, None),  # checked against the last box of the source solution below
        ("amc23", 0, "27"),  # 27.0 -> "27"
        ("aime24", 0, "204"),
        ("olympiadbench", 0, "2"),
    ],
)
def test_answers(prepared, real_data_dir, name, index, answer):
    root, _ = prepared
    split = "train" if name == "math" else "test"
    truth = pd.read_parquet(root / name / f"{split}.parquet").iloc[index]["reward_model"]["ground_truth"]
    if answer is None:
        from reward_fns._latex import last_boxed

        first = json.loads(open(real_data_dir / "math" / "train_12k_prm800k_split.jsonl").readline())
        answer = last_boxed(first["solution"])
    assert truth == answer


def test_olympiad_multi_answers_are_joined(prepared):
    root, _ = prepared
    truths = pd.read_parquet(root / "olympiadbench" / "test.parquet")["reward_model"].map(
        lambda r: r["ground_truth"]
    )
    assert "69,84" in truths.tolist() and not any("$" in t for t in truths)


def test_simplerl_keeps_only_levels_3_to_5(prepared, real_data_dir):
    root, _ = prepared
    ids = set(
        pd.read_parquet(root / "simplerl_math35" / "train.parquet")["extra_info"].map(
            lambda e: e["source_id"]
        )
    )
    levels = {}
    for line in open(real_data_dir / "math" / "train_12k_prm800k_split.jsonl"):
        row = json.loads(line)
        levels[row["unique_id"]] = row["level"]
    assert {levels[i] for i in ids} == {"Level 3", "Level 4", "Level 5"}


def test_malformed_rows_are_reported_not_dropped(tmp_path, capsys):
    src = tmp_path / "src" / "gsm8k"
    src.mkdir(parents=True)
    good = {"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}
    (src / "train.jsonl").write_text(
        "\n".join(
            [
                json.dumps(good),
                "{not json",
                json.dumps({"question": "No marker", "answer": "it is 5"}),
                json.dumps([1, 2]),
                json.dumps({"answer": "#### 3"}),
                json.dumps(good),
            ]
        )
        + "\n"
    )
    (src / "test.jsonl").write_text(json.dumps(good) + "\n")
    assert (
        main(
            [
                "prepare",
                "gsm8k",
                "--out",
                str(tmp_path / "out"),
                "--from-jsonl",
                str(tmp_path / "src"),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "gsm8k train: 2 rows" in printed and "(4 rejected)" in printed
    train = src / "train.jsonl"
    assert f"rejected {train}:2:" in printed and f"{train}:3:" in printed and f"{train}:4:" in printed
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [2, 3, 4, 5]
    assert "not valid JSON" in rejected[0]["reason"] and "####" in rejected[1]["reason"]
    assert "'question'" in rejected[3]["reason"]
    assert len(pd.read_parquet(tmp_path / "out" / "train.parquet")) == 2


def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys):
    assert main(["prepare", "gsm8k", "--out", str(tmp_path), "--from-jsonl", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err and "no such directory" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", "aime24", "--out", str(tmp_path / "o"), "--from-jsonl", str(empty)]) == 2
    assert "aime24/test.jsonl does not exist" in capsys.readouterr().err


def test_unreachable_hub_is_decided_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        t0 = time.perf_counter()
        ok, why = hub_reachable("openai/gsm8k", timeout_s=1.0)
        assert not ok and time.perf_counter() - t0 < 2.0, why
    with socket.socket() as closed:  # nothing listens: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    ok, why = hub_reachable("openai/gsm8k", timeout_s=1.0)
    assert not ok and "api/datasets/openai/gsm8k" in why
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() == (False, "HF_HUB_OFFLINE is set")


def test_offline_hub_falls_back_to_the_jsonl_dir_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(JSONL_DIR_ENV, str(FIXTURE_JSONL))  # 4 rows a file (tests/fixtures/README.md)
    assert main(["prepare", "math500", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(FIXTURE_JSONL) in out and "math500 test: 4 rows" in out
    assert main(["prepare", "gsm8k", "--out", str(tmp_path / "g"), "--no-progress"]) == 0
    assert "hub not used: HF_HUB_OFFLINE is set" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "g" / "train.parquet")) == 4


def test_offline_hub_without_the_variable_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(JSONL_DIR_ENV, raising=False)
    assert main(["prepare", "gsm8k", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and JSONL_DIR_ENV in err and "--from-jsonl" in err
    monkeypatch.setenv(JSONL_DIR_ENV, str(tmp_path / "missing"))
    assert main(["prepare", "gsm8k", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "missing: no such directory" in capsys.readouterr().err
