"""vLLM worker extension: load synced weights through `reload_weights` and read them back.

verl's `vLLMColocateWorkerExtension.update_weights_from_ipc` loads each received bucket with
`model.load_weights` and then re-runs `process_weights_after_loading`. On vLLM's CPU backend that
fails (docs/cpu_platform.md, blocker 10): after the first load the CPU backend repacks every Linear weight
into a kernel format (oneDNN / sgl packed) and drops `.weight`, so `load_weights` finds a Parameter
without `weight_loader`. vLLM 0.32's in-place reload is the supported path: `reload_weights(
weights_iterator=..., is_checkpoint_format=True)` restores each layer's checkpoint layout, loads,
and re-packs layer by layer.

`TinyLoRAWorkerExtension.update_weights_from_ipc` therefore receives all buckets of one sync with
verl's own `BucketedWeightReceiver` (same ZMQ/shared-memory wire as the trainer's sender), keeps a
copy of each tensor (the shared-memory buffer is reused per bucket), and calls `reload_weights` once
with everything — a layer whose fused parts (q/k/v, gate/up) arrive in different buckets is then
still loaded completely. verl's `ServerAdapter.update_weights` resets the prefix cache afterwards.
LoRA-adapter syncs (peft_config with base_sync_done) go to verl's implementation unchanged (its loader
needs one vLLM 0.32 rename, given at import: rollout/vllm_compat.py).

Every stream also passes through a `VectorSyncReceiver` (tinylora_verl/sync/receiver.py): for
`tinylora.sync_mode: vector` it keeps the base weights and factors of the setup stream and, for each
later stream (v only), rebuilds the merged adapted weights, which are then loaded like received ones.
Plain streams pass through untouched. On a GPU platform buckets are loaded as they arrive with verl's
`_update_weights` (as verl's extension does), rebuilt modules one at a time, and
`process_weights_after_loading` runs once at the end; on CPU everything goes through one lazy
`reload_weights` call. The receiver also refuses a partial stream (delta, vector) after a level-2 sleep
discarded the weights (`tinylora_weights_discarded`, called by our server); any error inside the stream
is raised only once the sender has finished, so a refusal never leaves the trainer waiting.
A *verify* stream is compared with the engine's weights and never loaded (rollout/verify.py).

`tinylora_dump_weights(path)` writes the weights the engine *computes with* under HF names to a
safetensors file, for tests (rollout/vllm_weights.py: each Linear read back through its own kernel).
"""

from __future__ import annotations

import logging
import traceback

import torch
from verl.utils.vllm.patch import patch_vllm_moe_model_weight_loader
from verl.utils.vllm.vllm_quant_utils import is_quantized_model
from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension

from ..sync.receiver import VectorSyncReceiver
from .vllm_compat import alias_unstacked_mapper

logger = logging.getLogger(__name__)
alias_unstacked_mapper()  # verl's LoRA loader on vLLM 0.32 (vllm_compat.py)


