"""π_old from the update's own forward, where verl's separate old-log-prob pass is exactly redundant.

verl computes π_old ("old_log_probs") in a forward pass of its own before the update
(`trainer_base._compute_old_log_prob`), so that several gradient steps on one batch (mini-batches,
epochs) all clip against one fixed policy and the truncated-IS weight π_old/π_rollout is fixed too. With
one PPO epoch over a single mini-batch there is one gradient step, taken at the very weights that pass
used: π_old *is* the update's own log-probs. The pass then costs a forward over the whole batch for
numbers the update computes anyway.

`tinylora.old_log_prob` chooses (`auto`, the default, takes `update` exactly where `redundancy_problems`
finds nothing, else `recompute`):

* `recompute`: verl's pass, unchanged.
* `update`: no pass. The driver stores the rollout's log-probs under `old_log_probs` (the data path of
  verl's bypass branch: a placeholder, so verl's rollout-correction and advantage code run unchanged; the
  trainer drops the metrics it computes from it). The actor's loss (`ppo_loss_old_from_update`, installed
  by our worker) takes, per micro-batch, π_old = the forward's log-probs, detached, computes the IS weights
  and the `rollout_corr/*`, `training/rollout_probs_*` metrics from them with verl's own functions, and
  runs verl's `ppo_loss`.

The estimator is the recompute path's (PPO ratio π_θ/π_old, TIS weight min(π_old/π_rollout, c)), not
verl's `rollout_correction.bypass_mode`, which clips against π_rollout. tests/verl_seam/test_old_log_prob.py
proves equal loss and gradients. What differs: `actor/entropy` (from verl's pass) is absent unless
`actor.calculate_entropy=true` (then the update computes `actor/entropy_loss`), and batch-level means of the
IS/mismatch metrics become means of per-micro-batch means (maxima stay maxima).
"""

from __future__ import annotations

from omegaconf import OmegaConf
from tensordict import TensorDict
from verl import DataProto
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_rejection_mask
from verl.utils import tensordict_utils as tu
from verl.utils.debug.metrics import calculate_debug_metrics
from verl.utils.metric import AggregationType, Metric
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import no_padding_2_padding, response_to_nested

from ..errors import InvalidValue
from ..run_config import OLD_LOG_PROB_MODES as MODES

# the batch's extra_info key the trainer sets on each update in `update` mode: the IS settings
EXTRA_INFO_KEY = "tinylora_old_from_update"
# advantage estimators known not to read old_log_probs (verl's optimal-token-baseline ones do)
ESTIMATORS = ("grpo", "rloo", "gae")


def redundancy_problems(cfg) -> list[str]:
    """Why verl's old-log-prob pass is *not* redundant for this composed config (empty: it is)."""
    arr, alg = cfg.actor_rollout_ref, cfg.algorithm
    sel = OmegaConf.select
    problems = []
    epochs = int(sel(arr, "actor.ppo_epochs", default=1))
    if epochs != 1:
        problems.append(f"actor_rollout_ref.actor.ppo_epochs={epochs}: later epochs step from other weights")
    mode = sel(cfg, "trainer.v1.trainer_mode", default=None)
    sync_steps = int(sel(cfg, f"trainer.v1.{mode}.parameter_sync_step", default=1) or 1) if mode else 1
    prompts = int(cfg.data.train_batch_size) // sync_steps
    mini = int(sel(arr, "actor.ppo_mini_batch_size"))
    if mini < prompts:
        problems.append(
            f"actor_rollout_ref.actor.ppo_mini_batch_size={mini} < {prompts} prompts per update: "
            "mini-batches after the first step from other weights"
        )
    if sel(alg, "use_kl_in_reward", default=False):
        problems.append("algorithm.use_kl_in_reward=true: the reward's KL penalty reads old_log_probs")
    estimator = str(sel(alg, "adv_estimator", default="gae"))
    if estimator not in ESTIMATORS:
        problems.append(f"algorithm.adv_estimator={estimator}: only {', '.join(ESTIMATORS)} are checked")
    if not sel(arr, "rollout.calculate_log_probs", default=False):
        problems.append("actor_rollout_ref.rollout.calculate_log_probs=false: no rollout log-probs to carry")
    corr = sel(alg, "rollout_correction", default=None) or {}
    if corr.get("bypass_mode", False):
        problems.append("algorithm.rollout_correction.bypass_mode=true: verl's bypass estimator is chosen")
    if corr.get("rollout_rs", None) is not None:
        problems.append(
            "algorithm.rollout_correction.rollout_rs is set: rejection changes the advantages' mask"
        )
    if corr.get("rollout_is_batch_normalize", False):
        problems.append("algorithm.rollout_correction.rollout_is_batch_normalize=true: needs the whole batch")
    distill = sel(cfg, "distillation.enabled", default=False)
    if distill:
        problems.append("distillation.enabled=true: distillation has its own loss")
    return problems


