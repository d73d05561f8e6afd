"""Self-consistency of the rewards on the real data sets.

- GSM8K train (all 7,473 rows): each reference solution scores 1.0 against its own `#### N` answer,
  and against the next row's answer it scores exactly what a plain string comparison of the two
  answers says (so a reward stuck at 1.0 or at 0.0 fails).
- MATH500 (500 rows): the reference solution's last box scores 1.0 against the `answer` field for
  >= 99 % of rows, through the full reward and through math-verify alone (the symbolic path, not
  only the string fast path); against the next row's answer it scores 0.0 for >= 99 %.
"""

from __future__ import annotations

import json

import pytest

from reward_fns import gsm8k, math
from reward_fns._verify_worker import shared_worker


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _gsm8k_answer(solution: str) -> str:
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


@pytest.mark.parametrize("split,n_rows", [("train", 7473), ("test", 1319)])
def test_gsm8k_reference_solutions_score_one(real_data_dir, split, n_rows):
    rows = read_jsonl(real_data_dir / "gsm8k" / f"{split}.jsonl")
    assert len(rows) == n_rows
    answers = [_gsm8k_answer(r["answer"]) for r in rows]
    own = [gsm8k.compute_score("gsm8k", r["answer"], a) for r, a in zip(rows, answers)]
    failures = [i for i, s in enumerate(own) if s != 1.0]
    print(f"gsm8k {split}: {n_rows - len(failures)}/{n_rows} reference solutions score 1.0")
    assert not failures, f"rows {failures[:10]} do not score 1.0 against their own answer"

    shifted = [
        gsm8k.compute_score("gsm8k", rows[i]["answer"], answers[(i + 1) % n_rows]) for i in range(n_rows)
    ]
    expected = [float(answers[i] == answers[(i + 1) % n_rows]) for i in range(n_rows)]
    assert shifted == expected
    assert 0 < sum(expected) < n_rows * 0.05  # some neighbours really share an answer


@pytest.fixture(scope="module")
def math500(real_data_dir):
    rows = read_jsonl(real_data_dir / "math500" / "test.jsonl")
    assert len(rows) == 500
    return rows


def test_math500_reference_boxes_match_the_answer_field(math500):
    scores = [math.compute_score("math500", r["solution"], r["answer"]) for r in math500]
    rate = sum(scores) / len(scores)
    print(f"MATH500 match rate (full reward): {rate:.3f}")
    assert rate >= 0.99, [
        (i, math.extract_answer(r["solution"]), r["answer"])
        for i, (r, s) in enumerate(zip(math500, scores))
        if s != 1.0
    ][:10]


def test_math500_match_through_math_verify_alone(math500):
    worker = shared_worker()
    verdicts = [worker.equal(math.extract_answer(r["solution"]), r["answer"], 5.0) for r in math500]
    rate = sum(v is True for v in verdicts) / len(verdicts)
    print(f"MATH500 match rate (math-verify only): {rate:.3f}")
    assert rate >= 0.99


def test_math500_mismatched_pairs_score_zero(math500):
    n = len(math500)
    scores = [
        math.compute_score("math500", math500[i]["solution"], math500[(i + 1) % n]["answer"])
        for i in range(n)
    ]
    zero_rate = scores.count(0.0) / n
    print(f"MATH500 mismatch-zero rate: {zero_rate:.3f} ({n - scores.count(0.0)} pairs scored 1.0)")
    assert zero_rate >= 0.99
