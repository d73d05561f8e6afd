"""TinyLoRA inside verl's FSDP engine: build, train only v, reference = adapter off, merged sync.

`TinyLoRAFSDPEngine` subclasses verl's `FSDPEngineWithLMHead` and changes four hooks:

* Build (`_build_lora_module`): verl calls it after loading the HF model and *before* FSDP wraps it.
  Only rank 0 surely holds the full weights there (float32): for untied-embedding models (Qwen2.5-7B)
  verl builds the model on the meta device on ranks > 0 (`get_init_weight_context_manager`). So
  `apply_tinylora_from_rank0` runs the SVD of the full, unsharded weights on rank 0 only; ranks > 0 get
  factor buffers of the right shape and no values. verl's FSDP2 load (`fsdp2_load_full_state_dict`:
  `to_empty` on ranks > 0, then the state dict and *every* named buffer, non-persistent U, S, V, P
  included, broadcast from rank 0) gives every rank rank 0's factors bit for bit; `_build_fsdp_module`
  then checks that each rank's factor hash is rank 0's. The adapter's identity (base fingerprint, factor
  hash, for the checkpoints written later) is computed once on rank 0 from the full weights and
  broadcast. Every base weight is frozen and only the v vectors (in the `model.tinylora` container)
  require grad, so verl's optimizer (built from `module.parameters()`, which AdamW skips for frozen ones)
  trains exactly v.
* Reference policy (`disable_adapter`): the same module with every TinyLoRA layer switched off.
* Rollout weights (`get_per_tensor_param`, what `ActorRolloutRefWorker.update_weights` sends to vLLM):
  the next stream of the engine's `SyncSender` (sync/sender.py: complete first, then only what changed;
  `full` or `vector` mode), with verl's own stream of every weight as the complete one's source. Under
  FSDP2 the sender all-gathers v and each base weight in the same order on every rank.
* Checkpoints (`save_checkpoint`/`load_checkpoint`): verl's FSDP checkpoint (model incl. v, optimizer,
  extra), plus our tiny adapter format (`tinylora_adapter/` next to verl's files), written by rank 0.
"""

from __future__ import annotations

import logging
import os
import time

import torch
from torch.distributed.tensor import DTensor
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from ..adapter import TinyLoRAConfig, TinyLoRAHandle, apply_tinylora
from ..adapter.layer import TinyLoRAVectors
from ..run_config import RunConfig
from ..sync.diagnostics import rounded_away_counts
from ..sync.probe import probe
from ..sync.sender import SyncSender
from .trainer_files import ADAPTER_DIR

logger = logging.getLogger(__name__)


HALF_DTYPES = (torch.bfloat16, torch.float16)
# rounded_away_frac is counted on every 16th row of each adapted weight (sync/diagnostics.py): forming ΔW for
# every entry each step cost as much as a merge of the whole model
ROUNDED_AWAY_ROW_STRIDE = 16


def fp32_log_softmax_on_this_platform() -> bool:
    """True on the CPU platform, where verl has no fused float32 cross-entropy (see prepare_model_outputs)."""
    from ..cpu_platform import enabled

    return enabled()