class TinyLoRAWorkerExtension(vLLMColocateWorkerExtension):
    _tinylora_receiver: VectorSyncReceiver | None = None

    @property
    def tinylora_receiver(self) -> VectorSyncReceiver:
        if self._tinylora_receiver is None:
            self._tinylora_receiver = VectorSyncReceiver()
        return self._tinylora_receiver

    def update_weights_from_ipc(self, peft_config: dict = None, base_sync_done=False, use_shm: bool = False):
        if (peft_config and base_sync_done) or self._special_load_path():
            return super().update_weights_from_ipc(
                peft_config=peft_config, base_sync_done=base_sync_done, use_shm=use_shm
            )
        from verl.workers.rollout.vllm_rollout.bucketed_weight_transfer import BucketedWeightReceiver
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if not on_cpu and self.device is None:
            from verl.utils.device import get_device_name

            self.device = torch.device(f"{get_device_name()}:{self.local_rank}")
        device = torch.device("cpu") if on_cpu else self.device
        vector = self.tinylora_receiver
        vector.begin()
        pending: list[tuple[str, torch.Tensor]] = []
        loaded = 0
        verifier = None
        refused: list[tuple] = []  # an error mid-stream: raised after the sender has finished

        def on_bucket(weights, is_last):
            if refused:  # drain the rest of the stream: the sender must finish, or it waits forever
                return
            try:
                load_bucket(weights)
            except Exception as e:  # noqa: BLE001 (re-raised once the stream has ended)
                # keep no traceback: its frames hold views of the transfer buffer, which must be released
                refused.append((type(e), str(e), traceback.format_exc()))

        def load_bucket(weights):
            nonlocal loaded, verifier
            plain = vector.consume(weights)
            if vector.kind == "verify":  # compare, never load
                if verifier is None:
                    from .verify import WeightVerifier

                    verifier = WeightVerifier(self.model_runner.model, self._tied_embeddings())
                for name, tensor in plain:
                    verifier.consume(name, tensor)
                return
            if on_cpu:  # one reload_weights call at the end (fused layers must be loaded whole)
                pending.extend((name, tensor.detach().clone()) for name, tensor in plain)
                loaded += len(plain)
            elif plain:  # verl's per-bucket load (the bucket buffer is reused afterwards)
                self._update_weights(plain, peft_config=None, base_sync_done=True)
                loaded += len(plain)

        if not on_cpu:
            for model in self._iter_all_models():
                patch_vllm_moe_model_weight_loader(model)
        receiver = BucketedWeightReceiver(zmq_handle=self._get_zmq_handle(), device=device, use_shm=use_shm)
        receiver.receive_weights(on_bucket_received=on_bucket)
        if refused:
            cls, message, trace = refused[0]
            logger.error("tinylora: sync refused, nothing loaded:\n%s", trace)
            raise (cls if issubclass(cls, (RuntimeError, ValueError)) else RuntimeError)(message)
        rebuilt = vector.finish(device)  # checks first; then one merged module at a time
        if vector.kind == "verify":
            self._tinylora_verified = verifier.result() if verifier is not None else {"verify_tensors": 0}
            logger.info("tinylora: verified %s", self._tinylora_verified)
            return
        n_rebuilt = 0
        if on_cpu:

            def everything():
                nonlocal n_rebuilt
                yield from pending
                pending.clear()
                for item in rebuilt:
                    n_rebuilt += 1
                    yield item

            self.reload_weights(weights_iterator=everything(), is_checkpoint_format=True)
        else:
            for item in rebuilt:  # load each merged module before the next one is built
                self._update_weights([item], peft_config=None, base_sync_done=True)
                n_rebuilt += 1
            from vllm.model_executor.model_loader.utils import process_weights_after_loading

            for model, model_config in self._iter_all_models_with_config():
                process_weights_after_loading(model, model_config, self.device)
        logger.info(
            "tinylora: loaded %d received + %d rebuilt tensors into vLLM (%s)",
            loaded,
            n_rebuilt,
            vector.last or "plain stream",
        )

    def _tied_embeddings(self) -> bool:
        hf = getattr(self.model_runner.model_config, "hf_config", None)
        text = getattr(hf, "get_text_config", lambda: hf)()
        return bool(getattr(text, "tie_word_embeddings", False))

    def tinylora_weights_discarded(self) -> None:
        """Called by our vLLM server after a level-2 sleep: the weights are gone until a complete sync."""
        self.tinylora_receiver.weights_discarded()

    def _special_load_path(self) -> bool:
        """Quantized / QAT models keep verl's own loading (their pre/post-load steps); no vector sync there."""
        return bool(
            getattr(self, "_is_qat_model", False)
            or getattr(self, "_is_modelopt_qat", False)
            or is_quantized_model(self.model_runner.vllm_config)
        )

    def tinylora_receiver_state(self, path: str | None = None) -> dict:
        """What the vector receiver holds (for tests): modules, kept bytes, the last rebuild; also written
        to `path` as JSON when given (verl's server-level collective_rpc returns nothing)."""
        import json

        r = self.tinylora_receiver
        kept = sum(t.numel() * t.element_size() for t, _ in r.base.values())
        state = {
            "ready": r.ready,
            "modules": len(r.modules),
            "siblings": len(r.siblings),
            "base_bytes": kept,
            "last": r.last,
            "discarded": r.discarded,
            "verified": getattr(self, "_tinylora_verified", None),
            "sleeps": getattr(self, "tinylora_sleeps", None),
        }
        if path:
            from .verify import _tp

            rank, size = _tp()
            if size > 1:  # every tensor-parallel worker writes its own file
                path = (
                    f"{path[: -len('.json')]}.tp{rank}.json" if path.endswith(".json") else f"{path}.tp{rank}"
                )
            with open(path, "w") as f:
                json.dump(state, f)
        return state

    @torch.no_grad()
    def tinylora_dump_weights(self, path: str) -> int:
        """Write the engine's effective weights (HF names) to `path` (safetensors); returns the count."""
        from safetensors.torch import save_file

        from .vllm_weights import effective_weights

        out = {
            name: t.to("cpu").clone().contiguous() for name, t in effective_weights(self.model_runner.model)
        }
        save_file(out, path)
        return len(out)
