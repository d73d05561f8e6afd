"""`tinylora-verl plan` and `export`: real runs on a saved tiny model; user mistakes exit 2 with a message."""

import json
import subprocess
import sys

import pytest
import torch

from tinylora_verl import TinyLoRAConfig, apply_tinylora
from tinylora_verl.cli import main


def test_plan_prints_the_group_table(tiny_model_dir, capsys):
    assert main(["plan", "--model", str(tiny_model_dir), "--budget", "4"]) == 0
    out = capsys.readouterr().out
    assert "14 modules" in out and "4 trainable parameters" in out
    assert len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) == 4


def test_plan_json_matches_the_library_planner(tiny_model_dir, capsys):
    assert (
        main(["plan", "--model", str(tiny_model_dir), "--budget", "14", "--tie-mode", "structured", "--json"])
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert (
        d["num_trainable"] == 14
        and d["projection_dim"] == 1
        and d["tie_factor"] == 1
        and d["tie_mode"] == "structured"
        and d["exact"]
    )
    assert sum(len(g["modules"]) for g in d["groups"]) == 14


@pytest.mark.parametrize(
    "argv,match",
    [
        (["plan", "--model", "/does/not/exist", "--budget", "13"], "does not exist"),
        (["plan", "--model", "{model}", "--budget", "3", "--tie-mode", "none"], "below the 14 modules"),
        (
            [
                "export",
                "--model",
                "{model}",
                "--adapter",
                "/no/adapter",
                "--format",
                "merged",
                "--out",
                "/tmp/x",
            ],
            "not a TinyLoRA adapter directory",
        ),
    ],
)
def test_user_mistakes_exit_2_with_one_line_and_no_traceback(tiny_model_dir, argv, match):
    argv = [a.replace("{model}", str(tiny_model_dir)) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "tinylora_verl.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert match in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("fmt", ["peft-lora", "merged"])
def test_export_command(tiny_model_dir, tmp_path, fmt, prompt_ids):
    from transformers import AutoModelForCausalLM

    ids, mask = prompt_ids
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4))
    handle.set_vectors([torch.full((1,), 0.7 * (g + 1)) for g in range(4)])
    handle.save_adapter(tmp_path / "adapter")
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
    out = tmp_path / "out"
    assert (
        main(
            [
                "export",
                "--model",
                str(tiny_model_dir),
                "--adapter",
                str(tmp_path / "adapter"),
                "--format",
                fmt,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    if fmt == "merged":
        served = AutoModelForCausalLM.from_pretrained(str(out)).eval()
        assert (out / "tokenizer.json").exists()
    else:
        from peft import PeftModel

        served = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(out)
        ).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            served(input_ids=ids, attention_mask=mask).logits, want, rtol=1e-4, atol=1e-4
        )


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "tinylora_verl.cli", *argv], capture_output=True, text=True)


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--frozen-rank", "0", "--frozen-rank: 0 must be a positive integer"),
        ("--frozen-rank", "-3", "--frozen-rank: -3 must be a positive integer"),
        ("--frozen-rank", "100000", "--frozen-rank 100000 exceeds the rank of model.layers.0"),
        ("--budget", "0", "--budget: 0 must be a positive integer"),
        ("--tie-factor", "two", "--tie-factor: 'two' is not an integer"),
    ],
)
def test_plan_refuses_bad_numbers_with_exit_2(tiny_model_dir, flag, value, needle):
    proc = _cli("plan", "--model", str(tiny_model_dir), "--budget", "4", flag, value)
    assert proc.returncode == 2, proc.stdout
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""  # no plan printed


def test_a_model_path_that_is_no_model_is_a_user_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    proc = _cli("plan", "--model", str(tmp_path), "--budget", "4")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is a directory without config.json or a .gguf file: not a model" in proc.stderr


def test_export_out_that_is_a_file_is_refused_before_any_work(tiny_model_dir, tmp_path):
    handle = apply_tinylora(
        __import__("transformers").AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
        TinyLoRAConfig(budget=4),
    )
    handle.save_adapter(tmp_path / "adapter")
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    for out in (blocker, blocker / "sub"):
        proc = _cli(
            "export", "--model", str(tiny_model_dir), "--adapter", str(tmp_path / "adapter"), "--format",
            "merged", "--out", str(out),
        )  # fmt: skip
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"{blocker} is a file, not a directory" in proc.stderr
    assert blocker.read_text() == "keep me"


def test_only_user_errors_are_one_line_bugs_keep_their_traceback(monkeypatch, capsys):
    from tinylora_verl.commands import table
    from tinylora_verl.errors import InvalidValue, MissingPath, UserError

    for err in (UserError("bad x; use y"), InvalidValue("bad x; use y"), MissingPath("bad x; use y")):

        def user_mistake(args, err=err):
            raise err

        monkeypatch.setattr(table, "run", user_mistake)
        assert main(["table", "somewhere"]) == 2
        assert capsys.readouterr().err == "tinylora-verl table: error: bad x; use y\n"
    for bug in (ValueError("internal"), OSError("internal"), KeyError("internal"), TypeError("internal")):

        def internal_bug(args, bug=bug):
            raise bug

        monkeypatch.setattr(table, "run", internal_bug)
        with pytest.raises(type(bug), match="internal"):
            main(["table", "somewhere"])
