"""Through a real vLLM CPU engine: the same v trajectory synced as `full` and as `vector` leaves the
engine with bit-identical weights, equal to the trainer's merged weights, after every step.

One engine (our worker extension) receives both: at each step the `full` engine's stream is synced and
the engine's weights dumped; then other weights are synced (so nothing correct is left in the engine)
and the `vector` engine's stream (same v as the full one) is synced and dumped again.
Both dumps must be bit-identical to each other and to the trainer's merge cast to vLLM's dtype; the
vector streams after the setup carry 2 tensors, ≤ 1 KB.
"""

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny_model import build_tiny_qwen2

pytestmark = pytest.mark.e2e


def _set_v(handle, step):
    with torch.no_grad():
        for g, p in enumerate(handle.vectors.v):
            p.copy_(torch.cos(torch.arange(p.numel()) * 1.3 + step + g) * 0.2 * step)


def test_full_and_vector_leave_vllm_bit_identical(tmp_path):
    from transformers import AutoModelForCausalLM

    from bench.sync_harness import VLLMSyncTarget
    from tinylora_verl import TinyLoRAConfig, apply_tinylora
    from tinylora_verl.sync.sender import SyncSender

    model_dir = build_tiny_qwen2(tmp_path / "model")
    target = VLLMSyncTarget(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = TinyLoRAConfig(budget=4)
    full = SyncSender(apply_tinylora(model, cfg), model, "full")
    vector = SyncSender(full.handle, model, "vector")  # same module and adapter, its own sync state
    prompt = ["Hello there, how are"]
    outputs = set()
    for step in range(4):
        _set_v(full.handle, step)
        target.sync(full.stream())
        target.dump(tmp_path / f"full_{step}.safetensors")
        _set_v(full.handle, step + 7)  # poison: the engine now holds other weights ...
        target.sync(full.stream())
        _set_v(full.handle, step)  # ... which the vector sync alone must replace
        target.sync(vector.stream())
        target.dump(tmp_path / f"vector_{step}.safetensors")
        if step > 0:
            assert vector.last["kind"] == "vector" and vector.last["bytes"] <= 1024, vector.last
        a = load_file(str(tmp_path / f"full_{step}.safetensors"))
        b = load_file(str(tmp_path / f"vector_{step}.safetensors"))
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), (step, name)
        vectors = full.vectors()
        for name in full.handle.layers:
            got = b[f"{name}.weight"]
            assert torch.equal(got, full.merged(name, vectors).to(got.dtype)), (step, name)
        outputs.add(tuple(target.next_token_logprobs(prompt)))
    state = target.receiver_state()
    assert (
        state["ready"] and state["last"]["kind"] == "vector" and state["modules"] == len(full.handle.layers)
    )
    assert len(outputs) == 4  # each step's weights change what vLLM computes
