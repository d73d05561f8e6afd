"""TinyLoRA actor/rollout worker: verl's `ActorRolloutRefWorker` with a TinyLoRA model engine.

The actor's `TrainingWorker` gets a `TinyLoRAFSDPEngine` (engine.py) in place of verl's FSDP engine
when `actor_rollout_ref.tinylora` is set (our Hydra config points it at the top-level `tinylora:`
block). Everything else — rollout, weight sync (`update_weights` -> `engine.get_per_tensor_param`),
log-probs, PPO update, checkpoints — is verl's code. The reference policy is the actor with the adapter
off: the trainer (trainer.py) marks the reference as "in the actor", so verl asks this worker for
`compute_log_prob(no_lora_adapter=True)`, which runs under `engine.disable_adapter()`.

The actor's loss is verl's `ppo_loss` behind `ppo_loss_old_from_update` (old_log_prob.py): where the run
resolved `tinylora.old_log_prob` to `update`, π_old and the truncated-IS weights come from the update's
own forward and verl's separate old-log-prob pass is skipped; otherwise it is `ppo_loss` itself.

Extra remote methods (all ranks must call them: they all-gather v/weights):
`tinylora_state()` (per rank: trainable count, factor hash of this rank's buffers, whether verl built
this rank's model on the meta device, full v, exact hash of the base weights),
`tinylora_sync_stats()` (the last sync's bytes/tensors and the adapter diagnostics) and
`tinylora_verify_sync()` (every weight streamed to the rollout workers for comparison, not loading).

Process group timeout: verl 0.9.1's `TrainingWorker` creates the training ranks' process group with no
timeout (`initialize_global_process_group_ray(timeout_second=None)`), so verl's own key
`actor_rollout_ref.nccl_timeout` reaches no process group and torch's default applies. `init_model` here
creates the group first, through the same verl function, with that key's value (`init_training_process_group`);
verl's call then finds it made. The GPU presets raise it to cover rank 0's SVD (docs/performance_svd.md).
"""

from __future__ import annotations

import functools
import logging

import torch
from verl.single_controller.base.decorator import Dispatch, register
from verl.utils import distributed as verl_distributed
from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker
from verl.workers.utils.losses import ppo_loss

from ..run_config import RunConfig, worker_run_config
from ..sync.sender import full
from ..sync.sleep import rollout_discards_weights
from .engine import TinyLoRAFSDPEngine
from .old_log_prob import ppo_loss_old_from_update

# verl's actor_rollout_ref key for the process group's collective timeout, in seconds (ppo_trainer.yaml: 600)
TIMEOUT_KEY = "nccl_timeout"

logger = logging.getLogger(__name__)


def init_training_process_group(config) -> int | None:
    """Create this process's default process group with `config.nccl_timeout` seconds as its timeout.

    `config` is the worker's `actor_rollout_ref` section. Uses verl's own
    `initialize_global_process_group_ray` (same backend string, same init method) with the timeout verl
    0.9.1 leaves unset; returns the timeout applied (None: the key is unset, torch's default applies).
    Rank 0 computes every TinyLoRA factor while the other ranks wait in a collective
    (engine.apply_tinylora_from_rank0), so this timeout must exceed rank 0's model load plus SVD.
    """
    timeout = config.get(TIMEOUT_KEY) if config is not None else None
    timeout = int(timeout) if timeout is not None else None
    if timeout is not None and timeout < 1:
        raise ValueError(f"actor_rollout_ref.{TIMEOUT_KEY}={timeout} must be a positive number of seconds")
    if torch.distributed.is_initialized():
        logger.warning(
            "process group already initialised: actor_rollout_ref.%s=%s not applied", TIMEOUT_KEY, timeout
        )
        return None
    verl_distributed.initialize_global_process_group_ray(timeout_second=timeout)
    if torch.distributed.get_rank() == 0:
        logger.warning(
            "TinyLoRA worker: training process group timeout %s (actor_rollout_ref.%s)",
            f"{timeout} s" if timeout is not None else "torch's default",
            TIMEOUT_KEY,
        )
    return timeout


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of a tensor's values as float32 bytes (exact; the e2e tests compare it with the HF file's)."""
    import hashlib

    return hashlib.sha256(
        t.detach().to("cpu", torch.float32).contiguous().view(torch.uint8).numpy().tobytes()
    ).hexdigest()


class TinyLoRATrainingWorker(TrainingWorker):
    """verl's TrainingWorker whose engine is a TinyLoRAFSDPEngine (same configs, same mesh)."""

    def __init__(self, config, run: RunConfig, resend_all: bool = False):
        super().__init__(config)
        strategy = self.engine_config.strategy
        if strategy != "fsdp2":
            raise ValueError(
                f"TinyLoRA runs on verl's FSDP engine; actor strategy is {strategy!r}: set "
                "actor_rollout_ref.actor.strategy=fsdp2"
            )
        self.engine = TinyLoRAFSDPEngine(
            model_config=self.model_config,
            engine_config=self.engine_config,
            optimizer_config=self.optimizer_config,
            checkpoint_config=self.checkpoint_config,
            run=run,
            resend_all=resend_all,
        )


