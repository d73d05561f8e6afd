"""config/reward/{gsm8k,math}.yaml compose with verl's ppo_trainer and load through verl's own loader.

A primary config like the project's entry point (defaults: [ppo_trainer, ...], searchpath
pkg://verl.trainer.config) is written to a temporary directory; the reward group comes from the package's
config/ directory. Checked: both ways of choosing the option (command-line override and defaults-list
override), that verl's other reward settings survive, that the module the path names exists inside the
installed package, and that verl's get_custom_reward_fn returns a function that scores like ours,
with reward_kwargs applied, from any working directory.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"


def _primary(tmp_path: Path, extra_default: str = "") -> Path:
    text = (
        "hydra:\n  searchpath:\n    - pkg://verl.trainer.config\n"
        f"    - file://{CONFIG_DIR}\n"
        "defaults:\n  - ppo_trainer\n" + (f"  - {extra_default}\n" if extra_default else "") + "  - _self_\n"
    )
    (tmp_path / "primary.yaml").write_text(text)
    return tmp_path


def _compose(config_dir: Path, overrides=()):
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name="primary", overrides=list(overrides))


def _load(cfg):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    return get_custom_reward_fn(cfg)


def test_verl_default_has_no_custom_reward(tmp_path):
    cfg = _compose(_primary(tmp_path))
    assert cfg.reward.custom_reward_function.path is None
    assert _load(cfg) is None


@pytest.mark.parametrize(
    "name,module,how",
    [("gsm8k", "reward_fns.gsm8k", "command-line"), ("math", "reward_fns.math", "defaults-list")],
)
def test_group_selects_our_reward(tmp_path, name, module, how):
    if how == "command-line":
        cfg = _compose(_primary(tmp_path), [f"reward={name}"])
    else:
        cfg = _compose(_primary(tmp_path, f"override /reward@reward: {name}"))
    crf = cfg.reward.custom_reward_function
    assert crf.path == f"pkg://{module}" and crf.name == "compute_score"
    # verl's own reward settings are kept (the option extends verl's reward/reward.yaml)
    assert cfg.reward.reward_manager.name == "naive" and cfg.reward.num_workers == 8

    origin = Path(importlib.util.find_spec(module).origin)
    assert origin.is_file() and origin == Path(importlib.import_module(module).__file__)
    assert origin.parent.name == "reward_fns"

    cwd = os.getcwd()
    os.chdir(tmp_path)  # a Ray worker's cwd is not the repo: loading must not care
    try:
        fn = _load(cfg)
    finally:
        os.chdir(cwd)
    assert fn("test", "so $\\boxed{12}$", "12", extra_info={}) == 1.0
    assert fn("test", "so $\\boxed{12}$", "13", extra_info={}) == 0.0


def test_reward_kwargs_reach_the_function(tmp_path):
    lenient = _load(_compose(_primary(tmp_path), ["reward=gsm8k"]))
    strict = _load(
        _compose(
            _primary(tmp_path), ["reward=gsm8k", "reward.custom_reward_function.reward_kwargs.strict=true"]
        )
    )
    assert lenient("gsm8k", "The answer is 7.", "7") == 1.0
    assert strict("gsm8k", "The answer is 7.", "7") == 0.0
    assert strict("gsm8k", "#### 7", "7") == 1.0


def test_math_timeout_comes_from_the_config(tmp_path):
    cfg = _compose(
        _primary(tmp_path), ["reward=math", "reward.custom_reward_function.reward_kwargs.timeout_s=0.25"]
    )
    fn = _load(cfg)
    assert fn("math", "\\boxed{\\frac{2}{4}}", "0.5") == 1.0  # warm child, symbolic path
    t0 = time.perf_counter()
    assert fn("math", "\\boxed{9^{9^{9^{9}}}}", "1") == 0.0  # sympy never finishes this
    assert time.perf_counter() - t0 < 1.0  # cut at 0.25 s, not the 2 s default
