"""An SFT run evaluated through vLLM (CPU build): the adapter merged into a copy that vLLM serves gives the
same greedy answers as transformers' generate on the adapted model in memory."""

from __future__ import annotations

import json

import pytest

from tests.tiny_model import build_tiny_qwen2
from tinylora_verl import load_adapter
from tinylora_verl.experiments import records
from tinylora_verl.experiments.evaluate import EvalConfig, generate_hf
from tinylora_verl.experiments.run_one import execute
from tinylora_verl.experiments.spec import Run, run_settings, validate
from tinylora_verl.experiments.tasks import materialise, read_rows
from tinylora_verl.hf import load_causal_lm

pytestmark = pytest.mark.e2e


def test_vllm_eval_of_an_sft_run_matches_hf_generate(tokenizer, tmp_path, monkeypatch):
    pytest.importorskip("vllm")
    import functools

    import tinylora_verl.eval.generate as vllm_generate

    # vLLM in float32, as the HF reference below: its "auto" dtype serves a float32 checkpoint in bf16 on CPU,
    # and a near-tied greedy token of this random model then flips with the factors (it did when the default
    # SVD method changed), which would say nothing about whether the adapter was merged
    monkeypatch.setattr(vllm_generate, "generate", functools.partial(vllm_generate.generate, dtype="float32"))
    # larger initial weights than HF's 0.02: two SFT steps then change the greedy outputs (with the default
    # init every prompt decodes to newlines before and after, and the check below would prove nothing)
    tiny_model_dir = build_tiny_qwen2(tmp_path / "model", seed=1, initializer_range=0.2)
    # 1 token: greedy decoding of a random model drifts apart after a token or two between any two float32
    # implementations (near-tied logits: merged weights vs base + low-rank path, vLLM's kernels vs torch)
    eval_cfg = {"backend": "vllm", "temperature": 0, "max_tokens": 1}
    task = {"kind": "arithmetic", "n_train": 8, "n_val": 4, "n_test": 4}
    spec = validate(
        {
            "model": str(tiny_model_dir),
            "task": task,
            "methods": ["sft"],
            "budgets": [3],
            "lrs": [0.1],
            "seeds": [0],
            "sft": {"steps": 2, "batch_size": 4},
            "eval": eval_cfg,
        }
    )
    files = materialise(spec["task"], tmp_path / "data")
    run_dir = tmp_path / "run"
    records.write_settings(run_dir, run_settings(spec, Run("sft", "tinylora", 3, 0.1, 0), files.to_dict()))
    rec = execute(run_dir, log=lambda m: None)
    assert rec["status"] == "finished", rec["error"]
    served = [json.loads(line)["response"] for line in (run_dir / "eval" / "samples" / "val.jsonl").open()]

    prompts = [row["prompt"] for row in read_rows(files.val)]
    greedy = EvalConfig(backend="hf", temperature=0, max_tokens=1)
    base = generate_hf(load_causal_lm(str(tiny_model_dir)), tokenizer, prompts, greedy)
    handle = load_adapter(load_causal_lm(str(tiny_model_dir)), run_dir / "adapter")
    local = generate_hf(handle.model, tokenizer, prompts, greedy)
    assert served == [c[0].text for c in local]
    # the adapter changes the greedy outputs: a vLLM copy without it merged could not pass the check above
    assert served != [c[0].text for c in base]
