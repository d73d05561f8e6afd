"""A real vLLM CPU engine with sleep mode on: the CPU emulation has the GPU's semantics, the verify stream
sees every weight, and a partial sync on discarded weights is refused without loading anything.

* level 1 keeps the weights: the engine's next-token log-probs are unchanged and verification finds 0;
* level 2 discards them: every weight the engine computes with is NaN afterwards (all of them, not only
  the adapted ones), and verification reports it (inf) over every vLLM tensor;
* a delta or vector stream after a level-2 sleep raises (loudly, and only after the sender finished, so
  nothing hangs) and leaves the weights as they were; a complete stream then restores the engine exactly.
"""

import math

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny_model import build_tiny_qwen2

pytestmark = pytest.mark.e2e


def _set_v(handle, step):
    with torch.no_grad():
        for g, p in enumerate(handle.vectors.v):
            p.copy_(torch.cos(torch.arange(p.numel()) * 1.3 + step + g) * 0.2 * step)


def _all_nan(path):
    weights = load_file(str(path))
    return weights and all(torch.isnan(t).all() for t in weights.values())


def test_sleep_levels_verify_and_refusal(tmp_path):
    from transformers import AutoModelForCausalLM

    from bench.sync_harness import VLLMSyncTarget
    from tinylora_verl import TinyLoRAConfig, apply_tinylora
    from tinylora_verl.sync.sender import SyncSender

    model_dir = build_tiny_qwen2(tmp_path / "model")
    target = VLLMSyncTarget(model_dir, enable_sleep_mode=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    full = SyncSender(apply_tinylora(model, TinyLoRAConfig(budget=4)), model, "full")
    vector = SyncSender(full.handle, model, "vector")  # same adapter, its own sync state
    prompt = ["Hello there, how are"]

    _set_v(full.handle, 1)
    target.sync(full.stream())
    target.sync(full.verify_stream())
    ok = target.verified()
    assert ok["verify_max_abs_diff"] == 0 and ok["verify_tensors"] >= ok["verify_vllm_tensors"] > 0, ok
    assert ok["verify_n_missing"] == ok["verify_n_uncovered"] == 0, ok
    n_tensors = ok["verify_tensors"]
    before = target.next_token_logprobs(prompt)

    target.sleep(1)  # level 1: weights kept
    target.wake_up()
    assert target.next_token_logprobs(prompt) == before
    target.sync(full.verify_stream())
    assert target.verified()["verify_max_abs_diff"] == 0

    target.sleep(2)  # level 2: every weight discarded
    target.wake_up()
    target.dump(tmp_path / "after_level2.safetensors")
    assert _all_nan(tmp_path / "after_level2.safetensors")
    target.sync(full.verify_stream())
    bad = target.verified()
    assert math.isinf(bad["verify_max_abs_diff"]) and bad["verify_tensors"] == n_tensors, bad
    assert target.receiver_state()["discarded"]

    _set_v(full.handle, 2)
    with pytest.raises(Exception, match="level-2 sleep"):
        target.sync(full.stream())  # a delta stream on discarded weights
    target.dump(tmp_path / "after_refusal.safetensors")
    assert _all_nan(tmp_path / "after_refusal.safetensors")  # nothing was loaded

    _set_v(full.handle, 1)  # a complete stream restores every weight ...
    full.resend()
    target.sync(full.stream())
    target.sync(full.verify_stream())
    assert target.verified()["verify_max_abs_diff"] == 0 and not target.receiver_state()["discarded"]
    assert target.next_token_logprobs(prompt) == before  # ... and buffers: the engine computes as before

    # vector mode: setup (complete), a vector sync on kept weights, then refused after a level-2 sleep
    target.sync(vector.stream())
    _set_v(full.handle, 3)
    target.sync(vector.stream())
    assert vector.last["kind"] == "vector"
    target.sync(full.verify_stream())
    assert target.verified()["verify_max_abs_diff"] == 0
    target.sleep(2)
    target.wake_up()
    with pytest.raises(Exception, match="level-2 sleep"):
        target.sync(vector.stream())
    assert target.receiver_state()["sleeps"] == {"1": 1, "2": 2}
