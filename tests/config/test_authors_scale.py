"""The authors' scale (docs/parity.md, "The authors' scale"): the paper presets and the sweep's learning-rate
grid give a TinyLoRA step the size it has in the authors' fork.

Theirs (jxmorris12/verl-lora, verl/utils/lora_utils.py, merged for vLLM):
    ΔW = (lora_alpha / r) Ũ (Σᵢ vᵢ P'ᵢ / √u) diag(S) Ṽᵀ,    P'ᵢ ~ N(0, 1)
ours (tinylora_verl/adapter/functional.py):
    ΔW = scale Ũ diag(S) (Σᵢ vᵢ Pᵢ) Ṽᵀ,                      Pᵢ ~ N(0, 1/r),  scale = TinyLoRAConfig.scale(u)
(Ũ, S, Ṽ: W's top-r SVD). Both are linear in v, with E_P ||ΔW||_F² = (scale · std(P) per unit vᵢ)² r ||v||² ||S||²,
and AdamW moves each vᵢ by about lr per step whatever the gradient's scale, so a step's size in W is fixed by
    lr × scale × std(P)          (theirs: lr × lora_alpha / r × 1 / √u)
which the tests below compare with the authors' values, written out here from their files.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.config.test_presets import _compose
from tests.helpers import qwen_module_names
from tinylora_verl.adapter import TinyLoRAConfig
from tinylora_verl.adapter.functional import delta_weight, random_projections
from tinylora_verl.adapter.planner import plan_tying

# single-digit multiplication has 64 problems: the split must fit them
MUL_TASK = {"kind": "arithmetic", "op": "mul", "n_train": 32, "n_val": 16, "n_test": 16}

# ---- The authors' values: github.com/jxmorris12/verl-lora at this commit (docs/parity.md quotes the lines) ----
AUTHORS_COMMIT = "c5b65fc276d36cc726a502e95327ff821b7ab7ad"
# `actor_rollout_ref.model.lora_alpha=32` in every LoRA-XS command of theirs: gsm8k_{1,2,4,8}gpu_example.sh,
# math_1gpu_example__no_ray.sh:218, math_2gpu_example__no_ray.sh:219, math_test_command.sh. peft turns it into
# scaling = lora_alpha / r (peft/tuners/lora/layer.py; their LoraConfig, verl/workers/fsdp_workers.py:438-446,
# leaves use_rslora False).
AUTHORS_LORA_ALPHA = 32
# r: their lora_rank, both peft's r and the SVD rank (fsdp_workers.py:440, 466); the paper's TinyLoRA uses r = 2.
AUTHORS_R = 2
# u: their lora_rank_trainable, RandomLinear's r_trainable (lora_utils.py:393); 13 parameters = 13 groups x u = 1.
AUTHORS_U = 1
# std of P'ᵢ's entries: `torch.randn(r_trainable, r, r)` (lora_utils.py:28); M = Σ vᵢ P'ᵢ / √u (lora_utils.py:33).
AUTHORS_P_STD = 1.0
# learning rates as written: gsm8k_8gpu_example.sh `actor_rollout_ref.actor.optim.lr=1e-05`;
# math_2gpu_example__no_ray.sh:29 `LEARNING_RATE=2e-5`.
AUTHORS_LR = {"gsm8k_paper": 1e-5, "math_paper": 2e-5}
# the grid they swept (paper; docs/paper.md), each value as written in their commands.
AUTHORS_LR_GRID = [1e-7, 5e-7, 1e-6, 5e-6, 1e-5, 1e-4, 2e-4]


def authors_step(
    lr: float, u: int = AUTHORS_U, r: int = AUTHORS_R, lora_alpha: float = AUTHORS_LORA_ALPHA
) -> float:
    """lr × their scale × the std a unit of vᵢ puts into each entry of M."""
    return lr * (lora_alpha / r) * AUTHORS_P_STD / math.sqrt(u)


def our_p_std(r: int) -> float:
    """random_projections draws N(0, 1/r) (checked against its output below)."""
    return 1 / math.sqrt(r)


def our_step(tl: TinyLoRAConfig, u: int, lr: float) -> float:
    return lr * tl.scale(u) * our_p_std(tl.frozen_rank)


def _rel(a: float, b: float) -> float:
    return abs(a / b - 1)


@pytest.fixture(scope="module")
def presets():
    from tinylora_verl.run_config import run_config_from

    out = {}
    for preset in AUTHORS_LR:
        cfg, _ = _compose(f"experiment/{preset}", [])
        out[preset] = (cfg, run_config_from(cfg.tinylora).adapter)
    return out


@pytest.mark.parametrize("preset", sorted(AUTHORS_LR))
def test_preset_step_is_the_authors(presets, preset):
    cfg, tl = presets[preset]
    plan = plan_tying(qwen_module_names(28), tie_mode=tl.tie_mode, budget=tl.budget)
    assert (plan.projection_dim, tl.frozen_rank) == (AUTHORS_U, AUTHORS_R)
    lr = cfg.actor_rollout_ref.actor.optim.lr
    assert lr == AUTHORS_LR[preset], "the presets keep the authors' learning rate as written"
    assert _rel(our_step(tl, plan.projection_dim, lr), authors_step(AUTHORS_LR[preset])) < 1e-6
    # what it is in numbers: 32 / sqrt(2) = 22.63 per module; the paper's formula (scale 1) is 22.63x smaller
    assert tl.scale(1) == pytest.approx(22.627417, rel=1e-6)
    paper = TinyLoRAConfig(**{**tl.to_dict(), "lora_alpha": None})
    assert our_step(tl, 1, lr) / our_step(paper, 1, lr) == pytest.approx(
        AUTHORS_LORA_ALPHA / math.sqrt(2), rel=1e-12
    )


def test_our_projections_have_the_std_the_product_assumes(presets):
    """P's entries are N(0, 1/r) (std 0.707 at r = 2), not the authors' N(0, 1): the √r the mapping folds in."""
    _, tl = presets["gsm8k_paper"]
    names = qwen_module_names(28)
    preset_P = torch.cat([random_projections(n, tl.seed, 1, tl.frozen_rank).flatten() for n in names])  # 784
    assert _rel(preset_P.std().item(), our_p_std(2)) < 0.1
    big = torch.cat(
        [random_projections(n, 0, 64, r).flatten() * math.sqrt(r) for n in names[:20] for r in (2, 3)]
    )
    assert _rel(big.std().item(), 1.0) < 0.02 and abs(big.mean().item()) < 0.02


@pytest.mark.parametrize("r,u", [(2, 1), (2, 4), (3, 5)])
def test_the_mapping_equalizes_the_expected_frobenius_norm(r, u):
    """Monte Carlo over P of ||ΔW||_F² for one v: the authors' formula as their code computes it for vLLM
    (lora_utils.py:134-141: scaling · B M A, B = Ũ, A = diag(S) Ṽᵀ) against ours with lora_alpha = 32;
    both match E = scale² r std(P)² ||v||² ||S||² (ours: scale² ||v||² ||S||²)."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(12, 10, generator=g, dtype=torch.float64)
    Uf, Sf, Vhf = torch.linalg.svd(W, full_matrices=False)
    U, S, V = Uf[:, :r], Sf[:r], Vhf[:r].T
    v = torch.randn(u, generator=g, dtype=torch.float64)
    n = 20000
    theirs_P = torch.randn(n, u, r, r, generator=g, dtype=torch.float64)
    M = torch.einsum("u,nurs->nrs", v, theirs_P) / math.sqrt(u)
    theirs = (AUTHORS_LORA_ALPHA / r) * torch.einsum("or,nrs,s,is->noi", U, M, S, V)
    tl = TinyLoRAConfig(budget=None, projection_dim=u, frozen_rank=r, lora_alpha=AUTHORS_LORA_ALPHA)
    ours_P = torch.randn(n, u, r, r, generator=g, dtype=torch.float64) * our_p_std(r)
    ours = torch.stack([delta_weight(U, S, V, ours_P[k], v, tl.scale(u)) for k in range(0, n, 10)])
    e_theirs = theirs.pow(2).sum((1, 2)).mean().item()
    e_ours = ours.pow(2).sum((1, 2)).mean().item()
    analytic = tl.scale(u) ** 2 * v.pow(2).sum().item() * S.pow(2).sum().item()
    assert _rel(e_theirs, analytic) < 0.04 and _rel(e_ours, analytic) < 0.08
    assert (
        _rel(analytic, (AUTHORS_LORA_ALPHA / r) ** 2 * r / u * v.pow(2).sum().item() * S.pow(2).sum().item())
        < 1e-12
    )


