"""`tinylora-verl sft` end to end on a saved tiny model: record, adapter, refusal to overwrite."""

from __future__ import annotations

import json

from tinylora_verl.adapter.checkpoint import read_metadata
from tinylora_verl.cli import main


def test_sft_command_trains_evaluates_and_writes_a_table_record(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "sft",
        "--model",
        str(tiny_model_dir),
        "--arithmetic",
        "add",
        "--n-train",
        "8",
        "--n-val",
        "3",
        "--n-test",
        "5",
        "--out",
        str(out),
        "--budget",
        "5",
        "--lr",
        "0.05",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--set",
        "eval.backend=hf",
        "--set",
        "eval.temperature=0",
        "--set",
        "eval.max_tokens=3",
    ]
    assert main(argv) == 0
    rec = json.loads((out / "result.json").read_text())
    assert rec["status"] == "finished" and rec["name"] == "sft-tinylora5-lr0.05-s0"
    assert rec["params"] == {
        "method": "sft",
        "kind": "tinylora",
        "budget": 5,
        "lr": 0.05,
        "seed": 0,
        "label": None,
    }
    assert rec["update"]["delta_fro"] > 0 and 0 < rec["update"]["changed"] < rec["update"]["tensors"]
    assert len(rec["eval"]["val"]["per_prompt"]) == rec["eval"]["val"]["n_prompts"]
    assert rec["trainable_params"] == 5 and rec["train"]["steps"] == 2
    assert rec["train"]["config"]["batch_size"] == 4 and rec["train"]["config"]["max_grad_norm"] == 1.0
    assert {k: v["n_prompts"] for k, v in rec["eval"].items()} == {"val": 3, "arithmetic_add": 5}
    assert read_metadata(out / "adapter")["plan"]["num_trainable"] == 5
    assert len((out / "sft_metrics.jsonl").read_text().splitlines()) == 2
    assert "arithmetic_add: accuracy" in capsys.readouterr().out
    assert main(argv) == 2  # a finished run is not overwritten
    assert "already holds a finished run" in capsys.readouterr().err
