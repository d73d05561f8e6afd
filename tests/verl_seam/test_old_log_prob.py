"""π_old from the update's forward (verl_seam/old_log_prob.py) against verl's recompute path.

The loss and its gradient must equal what verl computes with its separate old-log-prob pass and the
driver's rollout correction, bit for bit, on one mini-batch; the gradient must match a float64 formula
written out here (token-mean PPO at ratio 1: -A·w/N per valid token, w the truncated IS weight); and the
switch must only take the update's log-probs where verl's pass is exactly redundant.
"""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

from tinylora_verl.errors import InvalidValue
from tinylora_verl.verl_seam import old_log_prob as olp

THRESHOLD = 2.0
VOCAB = 11


def _nested(rows):
    return torch.nested.as_nested_tensor(list(rows), layout=torch.jagged)


def _policy_log_probs(theta, logits, tokens):
    """log π_θ(token_{t+1} | ≤t) at every position of every sequence (the engine's layout: one value per
    input position, the last one unused), as one nested tensor; depends on θ through the logits."""
    rows = []
    for lg, tok in zip(logits, tokens, strict=True):
        lp = torch.log_softmax(lg + theta, dim=-1)  # (len, vocab)
        nxt = torch.cat([tok[1:], tok[:1]])  # position t scores token t+1 (last position: unused)
        rows.append(lp.gather(-1, nxt[:, None]).squeeze(-1))
    return _nested(rows)


@pytest.fixture(scope="module")
def actor_config():
    from verl.utils.config import omega_conf_to_dataclass

    from tinylora_verl.config_compose import compose

    return omega_conf_to_dataclass(compose().actor_rollout_ref.actor)  # the demo's: vanilla PPO, token-mean


def _batch(seed: int = 0):
    """Six sequences with prompt and response lengths that differ, rollout log-probs off the policy's by
    amounts that make some IS weights < 1, some > 1 and some truncated at THRESHOLD."""
    g = torch.Generator().manual_seed(seed)
    prompt_lens, response_lens = [3, 5, 4, 6, 3, 4], [4, 2, 7, 5, 3, 6]
    tokens = [torch.randint(0, VOCAB, (p + r,), generator=g) for p, r in zip(prompt_lens, response_lens)]
    logits = [torch.randn(len(t), VOCAB, generator=g, dtype=torch.float32) for t in tokens]
    theta = torch.zeros(VOCAB)
    with torch.no_grad():
        current = _policy_log_probs(theta, logits, tokens)
    rollout, adv = [], []
    for i, (p, r) in enumerate(zip(prompt_lens, response_lens)):
        resp = current[i][p - 1 : p + r - 1]  # the response tokens' log-probs (left-shifted by one)
        rollout.append(resp - torch.randn(r, generator=g) * 1.2)  # exp(±2.4 σ): weights far on both sides
        adv.append(torch.full((r,), float(torch.randn((), generator=g))))
    data = TensorDict(
        {
            "prompts": _nested([t[:p] for t, p in zip(tokens, prompt_lens)]),
            "responses": _nested([t[p:] for t, p in zip(tokens, prompt_lens)]),
            "response_mask": _nested([torch.ones(r, dtype=torch.int64) for r in response_lens]),
            "advantages": _nested(adv),
            "rollout_log_probs": _nested(rollout),
        },
        batch_size=[len(tokens)],
    )
    n_tokens = sum(response_lens)
    from verl.utils import tensordict_utils as tu

    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=n_tokens, global_batch_size=len(tokens))
    return data, logits, tokens


def _padded(data, key):
    return data.select(key).to_padded_tensor()[key]