class TinyLoRAActorRolloutRefWorker(ActorRolloutRefWorker):
    def __init__(self, config, role: str, **kwargs):
        super().__init__(config, role, **kwargs)
        # the block the driver validated (run_config.check_run_config), read once in this process
        self.tinylora_run = worker_run_config(config)
        if self.tinylora_run.enabled and self._is_actor:
            self.actor_worker_cls = functools.partial(
                TinyLoRATrainingWorker,
                run=self.tinylora_run,
                resend_all=rollout_discards_weights(config.rollout, self.tinylora_run.sync_mode),
            )

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self):
        if self._is_actor or self._is_ref:  # the roles that build a TrainingWorker (and its process group)
            init_training_process_group(self.config)
        out = super().init_model()
        self._install_loss()
        return out

    def _install_loss(self) -> None:
        """verl's ppo_loss behind `ppo_loss_old_from_update`, which takes π_old from the update's forward
        when the trainer asks (tinylora.old_log_prob; verl_seam/old_log_prob.py) and is ppo_loss otherwise."""
        loss = getattr(self, "loss_fn", None)
        mode = self.tinylora_run.old_log_prob
        if not (self.tinylora_run.enabled and self._is_actor) or mode == "recompute":
            return
        if not (isinstance(loss, functools.partial) and loss.func is ppo_loss):
            if mode == "update":
                raise RuntimeError(
                    f"tinylora.old_log_prob=update needs verl's ppo_loss in the actor; it has {loss!r}"
                )
            return
        self.loss_fn = functools.partial(ppo_loss_old_from_update, **loss.keywords, required=mode == "update")
        self.actor.set_loss_fn(self.loss_fn)

    def _engine(self) -> TinyLoRAFSDPEngine:
        engine = self.actor.engine if self.actor is not None else None
        if not isinstance(engine, TinyLoRAFSDPEngine):
            raise RuntimeError("this worker has no TinyLoRA actor: add a tinylora block to the config")
        return engine

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def tinylora_state(self) -> dict:
        """Per rank: trainable count, factor hash, whether verl built this rank's model on the meta device, full
        v, and an exact sha256 of the adapted modules' base weights (all-gathered one at a time; collective)."""
        engine = self._engine()
        base = {}
        for name, layer in engine.tinylora.layers.items():
            w = full(layer.base_layer.weight.detach(), engine.compute_device)
            base[f"{name}.weight"] = tensor_sha256(w)
            del w
        return {
            "rank": torch.distributed.get_rank(),
            "num_trainable": engine.num_trainable,
            "factor_hash": engine.tinylora.factor_hash(),
            "built_on_meta": engine.built_on_meta,
            "v": engine.full_vectors(),
            "base_sha256": base,
        }

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def tinylora_sync_stats(self) -> dict:
        """The last sync's stream (mode, kind, tensors, bytes) and the adapter diagnostics (‖v‖, the
        fraction of ΔW rounded away in bf16); collective (v is all-gathered, counts all-reduced)."""
        engine = self._engine()
        return {**engine.last_sync, **engine.sync_diagnostics()}

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def tinylora_probe(self, batch: dict) -> dict:
        """`rollout_kl`, `effect_kl`, `effect_kept` of the weights just synced, on the fixed probe `batch`
        (engine.probe_policy), with the rollout engine's weight dtype (`rollout.dtype`). Collective; timed."""
        import time

        from verl.utils.torch_dtypes import PrecisionType

        start = time.perf_counter()
        engine = self._engine()
        name = str(self.config.rollout.dtype)
        if name == "auto":  # vLLM then takes the checkpoint's dtype
            name = str(getattr(engine.model_config.hf_config, "torch_dtype", None) or "float32")
        dtype = PrecisionType.to_dtype(name.replace("torch.", ""))
        out = engine.probe_policy(batch, dtype)
        return {**out, "tinylora/probe_s": time.perf_counter() - start}

    @register(dispatch_mode=Dispatch.ONE_TO_ALL, blocking=False)
    async def tinylora_verify_sync(self) -> None:
        """Send the engine's verify stream (every weight, adapted ones merged) to this rank's rollout worker,
        which compares it with the weights it computes with and loads nothing (rollout/verify.py). The same
        transport as a sync, tensor by tensor: no rank holds a copy of the model. Collective."""
        engine = self._engine()
        await self.rollout.update_weights(engine.verify_stream(), peft_config=None, base_sync_done=True)
