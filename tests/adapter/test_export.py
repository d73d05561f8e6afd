"""Exports: PEFT LoRA (served by peft) and merged HF directory give the adapter's logits; at r = 1 our
delta equals peft's TinyLoRA given the same v and P (the formulas coincide there)."""

import pytest
import torch

from tests.tiny_model import tiny_qwen2
from tinylora_verl import TinyLoRAConfig, apply_tinylora


def adapted(cfg=None, seed=0):
    model = tiny_qwen2()
    handle = apply_tinylora(model, TinyLoRAConfig(**(cfg or {"budget": 4})))
    g = torch.Generator().manual_seed(seed)
    handle.set_vectors(
        [torch.randn(handle.plan.projection_dim, generator=g) for _ in range(handle.plan.num_groups)]
    )
    return model, handle


def logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("cfg", [dict(budget=4), dict(budget=13, tie_mode="all", frozen_rank=3, alpha=0.5)])
def test_peft_lora_export_loaded_with_peft_gives_adapter_logits(tmp_path, prompt_ids, cfg):
    from peft import PeftModel

    ids, mask = prompt_ids
    model, handle = adapted(cfg)
    want = logits(model, ids, mask)
    handle.export_peft_lora(tmp_path)
    served = PeftModel.from_pretrained(tiny_qwen2(), str(tmp_path)).eval()
    got = logits(served, ids, mask)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert (got - logits(tiny_qwen2(), ids, mask)).abs().max() > 1e-3  # peft really applied the adapter
    lora_layer = served.base_model.model.model.layers[0].self_attn.q_proj
    assert lora_layer.r["default"] == cfg.get("frozen_rank", 2) and lora_layer.scaling["default"] == 1.0


def test_merged_export_is_a_plain_hf_model_with_the_adapter_logits(tmp_path, prompt_ids, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    ids, mask = prompt_ids
    model, handle = adapted()
    want = logits(model, ids, mask)
    from tinylora_verl.adapter.export import export_merged

    export_merged(handle, tmp_path, tokenizer_dir=tiny_model_dir)
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "config.json").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    assert not any("base_layer" in k or "tinylora" in k for k in reloaded.state_dict())
    torch.testing.assert_close(logits(reloaded, ids, mask), want, rtol=1e-4, atol=1e-4)


def test_rank1_delta_equals_peft_tinylora_given_same_v_and_P():
    from peft import TinyLoraConfig, get_peft_model

    # exact SVD: peft uses torch.linalg.svd, and this test compares the formulas, not the SVD methods
    model, ours = adapted(dict(budget=14 * 3, tie_mode="none", frozen_rank=1, svd_method="exact"), seed=4)
    peft_model = get_peft_model(
        tiny_qwen2(),
        TinyLoraConfig(
            r=1,
            u=3,
            weight_tying=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )
    checked = 0
    for name, module in peft_model.base_model.model.named_modules():
        if name not in ours.layers:
            continue
        layer = ours.layers[name]
        module.tinylora_P["default"] = layer.tinylora_P.clone()
        with torch.no_grad():
            module.tinylora_v["default"][module._tinylora_v_key["default"]].copy_(layer.v())
        theirs = module.get_delta_weight("default")
        mine = dict(ours.iter_delta_weights())[f"{name}.weight"]
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
        assert mine.abs().max() > 1e-3
        checked += 1
    assert checked == 14