def _recompute_path(config, data, logits, tokens, rollout_is):
    """verl as it runs without us: old_log_probs from a separate no-grad forward, the driver's rollout
    correction on the padded batch (trainer_base._compute_advantage), then ppo_loss on the update's forward."""
    from verl import DataProto
    from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
    from verl.workers.utils.losses import ppo_loss
    from verl.workers.utils.padding import no_padding_2_padding, response_to_nested

    theta = torch.zeros(VOCAB, requires_grad=True)
    with torch.no_grad():
        old = no_padding_2_padding(_policy_log_probs(theta, logits, tokens), data)
    batch = DataProto.from_dict(
        {
            "old_log_probs": old,
            "rollout_log_probs": _padded(data, "rollout_log_probs"),
            "response_mask": _padded(data, "response_mask"),
        }
    )
    corr = OmegaConf.create({"rollout_is": rollout_is, "rollout_is_threshold": THRESHOLD})
    batch, metrics = compute_rollout_correction_and_add_to_batch(batch, corr)
    data = data.copy()
    data["old_log_probs"] = response_to_nested(old, data["response_mask"])
    data["rollout_is_weights"] = response_to_nested(batch.batch["rollout_is_weights"], data["response_mask"])
    loss, _ = ppo_loss(config, {"log_probs": _policy_log_probs(theta, logits, tokens)}, data)
    (grad,) = torch.autograd.grad(loss, theta)
    return loss.detach(), grad, metrics


def _from_update_path(config, data, logits, tokens, rollout_is, log_probs=None):
    """Ours: old_log_probs hold the rollout's (the driver's placeholder), IS weights the driver computed
    from it (all 1), and the trainer's settings in the batch."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import response_to_nested

    data = data.copy()
    data["old_log_probs"] = data["rollout_log_probs"]
    data["rollout_is_weights"] = response_to_nested(
        torch.ones_like(_padded(data, "rollout_log_probs")), data["response_mask"]
    )
    tu.assign_non_tensor(
        data, **{olp.EXTRA_INFO_KEY: {"rollout_is": rollout_is, "rollout_is_threshold": THRESHOLD}}
    )
    theta = torch.zeros(VOCAB, requires_grad=True)
    lp = _policy_log_probs(theta, logits, tokens) if log_probs is None else log_probs
    loss, metrics = olp.ppo_loss_old_from_update(config, {"log_probs": lp}, data, required=True)
    return loss, theta, metrics


@pytest.mark.parametrize("rollout_is", ["token", "sequence"])
def test_loss_and_gradient_equal_verls_recompute_path(actor_config, rollout_is):
    data, logits, tokens = _batch()
    loss_a, grad_a, driver_metrics = _recompute_path(actor_config, data, logits, tokens, rollout_is)
    loss_b, theta, metrics = _from_update_path(actor_config, data, logits, tokens, rollout_is)
    (grad_b,) = torch.autograd.grad(loss_b, theta)
    assert torch.equal(loss_a, loss_b.detach()) and torch.equal(grad_a, grad_b)
    assert grad_a.abs().sum() > 0
    # one micro-batch = the whole batch: the loss's IS metrics are the driver's
    weights = driver_metrics["rollout_corr/rollout_is_mean"]
    assert metrics["rollout_corr/rollout_is_mean"].aggregate() == pytest.approx(weights, rel=1e-6)
    assert 0 < driver_metrics["rollout_corr/rollout_is_ratio_fraction_high"] < 1  # truncation is exercised
    assert metrics["rollout_corr/rollout_is_max"].aggregation.value == "max"
    assert metrics["training/rollout_probs_diff_max"].aggregation.value == "max"


def test_ignoring_the_is_weights_would_change_the_gradient(actor_config):
    """The equality above is not vacuous: without the truncated IS weights (verl's bypass estimator
    would clip against π_rollout instead) the gradient differs."""
    data, logits, tokens = _batch()
    _, grad_a, _ = _recompute_path(actor_config, data, logits, tokens, "token")
    loss_b, theta, _ = _from_update_path(actor_config, data, logits, tokens, None)
    (grad_b,) = torch.autograd.grad(loss_b, theta)
    assert not torch.allclose(grad_a, grad_b, rtol=1e-3)


@pytest.mark.parametrize("rollout_is", ["token", "sequence"])
def test_gradient_matches_a_float64_formula(actor_config, rollout_is):
    """d loss / d log π(token) = -A · w / N on every response token: the PPO ratio is exactly 1 at π_old =
    π_θ (no clipping), w = min(π_old/π_rollout, c) per token or exp(Σ_t log-ratio) per sequence, N = the
    mini-batch's response tokens (token-mean)."""
    data, logits, tokens = _batch(seed=1)
    theta = torch.zeros(VOCAB)
    values = _policy_log_probs(theta, logits, tokens).values().clone().requires_grad_(True)
    offsets = torch.tensor([0] + [len(t) for t in tokens]).cumsum(0)
    lp = torch.nested.nested_tensor_from_jagged(values, offsets)
    loss, _, _ = _from_update_path(actor_config, data, logits, tokens, rollout_is, log_probs=lp)
    (grad,) = torch.autograd.grad(loss, values)

    expected = torch.zeros(len(values), dtype=torch.float64)
    n_tokens = sum(len(r) for r in data["responses"].unbind())
    for i in range(len(tokens)):
        p, r = len(data["prompts"][i]), len(data["responses"][i])
        start = int(offsets[i]) + p - 1  # position p-1 scores the first response token
        old = values.detach()[start : start + r].double()
        rollout = data["rollout_log_probs"][i].double()
        adv = data["advantages"][i].double()
        if rollout_is == "token":
            w = torch.exp(old - rollout).clamp(max=THRESHOLD)
        else:
            w = torch.full_like(old, min(math.exp(float((old - rollout).sum())), THRESHOLD))
        expected[start : start + r] = -adv * w / n_tokens
    assert torch.allclose(grad.double(), expected, rtol=1e-5, atol=1e-9)
    assert (expected != 0).sum() == n_tokens


