"""Task data and held-out evaluation: disjoint arithmetic splits, batched HF generation, per-set scoring."""

from __future__ import annotations

import pytest

from tests.tiny_model import tiny_qwen2
from tinylora_verl.eval.scoring import Completion
from tinylora_verl.experiments.evaluate import EvalConfig, evaluate, generate_hf
from tinylora_verl.experiments.tasks import arithmetic_rows, check_task, materialise, read_rows

TASK = {"kind": "arithmetic", "op": "add", "n_train": 40, "n_val": 10, "n_test": 12, "seed": 3}


def test_arithmetic_splits_are_disjoint_and_carry_solutions():
    rows = arithmetic_rows(TASK)
    pairs = {s: {(r["extra_info"]["a"], r["extra_info"]["b"]) for r in rows[s]} for s in rows}
    assert [len(pairs[s]) for s in ("train", "val", "test")] == [40, 10, 12]
    assert not (
        pairs["train"] & pairs["val"] or pairs["train"] & pairs["test"] or pairs["val"] & pairs["test"]
    )
    r = rows["test"][0]
    a, b = r["extra_info"]["a"], r["extra_info"]["b"]
    assert r["extra_info"]["solution"] == f"#### {a + b}" and r["reward_model"]["ground_truth"] == str(a + b)
    bad = check_task({"kind": "arithmetic", "op": "mul", "n_train": 0, "n_val": 8, "n_test": 8})
    assert bad == ["task.n_train=0 must be a positive integer"]


def test_number_style_rows_ask_for_the_number_and_score_the_last_number():
    from tinylora_verl.data.arithmetic import SYSTEM
    from tinylora_verl.eval.scoring import score_benchmark

    rows = arithmetic_rows(
        {
            "kind": "arithmetic",
            "op": "mul",
            "n_train": 20,
            "n_val": 4,
            "n_test": 8,
            "seed": 1,
            "style": "number",
        }
    )
    r = rows["test"][0]
    a, b = r["extra_info"]["a"], r["extra_info"]["b"]
    assert r["prompt"][0] == {"role": "system", "content": SYSTEM}
    assert r["extra_info"]["question"] == f"What is {a} * {b}?" and r["extra_info"]["solution"] == str(a * b)
    texts = [f"{a} * {b} = {a * b}.", f"#### {a * b} is not {a * b + 1}"]
    scored = score_benchmark(
        "arithmetic_mul", "arithmetic", [r, r], [[Completion(texts[0], 8)], [Completion(texts[1], 9)]]
    )
    assert [s["score"] for s in scored] == [1.0, 0.0]
    assert check_task({"kind": "arithmetic", "style": "words"}) == [
        "task.style='words' must be one of ('hash', 'number')"
    ]


def test_an_operand_range_widens_the_problem_space_and_is_checked():
    task = {"kind": "arithmetic", "op": "mul", "n_train": 40, "n_val": 24, "n_test": 57, "seed": 0}
    # 2..9 (mul's own range): 64 problems, 121 asked for — refused before any data is written
    assert check_task(task) == [
        "task.operands=[2, 9] (the default) give 64 distinct problems but n_train + n_val + n_test = 121; "
        "widen the range or ask for fewer"
    ]
    rows = arithmetic_rows({**task, "operands": [2, 12]})
    pairs = [(r["extra_info"]["a"], r["extra_info"]["b"]) for s in rows for r in rows[s]]
    assert len(set(pairs)) == 121 == len(pairs)  # every product of 2..12 exactly once over the three sets
    assert {a for a, _ in pairs} == set(range(2, 13)) == {b for _, b in pairs}
    r = rows["test"][0]
    assert r["reward_model"]["ground_truth"] == str(r["extra_info"]["a"] * r["extra_info"]["b"])
    assert check_task({**task, "operands": [2, 11]}) == [
        "task.operands=[2, 11] give 100 distinct problems but n_train + n_val + n_test = 121; widen the "
        "range or ask for fewer"
    ]
    for bad in ([5, 2], [2], "2,12", [2.0, 12], [-1, 3], [True, 3]):
        (msg,) = check_task({**task, "operands": bad})
        assert msg.startswith(f"task.operands={bad!r} must be [lo, hi]")


def test_materialise_writes_three_parquet_files_once(tmp_path):
    files = materialise(TASK, tmp_path)
    assert list(files.eval_sets()) == ["val", "arithmetic_add"]
    mtime = (tmp_path / "train.parquet").stat().st_mtime_ns
    assert materialise(TASK, tmp_path) == files and (tmp_path / "train.parquet").stat().st_mtime_ns == mtime
    written = [r["extra_info"]["a"] for r in read_rows(files.val)]
    assert written == [r["extra_info"]["a"] for r in arithmetic_rows(TASK)["val"]]


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(tokenizer):
    model = tiny_qwen2(seed=5, initializer_range=0.2)
    prompts = [
        [{"role": "user", "content": "What is 2 + 3?"}],
        [
            {
                "role": "user",
                "content": "Natalia sold clips to 48 of her friends in April, and then some more.",
            }
        ],
        [{"role": "user", "content": "Hi"}],
    ]
    cfg = EvalConfig(backend="hf", temperature=0.0, max_tokens=6, batch_size=3)
    batched = generate_hf(model, tokenizer, prompts, cfg)
    single = generate_hf(
        model, tokenizer, prompts, EvalConfig(backend="hf", temperature=0.0, max_tokens=6, batch_size=1)
    )
    assert [c[0].text for c in batched] == [c[0].text for c in single]
    assert all(
        len(c) == 1 and c[0].n_tokens <= 6 and c[0].finish_reason in ("stop", "length") for c in batched
    )
    assert len({c[0].text for c in batched}) > 1  # the prompts matter: not one fixed output


def test_evaluate_scores_every_set_with_its_reward(tmp_path):
    files = materialise(TASK, tmp_path / "data")
    rows = {n: read_rows(p) for n, p in files.eval_sets().items()}
    answers = [r["reward_model"]["ground_truth"] for n in rows for r in rows[n]]

    def fake_generate(prompts):  # right on even rows of each set's order, "format only" on odd ones
        assert len(prompts) == len(answers)
        return [
            [Completion(f"#### {a}" if i % 2 == 0 else "#### -1", 3, "stop")] for i, a in enumerate(answers)
        ]

    summary = evaluate(files.eval_sets(), EvalConfig(backend="hf"), tmp_path / "eval", fake_generate)
    assert summary["val"]["accuracy"] == pytest.approx(0.5) and summary["val"]["n_prompts"] == 10
    # per-prompt scores in the set's row order (what the bootstrap over problems resamples)
    assert summary["val"]["per_prompt"] == [1.0, 0.0] * 5
    assert summary["val"]["prompt_ids"] == [r["extra_info"]["index"] for r in rows["val"]]
    assert summary["arithmetic_add"]["accuracy"] == pytest.approx(0.5)
    assert (tmp_path / "eval" / "samples" / "arithmetic_add.jsonl").exists()
    assert "average" in (tmp_path / "eval" / "summary.csv").read_text()
