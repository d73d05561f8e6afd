"""tinylora_verl.main.prepare_environment: the platform switch and import path reach every Ray process
through ray.init()'s runtime env (not only by inheritance from a local cluster's driver), the user's own
env_vars win, and inside a Ray job the config neither repeats the job's variables (Ray refuses a variable
set in both) nor asks the cluster it joins for num_cpus / num_gpus (ray.init() refuses them); the command
line the console prints first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tinylora_verl import main as entry

ROOT = str(Path(entry.__file__).resolve().parents[1])


def _cfg(*overrides):
    with initialize_config_dir(config_dir=entry.CONFIG_DIR, version_base=None):
        return compose(config_name="cpu_demo", overrides=list(overrides))


@pytest.fixture
def clean_env(monkeypatch):
    for key in (
        "RAY_ADDRESS",
        "RAY_JOB_CONFIG_JSON_ENV_VAR",
        "VERL_PLATFORM",
        "VLLM_TARGET_DEVICE",
        "PYTHONPATH",
    ):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_platform_and_path_go_into_ray_inits_runtime_env(clean_env):
    cfg = _cfg()
    entry.prepare_environment(cfg)
    ray_init = OmegaConf.to_container(cfg.ray_kwargs.ray_init, resolve=True)
    assert ray_init["runtime_env"]["env_vars"] == {
        "PYTHONPATH": ROOT,
        "VERL_PLATFORM": "cpu",
        "VLLM_TARGET_DEVICE": "cpu",
    }
    assert ray_init["num_cpus"] == 16 and ray_init["num_gpus"] == 1  # a private local cluster


def test_the_users_env_vars_win(clean_env):
    cfg = _cfg(
        "+ray_kwargs.ray_init.runtime_env.env_vars.VLLM_TARGET_DEVICE=other",
        "+ray_kwargs.ray_init.runtime_env.env_vars.X=one",
    )
    entry.prepare_environment(cfg)
    env_vars = OmegaConf.to_container(cfg.ray_kwargs.ray_init.runtime_env.env_vars)
    assert env_vars == {"PYTHONPATH": ROOT, "VERL_PLATFORM": "cpu", "VLLM_TARGET_DEVICE": "other", "X": "one"}


def test_inside_a_ray_job(clean_env, capsys):
    job = {"runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip", "env_vars": {"VERL_PLATFORM": "cpu"}}}
    clean_env.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))
    clean_env.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    cfg = _cfg()
    entry.prepare_environment(cfg)
    ray_init = OmegaConf.to_container(cfg.ray_kwargs.ray_init, resolve=True)
    assert ray_init["num_cpus"] is None and ray_init["num_gpus"] is None
    assert set(ray_init["runtime_env"]["env_vars"]) == {"PYTHONPATH", "VLLM_TARGET_DEVICE"}  # not the job's
    out = capsys.readouterr().out
    assert "ray_kwargs.ray_init.num_cpus=16 dropped" in out and "num_gpus=1 dropped" in out


@pytest.mark.parametrize(
    "argv,want",
    [
        ([f"{ROOT}/tinylora_verl/main.py", "a=1", "b=x y"], "python -m tinylora_verl.main a=1 'b=x y'"),
        (
            ["tinylora-verl train", "trainer.total_training_steps=2"],
            "tinylora-verl train trainer.total_training_steps=2",
        ),
    ],
)
def test_the_command_line_printed_first(monkeypatch, argv, want):
    monkeypatch.setattr("sys.argv", argv)
    assert entry.command_line() == want