def test_without_the_trainers_settings(actor_config):
    """No settings in the batch: verl's ppo_loss itself, or an error where the run chose `update`."""
    from verl.workers.utils.losses import ppo_loss
    from verl.workers.utils.padding import response_to_nested

    data, logits, tokens = _batch()
    data["old_log_probs"] = data["rollout_log_probs"]
    data["rollout_is_weights"] = response_to_nested(
        torch.ones_like(_padded(data, "rollout_log_probs")), data["response_mask"]
    )
    out = {"log_probs": _policy_log_probs(torch.zeros(VOCAB), logits, tokens)}
    loss, _ = olp.ppo_loss_old_from_update(actor_config, out, data)
    assert torch.equal(loss, ppo_loss(actor_config, out, data)[0])
    with pytest.raises(RuntimeError, match="tinylora_sync"):
        olp.ppo_loss_old_from_update(actor_config, out, data, required=True)


def _demo(*overrides):
    from tinylora_verl.config_compose import compose

    return compose(overrides=list(overrides))


def test_redundant_only_where_verls_pass_computes_the_same_numbers():
    assert olp.redundancy_problems(_demo()) == []  # one epoch, one mini-batch of 16 prompts
    for override, words in [
        ("actor_rollout_ref.actor.ppo_epochs=2", "ppo_epochs=2"),
        ("actor_rollout_ref.actor.ppo_mini_batch_size=8", "ppo_mini_batch_size=8 < 16"),
        ("algorithm.use_kl_in_reward=true", "use_kl_in_reward"),
        ("algorithm.adv_estimator=optimal_token_baseline", "adv_estimator=optimal_token_baseline"),
        ("actor_rollout_ref.rollout.calculate_log_probs=false", "calculate_log_probs=false"),
        ("algorithm.rollout_correction.bypass_mode=true", "bypass_mode=true"),
        ("++algorithm.rollout_correction.rollout_rs=token_k1", "rollout_rs"),
        ("algorithm.rollout_correction.rollout_is_batch_normalize=true", "batch_normalize"),
    ]:
        cfg = _demo(override)
        problems = olp.redundancy_problems(cfg)
        assert len(problems) == 1 and words in problems[0], (override, problems)
        assert olp.takes_old_from_update("auto", cfg) is False
        with pytest.raises(InvalidValue, match="old_log_prob=update.*not redundant"):
            olp.takes_old_from_update("update", cfg)
    assert olp.takes_old_from_update("auto", _demo()) is True
    assert olp.takes_old_from_update("recompute", _demo()) is False
    with pytest.raises(InvalidValue, match="old_log_prob='fused'"):
        olp.takes_old_from_update("fused", _demo())


def test_the_driver_pins_the_decision(tmp_path):
    """`auto` reaches the workers resolved; `update` where the pass is not redundant is one line, exit 2."""
    from tinylora_verl.main import check_tinylora

    assert check_tinylora(_demo()).old_log_prob == "update"
    assert check_tinylora(_demo("actor_rollout_ref.actor.ppo_epochs=2")).old_log_prob == "recompute"
    with pytest.raises(SystemExit) as err:
        check_tinylora(_demo("tinylora.old_log_prob=update", "actor_rollout_ref.actor.ppo_epochs=2"))
    assert err.value.code == 2