def local_rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(this rank's rows of t, index of its first row): FSDP2 shards parameters along dim 0."""
    if not isinstance(t, DTensor):
        return t.detach(), 0
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = t.to_local().detach()
    _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    if any(o != 0 for o in offset[1:]):
        raise NotImplementedError(f"TinyLoRA diagnostics expect row sharding; got placements {t.placements}")
    return local, int(offset[0])


def apply_tinylora_from_rank0(module, config: TinyLoRAConfig) -> tuple[TinyLoRAHandle, tuple[str, str]]:
    """`apply_tinylora` where only rank 0 is sure to hold the full weights; returns (handle, identity).

    Rank 0 computes the factors and the identity (base fingerprint, factor hash) from the full weights;
    other ranks create factor buffers without values (their weights may be on the meta device), to be
    filled by the FSDP load's broadcast of rank 0's buffers (see `check_factors_match`). The identity is
    broadcast to every rank (a collective when torch.distributed runs with more than one rank).
    """
    dist = torch.distributed
    multi = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank = dist.get_rank() if multi else 0
    handle = apply_tinylora(module, config, compute_factors=rank == 0)
    identity = [(handle.base_fingerprint(), handle.factor_hash()) if rank == 0 else None]
    if multi:
        dist.broadcast_object_list(identity, src=0)
    return handle, tuple(identity[0])


def check_factors_match(handle: TinyLoRAHandle, identity: tuple[str, str]) -> None:
    """Raise unless this rank's U, S, V, P hash to rank 0's factor hash (`identity[1]`)."""
    got = handle.factor_hash()
    if got != identity[1]:
        raise RuntimeError(
            f"TinyLoRA factors on this rank (hash {got[:12]}) differ from rank 0's ({identity[1][:12]}): "
            "the FSDP load did not broadcast rank 0's buffers"
        )


class _IdentityCachedHandle(TinyLoRAHandle):
    """A handle whose base fingerprint / factor hash were computed before sharding (see save_checkpoint)."""

    fingerprint: str = ""
    factors: str = ""

    def base_fingerprint(self) -> str:
        return self.fingerprint

    def factor_hash(self) -> str:
        return self.factors


class TinyLoRAFSDPEngine(FSDPEngineWithLMHead):
    def __init__(self, *args, run: RunConfig, resend_all: bool = False, **kwargs):
        """`run`: the run's validated `tinylora:` block (run_config.py; TinyLoRA on); `resend_all`: the
        rollout engines discard their weights between syncs (vLLM level-2 sleep: sync/sleep.py)."""
        super().__init__(*args, **kwargs)
        if run.adapter is None:
            raise ValueError("TinyLoRAFSDPEngine needs an enabled tinylora block (run.adapter is None)")
        if self.model_config.lora_rank > 0:
            raise ValueError(
                "actor_rollout_ref.model.lora_rank > 0 and a tinylora block are both set: TinyLoRA "
                "replaces LoRA; set lora_rank=0 (or remove the tinylora block to train LoRA)"
            )
        self.run = run
        self.resend_all = resend_all
        self.tinylora: TinyLoRAHandle | None = None  # the adapter, applied in _build_lora_module
        self.sender: SyncSender | None = None  # its weight sync, built with it
        self._tinylora_identity: tuple[str, str] = ("", "")
        self.built_on_meta = False  # this rank's HF model had no weights (meta device) when TinyLoRA went in
        self._probe_cache: dict = {}  # base-policy logits of the fixed probe (probe_policy)
        self._is_lora = True  # makes verl call _build_lora_module before FSDP wrapping

    # ---- build ----------------------------------------------------------------------------------
    def _build_lora_module(self, module):
        if self.model_config.enable_gradient_checkpointing:
            module.enable_input_require_grads()  # frozen embeddings + checkpointing still need input grads
        self.built_on_meta = any(p.is_meta for p in module.parameters())
        t0 = time.perf_counter()
        self.tinylora, self._tinylora_identity = apply_tinylora_from_rank0(module, self.run.adapter)
        if self.rank == 0:
            # the other ranks waited in a collective meanwhile: compare with actor_rollout_ref.nccl_timeout
            logger.warning(
                "TinyLoRA: %d trainable parameters over %d modules (u=%d, tie %s x%d); factors (%s SVD) "
                "on rank 0 in %.1f s",
                self.tinylora.num_trainable,
                len(self.tinylora.layers),
                self.tinylora.plan.projection_dim,
                self.tinylora.plan.tie_mode,
                self.tinylora.plan.tie_factor,
                self.run.adapter.svd_method,
                time.perf_counter() - t0,
            )
        return module

    def _build_fsdp_module(self, module):
        module = super()._build_fsdp_module(module)
        check_factors_match(self.tinylora, self._tinylora_identity)  # U, S, V, P are now rank 0's
        # the sync streams the module as FSDP2 holds it (fully_shard wraps in place)
        self.sender = SyncSender(
            self.tinylora, module, self.run.sync_mode, self.resend_all, device=self.compute_device
        )
        return module

    @property
    def num_trainable(self) -> int:
        return self.tinylora.num_trainable

    # ---- reference policy -----------------------------------------------------------------------
    def disable_adapter(self):
        return self.tinylora.disabled()

    # ---- log-probs ------------------------------------------------------------------------------
    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        """verl's, with half-precision logits upcast to float32 first on the CPU platform.

        On GPU verl computes log-probs with flash-attn's cross-entropy kernel, which works in float32
        whatever the logits' dtype; without it (the CPU) verl falls back to `log_softmax` in the logits'
        dtype, so bf16 compute gave bf16 log-probs (steps of 2^-4 near log p = -12) and PPO ratios,
        IS weights and the KL term quantised to them. Upcasting here gives the CPU the GPU's arithmetic."""
        logits = getattr(output, "logits", None)
        if fp32_log_softmax_on_this_platform() and logits is not None and logits.dtype in HALF_DTYPES:
            output.logits = logits.float()
        return super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)

    # ---- weights for the rollout ----------------------------------------------------------------
    @property
    def compute_device(self):
        """Where shards are gathered and merges computed (verl's current device; "cpu" on the CPU platform)."""
        from verl.utils.device import get_device_id, get_device_name

        dev = get_device_id()
        return torch.device(dev) if isinstance(dev, str) else torch.device(get_device_name(), dev)

    @property
    def last_sync(self) -> dict:
        """The last stream sent: mode, kind, sync number, tensors, bytes (sync/sender.py)."""
        return self.sender.last if self.sender is not None else {}

    def full_vectors(self) -> list[torch.Tensor]:
        """v of every group, unsharded, detached (collective under FSDP2)."""
        return self.sender.vectors()

    def get_per_tensor_param(self, layered_summon=False, base_sync_done=False, **kwargs):
        """The next sync's stream (sync/sender.py); verl's own stream of every weight when it must be complete."""

        def weights():
            params, _ = self._verl_stream(
                layered_summon=layered_summon, base_sync_done=base_sync_done, **kwargs
            )
            return params

        return self.sender.stream(weights), None

    def verify_stream(self):
        """What the rollout engines should hold now, as a *verify* stream (compared there, never loaded):
        every weight, adapted ones merged, all-gathered tensor by tensor (collective: every rank)."""
        return self.sender.verify_stream(self._verl_stream()[0])

    def _verl_stream(self, **kwargs):
        """verl's own stream of every weight (FSDP state dict, all-gathered tensor by tensor)."""
        return super().get_per_tensor_param(**kwargs)

    # ---- diagnostics ----------------------------------------------------------------------------
    @torch.no_grad()
    def sync_diagnostics(self) -> dict:
        """‖v‖ and the fraction of ΔW entries below half a bf16 ulp of W (rounded away by a bf16 merge),
        counted on every ROUNDED_AWAY_ROW_STRIDE-th row of each adapted weight.

        Each rank counts on its own FSDP shard of each base weight (no all-gather of W); the counts are
        summed over ranks. Collective: call on every rank.
        """
        vectors = self.full_vectors()
        small = total = 0
        for layer in self.tinylora.layers.values():
            W = layer.base_layer.weight
            local, row0 = local_rows(W)
            local = local.to(self.compute_device)  # offloaded shards live on the host
            rows = slice(row0, row0 + local.shape[0])
            s, t = rounded_away_counts(
                local,
                layer.tinylora_U[rows],
                layer.tinylora_S,
                layer.tinylora_V,
                layer.tinylora_P,
                vectors[layer.group],
                layer.alpha,
                stride=ROUNDED_AWAY_ROW_STRIDE,
                first_row=row0,
            )
            small, total = small + s, total + t
        counts = torch.tensor([small, total], dtype=torch.float64)
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(counts)
        v_norm = torch.linalg.vector_norm(torch.cat([v.double() for v in vectors])).item()
        return {"v_norm": v_norm, "rounded_away_frac": (counts[0] / counts[1]).item() if counts[1] else 0.0}

    def probe_policy(self, batch: dict, rollout_dtype: torch.dtype) -> dict:
        """KL(trainer policy ‖ rollout weights' policy) and the share of the adapter's effect kept, on a fixed
        probe batch (sync/probe.py), with v's float32 master copy as the sync sends it. Collective (the
        FSDP forward and v's all-gather): every rank runs the same batch."""
        vectors = self.full_vectors()
        device = self.compute_device
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)

        def forward():
            out = self.module(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
            return out.logits

        # the trainer's probe is fixed: the base policy's logits are kept for it (dropped for another batch)
        kept = self._probe_cache.get("ids")
        if kept is None or kept.shape != ids.shape or not torch.equal(kept, batch["input_ids"].cpu()):
            self._probe_cache = {"ids": batch["input_ids"].cpu().clone()}
        with self.eval_mode():
            return probe(
                forward,
                self.tinylora.layers,
                self.disable_adapter,
                rollout_dtype,
                mask,
                vectors,
                self._probe_cache,
            )

    # ---- checkpoints ----------------------------------------------------------------------------
    def save_adapter(self, directory: str) -> None:
        """Our tiny format (safetensors v + JSON). Collective (v is all-gathered); rank 0 writes."""
        vectors = self.full_vectors()
        if self.rank != 0:
            return
        container = TinyLoRAVectors(len(vectors), vectors[0].numel())
        with torch.no_grad():
            for p, v in zip(container.v, vectors):
                p.copy_(v)
        h = self.tinylora
        snapshot = _IdentityCachedHandle(
            model=h.model, config=h.config, plan=h.plan, layers=h.layers, vectors=container
        )
        snapshot.fingerprint, snapshot.factors = self._tinylora_identity
        snapshot.save_adapter(directory)

    def save_checkpoint(
        self, local_path: str, hdfs_path=None, global_step: int = 0, max_ckpt_to_keep=None, **kwargs
    ):
        super().save_checkpoint(local_path, hdfs_path, global_step, max_ckpt_to_keep, **kwargs)
        self.save_adapter(os.path.join(local_path, ADAPTER_DIR))

    def load_checkpoint(self, local_path: str, hdfs_path=None, del_local_after_load: int = True, **kwargs):
        super().load_checkpoint(local_path, hdfs_path, del_local_after_load, **kwargs)
        self.sender.resend()  # the rollout engine may hold other weights: send everything again
