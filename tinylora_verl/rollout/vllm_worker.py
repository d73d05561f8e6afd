"""vLLM worker extension: load synced weights through `reload_weights` and read them back.

verl's `vLLMColocateWorkerExtension.update_weights_from_ipc` loads each received bucket with
`model.load_weights` and then re-runs `process_weights_after_loading`. On vLLM's CPU backend that
fails (DESIGN.md §5 blocker 10): after the first load the CPU backend repacks every Linear weight
into a kernel format (oneDNN / sgl packed) and drops `.weight`, so `load_weights` finds a Parameter
without `weight_loader`. vLLM 0.32's in-place reload is the supported path: `reload_weights(
weights_iterator=..., is_checkpoint_format=True)` restores each layer's checkpoint layout, loads,
and re-packs layer by layer.

`TinyLoRAWorkerExtension.update_weights_from_ipc` therefore receives all buckets of one sync with
verl's own `BucketedWeightReceiver` (same ZMQ/shared-memory wire as the trainer's sender), keeps a
copy of each tensor (the shared-memory buffer is reused per bucket), and calls `reload_weights` once
with everything — a layer whose fused parts (q/k/v, gate/up) arrive in different buckets is then
still loaded completely. verl's `ServerAdapter.update_weights` resets the prefix cache afterwards.
LoRA-adapter syncs (peft_config with base_sync_done) go to verl's implementation unchanged.

Every stream also passes through a `VectorSyncReceiver` (tinylora_verl/sync/receiver.py): for
`tinylora.sync_mode: vector` it keeps the base weights and factors of the setup stream and, for each
later stream (v only), rebuilds the merged adapted weights, which are then loaded like received ones.
Plain streams pass through untouched. On a GPU platform buckets are loaded as they arrive with verl's
`_update_weights` (as verl's extension does) and `process_weights_after_loading` runs once at the end;
on CPU everything goes through one `reload_weights` call.

`tinylora_dump_weights(path)` writes the weights the engine *computes with* under HF names to a
safetensors file, for tests: each Linear is read back by applying the layer's own kernel to an
identity matrix (x = I gives x Wᵀ = Wᵀ exactly in fp32 and bf16, since every output is one product
with 1 plus exact zeros), so packed CPU kernels are covered; fused layers are split back into their
HF parts with the model's `packed_modules_mapping`; other parameters are read directly.
"""

from __future__ import annotations

import logging

import torch

from verl.utils.vllm.patch import patch_vllm_moe_model_weight_loader
from verl.utils.vllm.vllm_quant_utils import is_quantized_model
from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension

from ..sync.receiver import VectorSyncReceiver

logger = logging.getLogger(__name__)


