"""`tinylora-verl eval` argument checks and the adapter merge, without starting vLLM."""

from __future__ import annotations

import argparse

import pytest
import torch

from tinylora_verl.cli import main
from tinylora_verl.commands import eval as eval_cmd


def test_bad_arguments_exit_2_with_every_problem_named(tmp_path, capsys):
    code = main(
        [
            "eval",
            "--model",
            str(tmp_path),
            "--benchmarks",
            "gsm8k,nope",
            "--out",
            str(tmp_path / "o"),
            "--n",
            "0",
            "--limit",
            "-1",
            "--adapter",
            str(tmp_path / "missing"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    for part in ("'nope'", "--n 0", "--limit -1", "missing: no such directory"):
        assert part in err


def test_adapter_is_merged_into_a_plain_hf_directory(tiny_model_dir, tiny_adapter_dir, tmp_path):
    from safetensors.torch import load_file

    merged = eval_cmd._merged_model(
        str(tiny_model_dir), str(tiny_adapter_dir), str(tmp_path / "m"), "float32"
    )
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    new = load_file(f"{merged}/model.safetensors")
    assert (tmp_path / "m" / "tokenizer.json").is_file() and (tmp_path / "m" / "config.json").is_file()
    changed = [k for k in base if not torch.equal(base[k], new[k])]
    assert any(k.endswith("q_proj.weight") for k in changed)  # the adapter really moved weights
    assert all(k.endswith("proj.weight") for k in changed)  # and nothing but adapted projections


def test_unknown_benchmark_message_lists_choices():
    args = argparse.Namespace(
        benchmarks="gsm9k", n=1, limit=None, max_tokens=8, top_p=0.95, temperature=1.0, adapter=None
    )
    with pytest.raises(ValueError, match="choose from gsm8k, math500"):
        eval_cmd._check(args)