def test_sweep_lr_grid_is_in_the_authors_scale():
    """The sweep's default grid is the authors' LRs as written, and every TinyLoRA run it makes (RL through
    Hydra, SFT through SFTConfig) gets the authors' scale for its own u."""
    from tinylora_verl.experiments import rl
    from tinylora_verl.experiments.spec import expand, run_settings, sft_config, validate
    from tinylora_verl.run_config import run_config_from

    spec = validate({"model": "smollm2", "task": MUL_TASK})
    assert spec["lrs"] == AUTHORS_LR_GRID and spec["tinylora"]["lora_alpha"] == AUTHORS_LORA_ALPHA
    files = {"train": "/d/train.parquet", "val": "/d/val.parquet", "tests": {}}
    names = qwen_module_names(30)  # SmolLM2-135M, the CPU demo's model
    checked = set()
    for run in expand(spec):
        if run.kind != "tinylora" or (run.method, run.budget) in checked:
            continue
        checked.add((run.method, run.budget))
        settings = run_settings(spec, run, files)
        if run.method == "rl":
            ov = rl.overrides(settings, "/runs/x")
            cfg, _ = _compose(ov[0].removeprefix("--config-name="), ov[1:])
            tl = run_config_from(cfg.tinylora).adapter
        else:
            sft = sft_config(settings)
            tl = TinyLoRAConfig(
                budget=sft.budget,
                frozen_rank=sft.frozen_rank,
                tie_mode=sft.tie_mode,
                lora_alpha=sft.tinylora_lora_alpha,
            )
        u = plan_tying(names, tie_mode=tl.tie_mode, budget=tl.budget).projection_dim
        for lr in spec["lrs"]:
            assert _rel(our_step(tl, u, lr), authors_step(lr, u=u)) < 1e-6, (run, u, lr)
    assert checked == {(m, b) for m in ("rl", "sft") for b in (1, 13, 120, 1000, 10000)}


