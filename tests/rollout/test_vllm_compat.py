"""verl 0.9.1's LoRA loader calls `WeightsMapper.get_unstacked_mapper()`; on vLLM 0.32 it is
`get_rename_mapper` (rollout/vllm_compat.py). The alias must behave as the renames-only mapper: stacked maps and `None` targets dropped, renames kept."""

import re

import pytest

pytest.importorskip("vllm")


def test_verl_lora_loader_finds_the_renames_only_mapper():
    from vllm.model_executor.models.utils import WeightsMapper

    from tinylora_verl.rollout.vllm_compat import alias_unstacked_mapper

    alias_unstacked_mapper()  # what importing rollout/vllm_worker.py does in the vLLM worker
    # (that the import applies it: tests/verl_seam/test_cpu_platform.py, in a process on the CPU platform)
    mapper = WeightsMapper(
        orig_to_new_prefix={"model.": "language_model.model.", "lm_head.": None},
        orig_to_new_regex={re.compile(r"\.mlp\."): ".feed_forward.", re.compile(r"rotary"): None},
        orig_to_new_stacked={"q_proj": ("qkv_proj", "q")},
    )
    got = mapper.get_unstacked_mapper()
    assert got.orig_to_new_stacked == {}
    assert got.orig_to_new_prefix == {"model.": "language_model.model."}
    assert list(got.orig_to_new_regex.values()) == [".feed_forward."]
    # names keep their constituent projection (LoRA parses q_proj, not qkv_proj)
    assert (
        got._map_name("model.layers.0.self_attn.q_proj.weight")
        == "language_model.model.layers.0.self_attn.q_proj.weight"
    )
    assert alias_unstacked_mapper() is False  # idempotent: already there
