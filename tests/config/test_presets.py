"""Every shipped Hydra config composes offline (no GPU, no model download), passes verl's own
`validate_config`, and the paper presets equal the authors' settings row for row (docs/parity.md).

The set of configs is read from disk: a new primary config or group option under config/ that no case
composes fails `test_every_config_file_is_composed`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from tests.helpers import REPO, qwen_module_names
from tinylora_verl.adapter.svd import SVD_METHODS
from tinylora_verl.main import CONFIG_DIR

CONFIG = Path(CONFIG_DIR)
PARITY = REPO / "docs" / "parity.md"
PERFORMANCE_SVD = REPO / "docs" / "performance_svd.md"
PRESETS = sorted(p.stem for p in (CONFIG / "experiment").glob("*.yaml"))
ENV = {"TINYLORA_DATA": "/data", "TINYLORA_RUNS": "/runs"}

# (config name, overrides): the demo with its CPU platform and each reward option; every preset on
# verl's GPU defaults and with the CPU platform (a smoke-test set-up).
CASES = [("cpu_demo", []), ("cpu_demo", ["reward=gsm8k"]), ("cpu_demo", ["reward=math"])]
CASES += [(f"experiment/{p}", extra) for p in PRESETS for extra in ([], ["platform=cpu"])]
# the precision group (config/precision/): fp32 on the CPU demo (bf16 by default), bf16 on a preset's CPU
# smoke test (fp32 by default), fp32 on GPU
CASES += [("cpu_demo", ["precision=fp32"]), (f"experiment/{PRESETS[0]}", ["platform=cpu", "precision=bf16"])]
CASES += [(f"experiment/{PRESETS[0]}", ["precision=fp32"])]

# The authors' settings (docs/paper.md) that docs/parity.md must have a row for, per preset (deleting a row fails).
REQUIRED = {
    "data.train_files",
    "data.val_files",
    "data.train_batch_size",
    "data.max_prompt_length",
    "data.max_response_length",
    "actor_rollout_ref.model.path",
    "actor_rollout_ref.rollout.n",
    "actor_rollout_ref.actor.ppo_mini_batch_size",
    "trainer.total_epochs",
    "algorithm.adv_estimator",
    "actor_rollout_ref.actor.use_kl_loss",
    "algorithm.use_kl_in_reward",
    "actor_rollout_ref.actor.entropy_coeff",
    "actor_rollout_ref.actor.clip_ratio_low",
    "actor_rollout_ref.actor.clip_ratio_high",
    "algorithm.rollout_correction.rollout_is",
    "algorithm.rollout_correction.rollout_is_threshold",
    "actor_rollout_ref.rollout.calculate_log_probs",
    "actor_rollout_ref.actor.optim.lr",
    "reward.custom_reward_function.path",
    "tinylora.budget",
    "tinylora.frozen_rank",
    "tinylora.tie_mode",
    "tinylora.lora_alpha",
}
REQUIRED_BY_PRESET = {
    "gsm8k_paper": REQUIRED
    | {
        "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio",
        "actor_rollout_ref.rollout.val_kwargs.temperature",
    },
    "math_paper": REQUIRED | {"actor_rollout_ref.actor.kl_loss_coef", "actor_rollout_ref.actor.kl_loss_type"},
}
HEADER = ["preset", "setting", "authors' key", "our key", "value"]


def _compose(name: str, overrides: list[str]):
    """(resolved config without the hydra node, the group choices Hydra made)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ENV.items():
            mp.setenv(k, v)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
        choices = dict(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        OmegaConf.resolve(cfg)
    return cfg, choices


@pytest.fixture(scope="module")
def composed():
    return {(name, tuple(ov)): _compose(name, ov) for name, ov in CASES}


def parity_rows(text: str) -> list[dict]:
    """Rows of every Markdown table in `text` whose header is HEADER."""
    rows, in_table = [], False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells == HEADER:
            in_table = True
        elif cells is None:
            in_table = False
        elif in_table and not set("".join(cells)) <= set("-: "):
            rows.append(dict(zip(HEADER, cells)))
    return rows


def _code(cell: str) -> str:
    m = re.fullmatch(r"`([^`]+)`", cell)
    assert m, f"docs/parity.md: expected a `code` cell, got {cell!r}"
    return m.group(1)


ROWS = parity_rows(PARITY.read_text())


def test_every_config_file_is_composed(composed):
    on_disk = {str(p.relative_to(CONFIG).with_suffix("")) for p in CONFIG.rglob("*.yaml")}
    used = {name for name, _ in CASES}
    for _, choices in composed.values():
        used |= {
            f"{group}/{opt}"
            for group, opt in choices.items()
            if group in ("platform", "reward", "precision")
            and opt is not None
            and (CONFIG / group / f"{opt}.yaml").exists()
        }
    assert on_disk == used, f"configs never composed: {sorted(on_disk - used)}"


@pytest.mark.parametrize("name,overrides", CASES, ids=[" ".join([n, *o]) for n, o in CASES])
def test_composes_and_passes_verl_validation(composed, name, overrides, capsys):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from tinylora_verl.run_config import run_config_from

    cfg, choices = composed[(name, tuple(overrides))]
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    assert "All configuration checks passed" in capsys.readouterr().out
    assert (
        run_config_from(cfg.actor_rollout_ref.tinylora).adapter
        == run_config_from(cfg.tinylora).adapter
        is not None
    )
    assert cfg.trainer.v1.trainer_mode == "tinylora_sync"
    on_cpu = choices.get("platform") == "cpu"
    assert cfg.trainer.device == ("cpu" if on_cpu else "cuda")
    # float32 on the CPU platform unless precision=bf16; bf16 (verl's GPU defaults) unless precision=fp32
    bf16 = choices.get("precision") == "bf16" or (not on_cpu and choices.get("precision") != "fp32")
    assert cfg.actor_rollout_ref.rollout.dtype == ("bfloat16" if bf16 else "float32")
    if choices.get("precision") or on_cpu:  # verl's own defaults are not in our files
        mp = cfg.actor_rollout_ref.actor.fsdp_config.mixed_precision
        assert (mp.param_dtype, mp.reduce_dtype) == ("bf16" if bf16 else "fp32", "fp32")
    if on_cpu:
        assert cfg.ray_kwargs.ray_init.num_gpus == cfg.trainer.n_gpus_per_node
    else:  # no CPU-only caps
        assert cfg.actor_rollout_ref.rollout.get("engine_kwargs", {}).get("vllm", {}) == {}
    assert cfg.actor_rollout_ref.rollout.name == "vllm"
    assert cfg.actor_rollout_ref.actor.strategy == "fsdp2"
    reward = cfg.reward.custom_reward_function
    if reward.path.startswith("pkg://"):
        module = importlib.import_module(reward.path.removeprefix("pkg://"))
        assert callable(getattr(module, reward.name))
    else:
        assert Path(reward.path).is_file(), reward.path


def test_the_cpu_demo_runs_in_bf16_by_default(composed):
    """The demo's default precision is bf16 (docs/demo.md "bf16 and float32"); precision=fp32 undoes it."""
    cfg, choices = composed[("cpu_demo", ())]
    assert choices["precision"] == "bf16"
    assert cfg.actor_rollout_ref.rollout.dtype == "bfloat16"
    assert cfg.actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype == "bf16"
    cfg, _ = composed[("cpu_demo", ("precision=fp32",))]
    assert cfg.actor_rollout_ref.rollout.dtype == "float32"
    assert cfg.actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype == "fp32"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_is_gpu_and_points_at_prepared_data(composed, preset):
    from tinylora_verl.data.datasets import DATASETS

    cfg, choices = composed[(f"experiment/{preset}", ())]
    assert choices.get("platform") is None, "a paper preset must not include the CPU platform by default"
    assert "task" not in cfg, "the CPU demo's task generator must not run for a paper preset"
    train, val = Path(cfg.data.train_files), Path(cfg.data.val_files)
    assert train.parent == val.parent and train.parent.parent == Path(ENV["TINYLORA_DATA"])
    dataset = train.parent.name  # the directory `tinylora-verl prepare <dataset> --out` writes into
    assert dataset in DATASETS, (
        f"{preset}: data dir {dataset!r} is not a dataset `tinylora-verl prepare` knows"
    )
    assert {train.stem, val.stem} <= set(DATASETS[dataset].splits)
    assert cfg.reward.custom_reward_function.path == f"pkg://reward_fns.{DATASETS[dataset].reward}"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_budget_is_13_on_qwen25_7b(composed, preset):
    """28 layers x 7 projections = 196 modules -> tiled tie 16 -> 13 groups x u=1 (the presets' comment)."""
    from tinylora_verl.adapter.planner import plan_tying
    from tinylora_verl.run_config import run_config_from

    tl = run_config_from(composed[(f"experiment/{preset}", ())][0].tinylora).adapter
    plan = plan_tying(qwen_module_names(28), tie_mode=tl.tie_mode, budget=tl.budget)
    assert (plan.num_trainable, plan.projection_dim, plan.tie_factor, plan.exact) == (13, 1, 16, True)
    assert tl.frozen_rank == 2 and tl.alpha == 1.0


def documented_svd_projection_s() -> float:
    """The largest one-thread 28-layer projection in docs/performance_svd.md's first figures table
    (`bench/svd_time.py`: rank 0's factors for all 196 Qwen2.5-7B modules, per SVD method). One thread is
    what a verl GPU worker gets from Ray (OMP_NUM_THREADS=1 in actors that reserve no CPU)."""
    lines = PERFORMANCE_SVD.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method | threads |"))
    head = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    col = next(i for i, c in enumerate(head) if c.startswith("x28 layers"))
    values = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[head.index("threads")] == "1":
            values.append(float(cells[col].replace(",", "")))
    assert len(values) == len(SVD_METHODS), (
        "docs/performance_svd.md: want a one-thread row per SVD method in the first table"
    )
    return max(values)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_timeout_covers_rank0_svd(composed, preset):
    """Rank 0 computes every factor while the other ranks wait in a collective: the process group's timeout
    (actor_rollout_ref.nccl_timeout, applied by our worker) must exceed the documented projection of the
    slowest SVD setting with a 2x margin."""
    cfg, _ = composed[(f"experiment/{preset}", ())]
    projection = documented_svd_projection_s()
    assert cfg.actor_rollout_ref.nccl_timeout >= 2 * projection, (
        cfg.actor_rollout_ref.nccl_timeout,
        projection,
    )


def test_parity_table_covers_every_preset_and_section1_setting():
    assert len(ROWS) > 40, "docs/parity.md: the parity tables were not found (header changed?)"
    assert {r["preset"] for r in ROWS} == set(PRESETS)
    for preset, required in REQUIRED_BY_PRESET.items():
        keys = [_code(r["our key"]) for r in ROWS if r["preset"] == preset]
        assert len(keys) == len(set(keys)), f"{preset}: a key has two rows"
        assert not required - set(keys), f"{preset}: no parity row for {sorted(required - set(keys))}"


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['preset']}:{r['our key'].strip('`')}" for r in ROWS])
def test_parity_row_matches_resolved_config(composed, row):
    cfg, _ = composed[(f"experiment/{row['preset']}", ())]
    key, want = _code(row["our key"]), yaml.safe_load(_code(row["value"]))
    got = OmegaConf.select(cfg, key, default="<missing>")
    same = got is want if isinstance(got, bool) or isinstance(want, bool) else got == want  # 1 is not true
    assert same, f"{row['preset']}: {key} = {got!r}, docs/parity.md says {want!r}"


def test_parity_parser_reads_values_as_yaml():
    """The parser is not vacuous: a doctored table yields the doctored row and value type."""
    text = "\n".join(
        [
            "| " + " | ".join(HEADER) + " |",
            "|---|---|---|---|---|",
            "| gsm8k_paper | lr | `x` | `actor_rollout_ref.actor.optim.lr` | `2.0e-5` |",
            "",
            "| a | b |",
        ]
    )
    rows = parity_rows(text)
    assert len(rows) == 1 and yaml.safe_load(_code(rows[0]["value"])) == 2e-5


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_as_add_on_is_refused(preset):
    """`+experiment=NAME` on the CPU demo would mix the demo's platform and task into a GPU run; Hydra
    refuses it (the preset's empty /platform and /precision defaults clash with the demo's `platform: cpu`
    and `precision: bf16`)."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="Multiple values for (platform|precision)"):
        _compose("cpu_demo", [f"+experiment={preset}"])