def takes_old_from_update(mode: str, cfg) -> bool:
    """Resolve `tinylora.old_log_prob`: True for `update` (InvalidValue, naming why, where the pass is not
    redundant) and for `auto` where it is redundant; False for `recompute`."""
    if mode not in MODES:
        raise InvalidValue(f"tinylora.old_log_prob={mode!r}: use one of {', '.join(MODES)}")
    if mode == "recompute":
        return False
    problems = redundancy_problems(cfg)
    if mode == "update" and problems:
        raise InvalidValue(
            "tinylora.old_log_prob=update, but verl's old-log-prob pass is not redundant here: "
            + "; ".join(problems)
            + ". Set tinylora.old_log_prob=auto (or recompute)"
        )
    return not problems


def is_settings(cfg) -> dict:
    """The rollout-correction settings the actor's loss needs (the trainer sends them with each update)."""
    corr = OmegaConf.select(cfg.algorithm, "rollout_correction", default=None) or {}
    return {
        "rollout_is": corr.get("rollout_is", None),
        "rollout_is_threshold": corr.get("rollout_is_threshold", 2.0),
    }


def _aggregation(key: str) -> AggregationType:
    if key.endswith("_max"):
        return AggregationType.MAX
    if key.endswith("_min"):
        return AggregationType.MIN
    return AggregationType.MEAN


def _layout_of(mask, padded):
    """`padded` (rows x response tokens) in the layout of the batch's response mask (nested or padded)."""
    return response_to_nested(padded, mask) if mask.is_nested else padded


def ppo_loss_old_from_update(config, model_output, data: TensorDict, dp_group=None, required: bool = False):
    """verl's `ppo_loss`, with π_old taken from this forward where the trainer asks for it (see module doc).

    Without the trainer's `EXTRA_INFO_KEY` in the batch this is `ppo_loss` itself, unless `required` (the
    run resolved to `update`): then the missing key is an error, since old_log_probs would hold the
    rollout's log-probs and the loss would silently be another estimator."""
    settings = tu.get_non_tensor_data(data=data, key=EXTRA_INFO_KEY, default=None)
    if settings is None:
        if required:
            raise RuntimeError(
                f"tinylora.old_log_prob=update but the update batch has no {EXTRA_INFO_KEY!r}: the trainer "
                "is not TinyLoRATrainer (trainer.v1.trainer_mode=tinylora_sync)"
            )
        return ppo_loss(config, model_output, data, dp_group)
    old = no_padding_2_padding(model_output["log_probs"], data).detach()
    padded = data.select("response_mask", "rollout_log_probs", "responses").to_padded_tensor()
    mask = padded["response_mask"]
    weights, _, corr_metrics = compute_rollout_correction_and_rejection_mask(
        old_log_prob=old,
        rollout_log_prob=padded["rollout_log_probs"],
        response_mask=mask,
        rollout_is=settings["rollout_is"],
        rollout_is_threshold=settings["rollout_is_threshold"],
    )
    debug = calculate_debug_metrics(
        DataProto.from_dict(
            {
                "old_log_probs": old,
                "rollout_log_probs": padded["rollout_log_probs"],
                "response_mask": mask,
                "responses": padded["responses"],
            }
        )
    )
    data = data.copy()  # shallow: the engine's micro-batch keeps its own fields
    data["old_log_probs"] = _layout_of(data["response_mask"], old)
    if weights is not None:
        data["rollout_is_weights"] = _layout_of(data["response_mask"], weights.batch["rollout_is_weights"])
    elif "rollout_is_weights" in data.keys():
        del data["rollout_is_weights"]
    loss, metrics = ppo_loss(config, model_output, data, dp_group)
    for key, value in {**corr_metrics, **debug}.items():
        metrics[key] = Metric(aggregation=_aggregation(key), value=float(value))
    return loss, metrics
