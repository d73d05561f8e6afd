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
  the first call sends every weight under its HF name (verl's own stream of the state dict, with the
  `.base_layer.` infix removed, the v container dropped and each adapted weight replaced by
  W_base + ΔW(v)); every later call sends only the adapted weights (plus the unadapted members of the
  fused vLLM layers they belong to: q/k/v -> qkv_proj, gate/up -> gate_up_proj), each computed out of
  place from the untouched base weight. Under FSDP2 the base weight and v are all-gathered
  (`full_tensor`) in the same order on every rank.
* Checkpoints (`save_checkpoint`/`load_checkpoint`): verl's FSDP checkpoint (model incl. v, optimizer,
  extra), plus our tiny adapter format (`tinylora_adapter/` next to verl's files), written by rank 0.
"""

from __future__ import annotations

import logging
import os

import torch
from torch.distributed.tensor import DTensor

from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from ..adapter import TinyLoRAConfig, TinyLoRAHandle, apply_tinylora
from ..adapter.functional import merged_weight
from ..adapter.layer import TinyLoRAVectors
from ..adapter.model import CONTAINER

logger = logging.getLogger(__name__)

from .trainer_files import ADAPTER_DIR
# vLLM fuses these HF projections into one layer; a layer must be reloaded with all of its parts.
FUSED_SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: all-gathers a DTensor (a collective: call it on every rank in the same order)."""
    return t.full_tensor() if isinstance(t, DTensor) else t


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
        raise RuntimeError(f"TinyLoRA factors on this rank (hash {got[:12]}) differ from rank 0's ({identity[1][:12]}): "
                           "the FSDP load did not broadcast rank 0's buffers")


class _IdentityCachedHandle(TinyLoRAHandle):
    """A handle whose base fingerprint / factor hash were computed before sharding (see save_checkpoint)."""

    fingerprint: str = ""
    factors: str = ""

    def base_fingerprint(self) -> str:
        return self.fingerprint

    def factor_hash(self) -> str:
        return self.factors


class TinyLoRAFSDPEngine(FSDPEngineWithLMHead):
    def __init__(self, *args, tinylora: TinyLoRAConfig, **kwargs):
        super().__init__(*args, **kwargs)
        if self.model_config.lora_rank > 0:
            raise ValueError("actor_rollout_ref.model.lora_rank > 0 and a tinylora block are both set: TinyLoRA "
                             "replaces LoRA; set lora_rank=0 (or remove the tinylora block to train LoRA)")
        self.tinylora_config = tinylora
        self.tinylora: TinyLoRAHandle | None = None
        self._tinylora_identity: tuple[str, str] = ("", "")
        self.built_on_meta = False  # this rank's HF model had no weights (meta device) when TinyLoRA went in
        self._full_sync_done = False
        self._is_lora = True  # makes verl call _build_lora_module before FSDP wrapping

    # ---- build ----------------------------------------------------------------------------------
    def _build_lora_module(self, module):
        if self.model_config.enable_gradient_checkpointing:
            module.enable_input_require_grads()  # frozen embeddings + checkpointing still need input grads
        self.built_on_meta = any(p.is_meta for p in module.parameters())
        self.tinylora, self._tinylora_identity = apply_tinylora_from_rank0(module, self.tinylora_config)
        if self.rank == 0:
            logger.warning("TinyLoRA: %d trainable parameters over %d modules (u=%d, tie %s x%d)",
                           self.tinylora.num_trainable, len(self.tinylora.layers), self.tinylora.plan.projection_dim,
                           self.tinylora.plan.tie_mode, self.tinylora.plan.tie_factor)
        return module

    def _build_fsdp_module(self, module):
        module = super()._build_fsdp_module(module)
        check_factors_match(self.tinylora, self._tinylora_identity)  # U, S, V, P are now rank 0's
        return module

    @property
    def num_trainable(self) -> int:
        return self.tinylora.num_trainable

    # ---- reference policy -----------------------------------------------------------------------
    def disable_adapter(self):
        return self.tinylora.disabled()

    # ---- weights for the rollout ----------------------------------------------------------------
    def full_vectors(self) -> list[torch.Tensor]:
        """v of every group, unsharded, detached (collective under FSDP2)."""
        return [full(p.detach()).clone() for p in self.tinylora.vectors.v]

    def _merged(self, name: str, vectors: list[torch.Tensor]) -> torch.Tensor:
        layer = self.tinylora.layers[name]
        return merged_weight(full(layer.base_layer.weight.detach()), layer.tinylora_U, layer.tinylora_S,
                             layer.tinylora_V, layer.tinylora_P, vectors[layer.group], layer.alpha)

    def adapted_weight_names(self) -> list[str]:
        return [f"{n}.weight" for n in self.tinylora.layers]

    def _delta_sync_modules(self) -> list[str]:
        """Adapted modules plus unadapted members of the fused vLLM layers they sit in, model order."""
        wanted = set(self.tinylora.layers)
        for name in list(wanted):
            prefix, _, leaf = name.rpartition(".")
            for group in FUSED_SIBLINGS:
                if leaf in group:
                    wanted.update(f"{prefix}.{s}" for s in group)
        names = [n for n, _ in self.module.named_modules()]
        return [n for n in names if n in wanted]

    def _iter_delta(self):
        vectors = self.full_vectors()
        for name in self._delta_sync_modules():
            if name in self.tinylora.layers:
                yield f"{name}.weight", self._merged(name, vectors)
            else:
                yield f"{name}.weight", full(self.module.get_submodule(name).weight.detach())

    def _iter_first(self, per_tensor_param):
        vectors = self.full_vectors()
        for name, tensor in per_tensor_param:
            if name.startswith(CONTAINER + ".") or f".{CONTAINER}." in name:
                continue
            hf_name = name.replace(".base_layer.", ".")
            module = hf_name.rsplit(".", 1)[0]
            if module in self.tinylora.layers and hf_name.endswith(".weight"):
                tensor = self._merged(module, vectors)
            yield hf_name, tensor

    def get_per_tensor_param(self, layered_summon=False, base_sync_done=False, **kwargs):
        if not self._full_sync_done:
            params, peft_config = super().get_per_tensor_param(layered_summon=layered_summon,
                                                               base_sync_done=base_sync_done, **kwargs)
            self._full_sync_done = True
            return self._iter_first(params), peft_config
        return self._iter_delta(), None

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
        snapshot = _IdentityCachedHandle(model=h.model, config=h.config, plan=h.plan, layers=h.layers,
                                         vectors=container)
        snapshot.fingerprint, snapshot.factors = self._tinylora_identity
        snapshot.save_adapter(directory)

    def save_checkpoint(self, local_path: str, hdfs_path=None, global_step: int = 0, max_ckpt_to_keep=None,
                        **kwargs):
        super().save_checkpoint(local_path, hdfs_path, global_step, max_ckpt_to_keep, **kwargs)
        self.save_adapter(os.path.join(local_path, ADAPTER_DIR))

    def load_checkpoint(self, local_path: str, hdfs_path=None, del_local_after_load: int = True, **kwargs):
        super().load_checkpoint(local_path, hdfs_path, del_local_after_load, **kwargs)
        self._full_sync_done = False  # the rollout engine may hold other weights: send everything again
