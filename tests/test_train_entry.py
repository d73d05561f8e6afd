"""The Hydra entry point and `tinylora-verl train`: config found from any directory, overrides and
Hydra flags passed through, every config field documented."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinylora_verl.main import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("args", [["-m", "tinylora_verl.main"], ["-m", "tinylora_verl.cli", "train"]])
def test_cfg_job_from_elsewhere(tmp_path, args):
    res = _run([*args, "--cfg", "job", "tinylora.budget=26"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "trainer_mode: tinylora_sync" in out and "adv_estimator: grpo" in out
    assert re.search(r"^tinylora:\n(  .*\n)*  budget: 26$", out, re.M)
    assert "ppo_mini_batch_size" in out  # verl's ppo_trainer was composed underneath


def test_every_field_has_a_comment():
    """A comment line directly above every key that carries a value (verl's own config rule)."""
    missing = []
    for path in sorted(Path(CONFIG_DIR).rglob("*.yaml")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)([A-Za-z_][\w.]*):\s*(\S.*)?$", line)
            if not m or m.group(3) is None or line.lstrip().startswith("- "):
                continue
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            if j < 0 or not lines[j].lstrip().startswith("#"):
                missing.append(f"{path.name}:{i + 1}: {line.strip()}")
    assert not missing, "fields without a comment above them:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    "override,needle",
    [
        ("tinylora.sync_mode=vectr", "sync_mode='vectr'"),
        ("+tinylora.rnak=2", "unknown TinyLoRA settings"),
        # FSDP1 is refused, not run into a device error later
        (
            "actor_rollout_ref.actor.strategy=fsdp",
            "actor_rollout_ref.actor.strategy=fsdp: TinyLoRA runs on FSDP2 only",
        ),
        # verl's sync trainer forces the colocated 'naive' sync: another backend would be silently ignored
        ("actor_rollout_ref.rollout.checkpoint_engine.backend=nccl", "checkpoint_engine.backend=nccl"),
        (
            "actor_rollout_ref.rollout.checkpoint_engine.custom_backend_module=my.mod",
            "custom_backend_module=my.mod",
        ),
    ],
)
def test_bad_tinylora_block_is_one_line_exit_2(tmp_path, override, needle):
    res = _run(["-m", "tinylora_verl.main", override], cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    assert needle in res.stderr and "Traceback" not in res.stderr


# values that used to be accepted and poison a run: string booleans read through truthiness (enable=off
# left TinyLoRA on, verify_sync=off turned verification on), non-finite scales, out-of-range seeds, and an
# override of the block the workers read that the driver never saw
HOSTILE = [
    ("tinylora.enable=off", "tinylora.enable='off' is not a boolean: write tinylora.enable=true or"),
    ("tinylora.enable='false'", "tinylora.enable='false' is not a boolean"),
    ("tinylora.enable=0", "tinylora.enable=0 is not a boolean"),
    ("tinylora.verify_sync=off", "tinylora.verify_sync='off' is not a boolean"),
    ("tinylora.alpha=nan", "tinylora.alpha=nan must be a finite number"),
    ("tinylora.alpha=-inf", "tinylora.alpha=-inf must be a finite number"),
    ("tinylora.lora_alpha=inf", "tinylora.lora_alpha=inf must be a finite number"),
    ("tinylora.seed=9223372036854775808", "tinylora.seed=9223372036854775808 must be a non-negative integer"),
    ("tinylora.frozen_rank=0", "frozen_rank=0 must be an integer from 1 to 2048"),
    ("tinylora.probe_sequences=-1", "tinylora.probe_sequences=-1 must be an integer in [0, 64]"),
    ("tinylora.probe_tokens=100000", "tinylora.probe_tokens=100000 must be an integer in [1, 4096]"),
    (
        "++actor_rollout_ref.tinylora.enable=false",
        "actor_rollout_ref.tinylora differs from the top-level tinylora: block",
    ),
    ("++actor_rollout_ref.tinylora.verify_sync=off", "actor_rollout_ref.tinylora.verify_sync='off' is not a"),
]


@pytest.mark.parametrize("override,needle", HOSTILE)
def test_hostile_tinylora_values_are_refused_before_any_worker(tmp_path, override, needle):
    res = _run(["-m", "tinylora_verl.main", override], cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / ".cache").exists()  # refused before the model or the task data were made


@pytest.mark.parametrize("override,needle", [*HOSTILE[::3], ("data.train_batch_size=3", "validate_config")])
def test_cfg_job_validates_and_refuses_an_invalid_config(tmp_path, override, needle):
    res = _run(["-m", "tinylora_verl.cli", "train", "--cfg", "job", override], cwd=tmp_path)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""  # nothing printed as if it were a valid config


def test_cfg_job_prints_a_valid_disabled_block(tmp_path):
    res = _run(["-m", "tinylora_verl.main", "--cfg", "job", "tinylora.enable=false"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r"^tinylora:\n  enable: false$", res.stdout, re.M)
    assert "validate_config" not in res.stdout  # verl's "checks passed" line kept out of the printed config


def test_run_config_is_what_workers_and_trainer_read():
    """One parser for the driver, the workers and the trainer: booleans are booleans everywhere."""
    from omegaconf import OmegaConf

    from tinylora_verl.run_config import RunConfigError, run_config_from, worker_run_config
    from tinylora_verl.verl_seam.trainer import TinyLoRATrainer

    assert run_config_from(None).adapter is None
    on = run_config_from(OmegaConf.create({"budget": 26, "verify_sync": True, "sync_mode": "vector"}))
    assert (on.adapter.budget, on.verify_sync, on.sync_mode) == (26, True, "vector")
    assert run_config_from({"enable": False, "budget": 13}).enabled is False
    for block, key in [
        ({"enable": "false"}, "enable"),
        ({"enable": "off"}, "enable"),
        ({"verify_sync": "no"}, "verify_sync"),
        ({"reproducible": 1}, "reproducible"),
    ]:
        with pytest.raises(RunConfigError, match=f"tinylora.{key}=.* is not a boolean"):
            worker_run_config(OmegaConf.create({"tinylora": block}))
    with pytest.raises(RunConfigError, match="sync_mode='delta'"):
        worker_run_config({"tinylora": {"sync_mode": "delta"}})
    with pytest.raises(
        RunConfigError, match=r"2 invalid tinylora settings:\n  - .*verify_sync=1.*\n  - .*alpha=nan"
    ):
        run_config_from({"verify_sync": 1, "alpha": float("nan")})
    # the trainer reads the block once, first thing in its constructor: 'off' is refused, not taken as true
    with pytest.raises(RunConfigError, match="verify_sync='off'"):
        TinyLoRATrainer(OmegaConf.create({"actor_rollout_ref": {"tinylora": {"verify_sync": "off"}}}))


def test_the_driver_hands_the_validated_block_to_the_workers():
    """`pin_run_config` writes the driver's RunConfig, every key explicit, where the workers read it, so an
    override of the top-level block reaches them as validated; `to_block` round-trips exactly."""
    from omegaconf import OmegaConf

    from tinylora_verl import TinyLoRAConfig
    from tinylora_verl.run_config import check_run_config, pin_run_config, run_config_from, worker_run_config

    cfg = OmegaConf.create(
        {
            "tinylora": {"budget": 26, "sync_mode": "vector", "probe_sequences": 2, "lora_alpha": 32},
            "actor_rollout_ref": {"tinylora": "${tinylora}", "rollout": {"n": 2}},
        }
    )
    run = check_run_config(cfg)
    pin_run_config(cfg, run)
    block = OmegaConf.to_container(cfg.actor_rollout_ref.tinylora)
    assert (
        block == run.to_block()
        and block["enable"] is True
        and block["svd_method"] == TinyLoRAConfig().svd_method
    )
    assert worker_run_config(cfg.actor_rollout_ref) == run == run_config_from(run.to_block())
    assert (run.adapter.budget, run.sync_mode, run.probe_sequences, run.adapter.lora_alpha) == (
        26,
        "vector",
        2,
        32,
    )
    off = run_config_from({"enable": False})
    assert run_config_from(off.to_block()) == off and off.to_block()["enable"] is False
    plain = OmegaConf.create({"actor_rollout_ref": {"rollout": {"n": 2}}})  # plain verl: left as it is
    pin_run_config(plain, check_run_config(plain))
    assert "tinylora" not in plain.actor_rollout_ref


@pytest.mark.parametrize("where", ["TINYLORA_CACHE", "task.dir"])
def test_a_file_where_a_directory_belongs_is_one_line_exit_2(tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    args = [sys.executable, "-m", "tinylora_verl.main"]
    if where == "TINYLORA_CACHE":
        env["TINYLORA_CACHE"] = str(blocker)
    else:  # a model path other than "smollm2" is used as given: only the task directory is in the way
        args += [f"task.dir={blocker}/arith", f"actor_rollout_ref.model.path={tmp_path}"]
    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    assert f"{blocker} is a file, not a directory" in res.stderr and "Traceback" not in res.stderr
    assert blocker.read_text() == "keep me"