def test_sweep_with_lora_alpha_null_is_the_papers_formula_and_keeps_old_settings():
    """`tinylora.lora_alpha: null`: scale 1, and the run's settings are those recorded before the key existed
    (so a sweep directory from before the key existed, e.g. the CPU-scale ones in docs/results, resumes)."""
    from tinylora_verl.experiments import rl
    from tinylora_verl.experiments.spec import Run, run_settings, sft_config, validate
    from tinylora_verl.run_config import run_config_from

    spec = validate(
        {
            "model": "smollm2",
            "task": MUL_TASK,
            "lrs": [0.03],
            "tinylora": {"lora_alpha": None},
        }
    )
    files = {"train": "/d/train.parquet", "val": "/d/val.parquet", "tests": {}}
    settings = run_settings(spec, Run("rl", "tinylora", 13, 0.03, 0), files)
    assert settings["tinylora"] == {"tie_mode": "tiled", "frozen_rank": 2}
    ov = rl.overrides(settings, "/runs/x")
    assert "tinylora.lora_alpha=null" in ov
    tl = run_config_from(_compose("cpu_demo", ov[1:])[0].tinylora).adapter
    assert tl.lora_alpha is None and tl.scale(1) == 1.0
    assert (
        sft_config(run_settings(spec, Run("sft", "tinylora", 13, 0.03, 0), files)).tinylora_lora_alpha is None
    )
    with pytest.raises(ValueError, match="tinylora.lora_alpha"):
        validate({"model": "m", "task": {"kind": "arithmetic", "op": "mul"}, "tinylora": {"lora_alpha": 0}})
