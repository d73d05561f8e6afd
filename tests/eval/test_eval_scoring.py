"""tinylora_verl.eval.scoring without vLLM: per-sample records, summary numbers, CSV/Markdown output."""

from __future__ import annotations

import csv

import pytest

from reward_fns import gsm8k as gsm8k_reward
from tinylora_verl.eval.scoring import Completion, score_benchmark, summarize, write_samples, write_summary


def _row(i: int, truth: str, source: str) -> dict:
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": f"q{i}"}],
        "reward_model": {"style": "rule", "ground_truth": truth},
        "extra_info": {"split": "test", "index": i, "question": f"q{i}"},
    }


def test_scores_summary_and_files(tmp_path):
    rows = [_row(0, "4", "gsm8k"), _row(1, "10", "gsm8k")]
    completions = [
        [Completion("2+2=4\n#### 4", 7, "stop"), Completion("#### 5", 3, "stop")],
        [Completion("it is 1,0", 5, "length"), Completion("#### 10.00", 9, "stop")],
    ]
    records = score_benchmark("gsm8k", "gsm8k", rows, completions)
    assert [r["score"] for r in records] == [1.0, 0.0, 0.0, 1.0]
    assert [r["extracted"] for r in records] == ["4", "5", "0", "10"]
    assert [(r["index"], r["sample"]) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(
        r["score"] == gsm8k_reward.compute_score("gsm8k", r["response"], r["ground_truth"]) for r in records
    )

    gsm = summarize("gsm8k", records)
    assert (gsm.n_prompts, gsm.n_samples) == (2, 2)
    assert gsm.accuracy == 0.5 and gsm.pass_at_n == 1.0
    assert gsm.mean_response_tokens == 6.0 and gsm.truncated == 0.25

    math_rows = [_row(0, "\\frac{1}{2}", "math500")]
    math_records = score_benchmark("math500", "math", math_rows, [[Completion("so \\boxed{0.5}", 4, "stop")]])
    assert math_records[0]["score"] == 1.0 and math_records[0]["extracted"] == "0.5"
    summary = [gsm, summarize("math500", math_records)]

    path = write_samples(tmp_path, "gsm8k", records)
    assert len(path.read_text().splitlines()) == 4
    csv_path, md_path = write_summary(tmp_path, summary, title="T")
    table = list(csv.DictReader(open(csv_path)))
    assert [r["benchmark"] for r in table] == ["gsm8k", "math500", "average"]
    assert float(table[2]["accuracy"]) == pytest.approx((0.5 + 1.0) / 2)
    md = md_path.read_text()
    assert "| gsm8k | 2 | 2 | 50.0 | 100.0 | 6.0 | 25.0 |" in md and "| average |" in md


def test_mismatched_inputs_are_errors():
    with pytest.raises(ValueError, match="2 prompts but 1"):
        score_benchmark("gsm8k", "gsm8k", [_row(0, "1", "gsm8k"), _row(1, "2", "gsm8k")], [[]])
    with pytest.raises(ValueError, match="unknown reward"):
        score_benchmark("x", "nope", [], [])
    with pytest.raises(ValueError, match="no samples"):
        summarize("gsm8k", [])


def test_arithmetic_accuracy_is_exact_match_without_format_credit():
    rows = [_row(0, "42", "tinylora/arithmetic"), _row(1, "7", "tinylora/arithmetic")]
    completions = [
        [Completion("#### 42", 3, "stop"), Completion("#### 41", 3, "stop")],
        [Completion("the answer is 7", 5, "stop"), Completion("x\n#### 7", 4, "stop")],
    ]
    records = score_benchmark("arithmetic_add", "arithmetic", rows, completions)
    # the training reward gives 0.1 for "#### 41"; accuracy counts only the exact answer after ####
    assert [r["score"] for r in records] == [1.0, 0.0, 0.0, 1.0]
    assert [r["extracted"] for r in records] == ["42", "41", None, "7"]
    assert summarize("arithmetic_add", records).accuracy == 0.5
