"""Scoring and aggregation for `tinylora-verl eval` (no vLLM here: unit-testable on plain strings).

- Each completion is scored by the reward the benchmark uses in training (reward_fns.gsm8k for gsm8k,
  reward_fns.math for the MATH-style sets), and the extracted answer is recorded with the same
  extraction code the reward uses, so a sample's `extracted` explains its `score`.
- The arithmetic task (tinylora/arithmetic rows) is scored by exact match of the number after "####":
  its training reward's 0.1 format credit is a shaping signal, not accuracy.
- Summary per benchmark: n prompts, n samples per prompt, accuracy = mean score over all samples
  (mean@n, the paper's metric at n=1), pass@n = fraction of prompts with any correct sample,
  mean response length in tokens, fraction of responses cut at the token limit. A final "average"
  row is the unweighted mean over benchmarks (as paper tables report).
- Outputs: samples/<benchmark>.jsonl (one line per sample), summary.csv, summary.md.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

from reward_fns import arithmetic as arithmetic_reward
from reward_fns import gsm8k as gsm8k_reward
from reward_fns import math as math_reward

from ..errors import InvalidValue


def _arithmetic_exact(data_source, solution_str, ground_truth, extra_info=None) -> float:
    return (
        1.0
        if arithmetic_reward.compute_score(data_source, solution_str, ground_truth, extra_info) == 1.0
        else 0.0
    )


REWARDS = {
    "gsm8k": gsm8k_reward,
    "math": math_reward,
    "arithmetic": SimpleNamespace(
        extract_answer=arithmetic_reward.extract_answer, compute_score=_arithmetic_exact
    ),
}
SUMMARY_FIELDS = (
    "benchmark",
    "n_prompts",
    "n_samples",
    "accuracy",
    "pass_at_n",
    "mean_response_tokens",
    "truncated",
)


@dataclass
class Completion:
    text: str
    n_tokens: int
    finish_reason: str | None = None  # "stop" | "length" | None


@dataclass
class SummaryRow:
    benchmark: str
    n_prompts: int
    n_samples: int
    accuracy: float
    pass_at_n: float
    mean_response_tokens: float
    truncated: float


def score_benchmark(
    benchmark: str, reward: str, rows: list[dict], completions: list[list[Completion]]
) -> list[dict]:
    """One record per (prompt, sample): rows are verl rows (prepare's layout), completions[i] belong to rows[i]."""
    if reward not in REWARDS:
        raise InvalidValue(f"unknown reward {reward!r}; choose one of {', '.join(REWARDS)}")
    if len(rows) != len(completions):
        raise ValueError(f"{benchmark}: {len(rows)} prompts but {len(completions)} completion lists")
    module = REWARDS[reward]
    records = []
    for row, samples in zip(rows, completions):
        truth = row["reward_model"]["ground_truth"]
        for k, completion in enumerate(samples):
            records.append(
                {
                    "benchmark": benchmark,
                    "index": int(row["extra_info"]["index"]),
                    "sample": k,
                    "data_source": row["data_source"],
                    "question": row["extra_info"]["question"],
                    "prompt": [dict(m) for m in row["prompt"]],
                    "response": completion.text,
                    "extracted": module.extract_answer(completion.text),
                    "ground_truth": truth,
                    "score": module.compute_score(
                        row["data_source"], completion.text, truth, row["extra_info"]
                    ),
                    "response_tokens": completion.n_tokens,
                    "finish_reason": completion.finish_reason,
                }
            )
    return records


def summarize(benchmark: str, records: list[dict]) -> SummaryRow:
    if not records:
        raise ValueError(f"{benchmark}: no samples to summarise")
    by_prompt: dict[int, list[float]] = {}
    for r in records:
        by_prompt.setdefault(r["index"], []).append(r["score"])
    n = len(records)
    return SummaryRow(
        benchmark=benchmark,
        n_prompts=len(by_prompt),
        n_samples=max(len(v) for v in by_prompt.values()),
        accuracy=sum(r["score"] for r in records) / n,
        pass_at_n=sum(max(v) for v in by_prompt.values()) / len(by_prompt),
        mean_response_tokens=sum(r["response_tokens"] for r in records) / n,
        truncated=sum(r["finish_reason"] == "length" for r in records) / n,
    )


def average_row(rows: list[SummaryRow]) -> SummaryRow:
    """Unweighted mean over benchmarks."""
    k = len(rows)
    return SummaryRow(
        "average",
        sum(r.n_prompts for r in rows),
        max(r.n_samples for r in rows),
        sum(r.accuracy for r in rows) / k,
        sum(r.pass_at_n for r in rows) / k,
        sum(r.mean_response_tokens for r in rows) / k,
        sum(r.truncated for r in rows) / k,
    )


def write_samples(out: Path, benchmark: str, records: list[dict]) -> Path:
    path = Path(out) / "samples" / f"{benchmark}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def write_summary(out: Path, rows: list[SummaryRow], title: str = "Evaluation") -> tuple[Path, Path]:
    """summary.csv and summary.md (with the average row when there is more than one benchmark)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = rows + ([average_row(rows)] if len(rows) > 1 else [])
    csv_path = out / "summary.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for r in table:
            writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(r).items()})
    lines = [
        f"# {title}",
        "",
        "| benchmark | prompts | samples/prompt | accuracy (%) | pass@n (%) | "
        "mean response tokens | truncated (%) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        lines.append(
            f"| {r.benchmark} | {r.n_prompts} | {r.n_samples} | {100 * r.accuracy:.1f} | "
            f"{100 * r.pass_at_n:.1f} | {r.mean_response_tokens:.1f} | {100 * r.truncated:.1f} |"
        )
    md_path = out / "summary.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path