class TinyLoRAWorkerExtension(vLLMColocateWorkerExtension):
    _tinylora_receiver: VectorSyncReceiver | None = None

    @property
    def tinylora_receiver(self) -> VectorSyncReceiver:
        if self._tinylora_receiver is None:
            self._tinylora_receiver = VectorSyncReceiver()
        return self._tinylora_receiver

    def update_weights_from_ipc(self, peft_config: dict = None, base_sync_done=False, use_shm: bool = False):
        if (peft_config and base_sync_done) or self._special_load_path():
            return super().update_weights_from_ipc(peft_config=peft_config, base_sync_done=base_sync_done,
                                                   use_shm=use_shm)
        from vllm.platforms import current_platform
        from verl.workers.rollout.vllm_rollout.bucketed_weight_transfer import BucketedWeightReceiver

        on_cpu = current_platform.is_cpu()
        if not on_cpu and self.device is None:
            from verl.utils.device import get_device_name
            self.device = torch.device(f"{get_device_name()}:{self.local_rank}")
        device = torch.device("cpu") if on_cpu else self.device
        vector = self.tinylora_receiver
        vector.begin()
        pending: list[tuple[str, torch.Tensor]] = []
        loaded = 0

        def on_bucket(weights, is_last):
            nonlocal loaded
            plain = vector.consume(weights)
            if on_cpu:  # one reload_weights call at the end (fused layers must be loaded whole)
                pending.extend((name, tensor.detach().clone()) for name, tensor in plain)
            elif plain:  # verl's per-bucket load (the bucket buffer is reused afterwards)
                self._update_weights(plain, peft_config=None, base_sync_done=True)
                loaded += len(plain)

        if not on_cpu:
            for model in self._iter_all_models():
                patch_vllm_moe_model_weight_loader(model)
        receiver = BucketedWeightReceiver(zmq_handle=self._get_zmq_handle(), device=device, use_shm=use_shm)
        receiver.receive_weights(on_bucket_received=on_bucket)
        rebuilt = vector.finish(device)
        if on_cpu:
            self.reload_weights(weights_iterator=iter(pending + rebuilt), is_checkpoint_format=True)
        else:
            if rebuilt:
                self._update_weights(rebuilt, peft_config=None, base_sync_done=True)
            from vllm.model_executor.model_loader.utils import process_weights_after_loading
            for model, model_config in self._iter_all_models_with_config():
                process_weights_after_loading(model, model_config, self.device)
        logger.info("tinylora: loaded %d received + %d rebuilt tensors into vLLM (%s)",
                    len(pending) + loaded, len(rebuilt), vector.last if rebuilt else "plain stream")

    def _special_load_path(self) -> bool:
        """Quantized / QAT models keep verl's own loading (their pre/post-load steps); no vector sync there."""
        return bool(getattr(self, "_is_qat_model", False) or getattr(self, "_is_modelopt_qat", False)
                    or is_quantized_model(self.model_runner.vllm_config))

    def tinylora_receiver_state(self, path: str | None = None) -> dict:
        """What the vector receiver holds (for tests): modules, kept bytes, the last rebuild; also written
        to `path` as JSON when given (verl's server-level collective_rpc returns nothing)."""
        import json
        r = self.tinylora_receiver
        kept = sum(t.numel() * t.element_size() for t, _ in r.base.values())
        state = {"ready": r.ready, "modules": len(r.modules), "siblings": len(r.siblings), "base_bytes": kept,
                 "last": r.last}
        if path:
            with open(path, "w") as f:
                json.dump(state, f)
        return state

    @torch.no_grad()
    def tinylora_dump_weights(self, path: str) -> int:
        """Write the engine's effective weights (HF names) to `path` (safetensors); returns the count."""
        from safetensors.torch import save_file
        from vllm.model_executor.layers.linear import LinearBase

        model = self.model_runner.model
        packed = getattr(model, "packed_modules_mapping", {}) or {}
        out: dict[str, torch.Tensor] = {}
        linear_params = set()
        for mod_name, module in model.named_modules():
            if not isinstance(module, LinearBase) or getattr(module, "quant_method", None) is None:
                continue
            linear_params.update(f"{mod_name}.{p}" for p, _ in module.named_parameters(recurse=False))
            k = module.input_size_per_partition
            dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
            eye = torch.eye(k, dtype=dtype)                         # [K, K]
            w = module.quant_method.apply(module, eye, bias=None).t().contiguous()  # [N, K]
            leaf = mod_name.rsplit(".", 1)[-1]
            parts = packed.get(leaf)
            sizes = getattr(module, "output_partition_sizes", None)
            if parts and sizes and len(parts) == len(sizes):
                prefix = mod_name[: -len(leaf)]
                for part, chunk in zip(parts, torch.split(w, list(sizes), dim=0)):
                    out[f"{prefix}{part}.weight"] = chunk.clone()
            else:
                out[f"{mod_name}.weight"] = w
        for name, param in model.named_parameters():
            if name not in linear_params and param.numel() > 0:
                out[name] = param.detach().clone().contiguous()
        save_file(out, path)
        return len(out)
