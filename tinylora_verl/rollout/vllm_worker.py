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

`tinylora_dump_weights(path)` writes the weights the engine *computes with* under HF names to a
safetensors file, for tests: each Linear is read back by applying the layer's own kernel to an
identity matrix (x = I gives x Wᵀ = Wᵀ exactly in fp32 and bf16, since every output is one product
with 1 plus exact zeros), so packed CPU kernels are covered; fused layers are split back into their
HF parts with the model's `packed_modules_mapping`; other parameters are read directly.
"""

from __future__ import annotations

import logging

import torch

from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension

logger = logging.getLogger(__name__)


class TinyLoRAWorkerExtension(vLLMColocateWorkerExtension):
    def update_weights_from_ipc(self, peft_config: dict = None, base_sync_done=False, use_shm: bool = False):
        if peft_config and base_sync_done:
            return super().update_weights_from_ipc(peft_config=peft_config, base_sync_done=base_sync_done,
                                                   use_shm=use_shm)
        from verl.workers.rollout.vllm_rollout.bucketed_weight_transfer import BucketedWeightReceiver

        received: list[tuple[str, torch.Tensor]] = []

        def on_bucket(weights, is_last):
            received.extend((name, tensor.detach().clone()) for name, tensor in weights)

        receiver = BucketedWeightReceiver(zmq_handle=self._get_zmq_handle(), device=torch.device("cpu"),
                                          use_shm=use_shm)
        receiver.receive_weights(on_bucket_received=on_bucket)
        self.reload_weights(weights_iterator=iter(received), is_checkpoint_format=True)
        logger.info("tinylora: reloaded %d tensors into vLLM", len(received))

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
