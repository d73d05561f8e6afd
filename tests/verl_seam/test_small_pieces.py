"""Small pure pieces of the seam: the tinylora block -> TinyLoRAConfig, run-file discovery, demo table."""

import pytest
from omegaconf import OmegaConf

from tinylora_verl.adapter import TinyLoRAConfigError
from tinylora_verl.demo import summary_table, validation_lines
from tinylora_verl.verl_seam.trainer_files import adapter_dirs


def test_tinylora_block():
    from tinylora_verl.run_config import run_config_from

    def tinylora_config_from(block):
        return run_config_from(block).adapter

    block = OmegaConf.create(
        {
            "enable": True,
            "budget": 26,
            "frozen_rank": 2,
            "tie_mode": "tiled",
            "seed": 3,
            "alpha": 1.0,
            "verify_sync": True,
        }
    )
    cfg = tinylora_config_from(block)
    assert (cfg.budget, cfg.seed, cfg.tie_mode) == (26, 3, "tiled")
    assert tinylora_config_from(OmegaConf.create({"enable": False, "budget": 13})) is None
    assert tinylora_config_from(None) is None
    with pytest.raises(TinyLoRAConfigError, match="unknown TinyLoRA settings"):
        tinylora_config_from(OmegaConf.create({"budgett": 13}))


def test_adapter_dirs(tmp_path):
    for step in (10, 2, 7):
        d = tmp_path / f"global_step_{step}" / "actor" / "tinylora_adapter"
        d.mkdir(parents=True)
        if step != 7:
            (d / "tinylora_config.json").write_text("{}")
    assert [p.parent.parent.name for p in adapter_dirs(tmp_path)] == ["global_step_2", "global_step_10"]


def test_summary_table():
    text = summary_table(
        [{"step": 1, "reward": 0.25, "t_gen": 20.0, "t_sync": 0.5}, {"step": 2, "reward": 0.5}]
    )
    lines = text.splitlines()
    assert lines[0].startswith("step | reward") and len(lines) == 4
    assert "0.250" in lines[2] and "0.50" in lines[2] and "-" in lines[3]


def test_validation_lines():
    rows = [
        {"step": 0, "val-core/a/reward/mean@8": 0.1875, "val-core/a/reward/best@8/std": 0.2},
        {"step": 12, "val-core/a/reward/mean@8": 0.5, "val-core/b/acc/mean@8": 0.25},
    ]
    assert validation_lines(rows) == [
        "held-out val-core/a/reward/mean@8: step 0: 0.188, step 12: 0.500",
        "held-out val-core/b/acc/mean@8: step 12: 0.250",
    ]
    assert validation_lines([]) == []


def test_run_rows_round_trip(tmp_path):
    from tinylora_verl.experiments.rl import train_metrics
    from tinylora_verl.verl_seam.trainer_files import METRICS_FILE, append_row, read_rows

    run = tmp_path / "run" / "verl"
    assert read_rows(run / METRICS_FILE) == [] and train_metrics(tmp_path / "run") == {}
    append_row(run, METRICS_FILE, {"step": 1, "reward": 0.25, "t_step": 10.0})
    with open(run / METRICS_FILE, "a") as f:
        f.write("\n")
    append_row(run, METRICS_FILE, {"step": 2, "reward": 0.5, "acc": 0.5, "t_step": 30.0})
    assert read_rows(run / METRICS_FILE) == [
        {"step": 1, "reward": 0.25, "t_step": 10.0},
        {"step": 2, "reward": 0.5, "acc": 0.5, "t_step": 30.0},
    ]
    assert train_metrics(tmp_path / "run") == {
        "steps": 2,
        "first_reward": 0.25,
        "final_reward": 0.5,
        "final_acc": 0.5,
        "mean_step_s": 20.0,
    }


def test_rows_of_an_interrupted_attempt_count_once(tmp_path):
    """A sweep run killed at step 3 and rerun from scratch (or resumed from an earlier checkpoint) appends
    its steps again: each step counts once, as the last attempt wrote it."""
    from tinylora_verl.experiments.rl import train_metrics
    from tinylora_verl.verl_seam.trainer_files import METRICS_FILE, append_row

    run = tmp_path / "run" / "verl"
    for step, reward in ((1, 0.9), (2, 0.9), (3, 0.9)):  # the killed attempt
        append_row(run, METRICS_FILE, {"step": step, "reward": reward, "t_step": 100.0})
    for step, reward in ((1, 0.25), (2, 0.5)):  # the rerun
        append_row(run, METRICS_FILE, {"step": step, "reward": reward, "acc": reward, "t_step": 10.0})
    assert train_metrics(tmp_path / "run") == {
        "steps": 3,
        "first_reward": 0.25,
        "final_reward": 0.9,
        "final_acc": None,
        "mean_step_s": 40.0,
    }
    append_row(run, METRICS_FILE, {"step": 3, "reward": 0.75, "acc": 0.75, "t_step": 10.0})
    assert train_metrics(tmp_path / "run")["final_reward"] == 0.75
    assert train_metrics(tmp_path / "run")["mean_step_s"] == 10.0
