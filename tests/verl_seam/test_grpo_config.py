"""Our configs switch on verl's GRPO + PPO clip + token-level TIS, with the paper's values, and those
values produce the clipped / truncated loss when fed to verl's own functions.

The composed cpu_demo config is resolved, its values are passed to verl's `compute_rollout_correction_weights`
and `compute_policy_loss_vanilla` on hand-made tensors, and the results are checked against a float64
reference written out here. The test fails if clipping or the IS correction is switched off or mis-set
in our configs (a mutation check below shows the reference is sensitive to each).
"""

import math

import pytest
import torch

from tinylora_verl.config_compose import compose


@pytest.fixture(scope="module")
def cfg():
    return compose("cpu_demo", ["actor_rollout_ref.model.path=/nonexistent-model"])


def test_algorithm_keys(cfg):
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.actor_rollout_ref.rollout.calculate_log_probs is True
    assert cfg.algorithm.rollout_correction.rollout_is == "token"
    assert float(cfg.algorithm.rollout_correction.rollout_is_threshold) == 2.0
    assert cfg.algorithm.rollout_correction.bypass_mode is False
    assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == "vanilla"
    assert cfg.actor_rollout_ref.actor.use_kl_loss is False
    assert cfg.actor_rollout_ref.rollout.n > 1, "GRPO needs groups of more than one sample"


def _tensors():
    # [2, 6]: ratios spanning both clip edges, positive and negative advantages, one padded token
    old = torch.tensor(
        [[-1.0, -2.0, -0.5, -3.0, -1.5, -2.5], [-0.7, -1.2, -2.2, -0.9, -1.1, -4.0]], dtype=torch.float64
    )
    log_ratio = torch.tensor(
        [[0.0, 0.5, -0.5, 0.2, -0.1, 1.0], [0.3, -0.9, 0.05, 0.45, -0.3, 0.0]], dtype=torch.float64
    )  # new - old
    new = old + log_ratio
    rollout = old - torch.tensor(
        [[0.1, 1.2, -0.3, 0.8, 0.0, 0.9], [-0.2, 0.7, 2.0, 0.1, 0.69, 0.3]], dtype=torch.float64
    )  # old - rollout = the IS log ratio
    adv = torch.tensor([[1.0] * 6, [-1.0] * 6], dtype=torch.float64)
    mask = torch.ones(2, 6, dtype=torch.float64)
    mask[1, 5] = 0
    return old, new, rollout, adv, mask


def _reference(old, new, rollout, adv, mask, low, high, cap, dual_c=3.0):
    total, count = 0.0, 0.0
    for i in range(old.shape[0]):
        for j in range(old.shape[1]):
            if mask[i, j] == 0:
                continue
            r = math.exp(float(new[i, j] - old[i, j]))
            a = float(adv[i, j])
            loss = max(-a * r, -a * min(max(r, 1 - low), 1 + high))
            if a < 0:
                loss = min(loss, -a * dual_c)
            w = min(math.exp(float(old[i, j] - rollout[i, j])), cap)
            total += loss * w
            count += 1
    return total / count


def _verl_loss(cfg, old, new, rollout, adv, mask):
    from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla
    from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_weights
    from verl.workers.config import ActorConfig

    rc = cfg.algorithm.rollout_correction
    weights, _ = compute_rollout_correction_weights(
        log_ratio=old - rollout,
        response_mask=mask,
        rollout_is=rc.rollout_is,
        rollout_is_threshold=rc.rollout_is_threshold,
    )
    a = cfg.actor_rollout_ref.actor
    actor = ActorConfig(
        strategy="fsdp2",
        clip_ratio=a.clip_ratio,
        clip_ratio_low=a.clip_ratio_low,
        clip_ratio_high=a.clip_ratio_high,
        clip_ratio_c=a.clip_ratio_c,
        ppo_micro_batch_size_per_gpu=1,
        rollout_n=1,
    )
    loss, metrics = compute_policy_loss_vanilla(
        old, new, adv, mask, loss_agg_mode=a.loss_agg_mode, config=actor, rollout_is_weights=weights
    )
    return loss.item(), weights, metrics


def test_clip_and_tis_values_reach_verl(cfg):
    old, new, rollout, adv, mask = _tensors()
    got, weights, metrics = _verl_loss(cfg, old, new, rollout, adv, mask)
    want = _reference(old, new, rollout, adv, mask, low=0.2, high=0.4, cap=2.0)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert weights.max().item() == pytest.approx(2.0)  # the cap bit
    assert (weights[mask == 0] == 0).all()
    assert metrics["actor/pg_clipfrac"] > 0  # some tokens were clipped


def test_reference_sees_each_switch():
    """The reference value changes if clip or TIS were off: the test above can fail for each."""
    old, new, rollout, adv, mask = _tensors()
    base = _reference(old, new, rollout, adv, mask, 0.2, 0.4, 2.0)
    assert abs(base - _reference(old, new, rollout, adv, mask, 10.0, 10.0, 2.0)) > 1e-3  # no clip
    assert abs(base - _reference(old, new, rollout, adv, mask, 0.2, 0.2, 2.0)) > 1e-3  # symmetric clip
    assert abs(base - _reference(old, new, rollout, adv, mask, 0.2, 0.4, 1e9)) > 1e-3  # no truncation
    ones = old.clone()  # no IS at all: weight 1
    assert abs(base - _reference(old, new, ones, adv, mask, 0.2, 0.4, 2.0)) > 1e-3
