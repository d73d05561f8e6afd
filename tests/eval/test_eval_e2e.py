"""End to end: `tinylora-verl eval` with vLLM on CPU, a tiny random Qwen2 + a merged TinyLoRA adapter,
2 prompts each of gsm8k and math500, 2 samples per prompt, 12 tokens each; checks every output file."""

from __future__ import annotations

import csv
import json

import pytest

from reward_fns import gsm8k as gsm8k_reward
from reward_fns import math as math_reward
from tests.helpers import FIXTURE_JSONL
from tinylora_verl.cli import main


@pytest.mark.e2e
def test_eval_end_to_end_on_vllm_cpu(tiny_model_dir, tiny_adapter_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--model",
            str(tiny_model_dir),
            "--adapter",
            str(tiny_adapter_dir),
            "--benchmarks",
            "gsm8k,math500",
            "--limit",
            "2",
            "--n",
            "2",
            "--max-tokens",
            "12",
            "--from-jsonl",
            str(FIXTURE_JSONL),
            "--out",
            str(out),
            "--dtype",
            "float32",
            "--max-model-len",
            "1024",
            "--kv-cache-bytes",
            str(64 * 1024 * 1024),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "merged 13 adapter parameters" in printed

    rewards = {"gsm8k": gsm8k_reward, "math500": math_reward}
    for bench, reward in rewards.items():
        records = [json.loads(x) for x in (out / "samples" / f"{bench}.jsonl").read_text().splitlines()]
        assert [(r["index"], r["sample"]) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        for r in records:
            assert 0 < r["response_tokens"] <= 12 and r["finish_reason"] in ("stop", "length")
            assert isinstance(r["response"], str) and r["response"]
            assert r["score"] == reward.compute_score(bench, r["response"], r["ground_truth"])
            assert r["extracted"] == reward.extract_answer(r["response"])
        assert records[0]["prompt"][-1]["role"] == "user"

    table = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["benchmark"] for r in table] == ["gsm8k", "math500", "average"]
    assert all(int(r["n_prompts"]) == 2 and int(r["n_samples"]) == 2 for r in table[:2])
    assert all(0.0 < float(r["mean_response_tokens"]) <= 12 for r in table)
    md = (out / "summary.md").read_text()
    assert "| gsm8k | 2 | 2 |" in md and "| math500 | 2 | 2 |" in md
    settings = json.loads((out / "eval_config.json").read_text())
    assert settings["temperature"] == 1.0 and settings["top_p"] == 0.95 and settings["generate_seconds"] > 0
