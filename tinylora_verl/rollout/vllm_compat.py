"""verl 0.9.1 against vLLM 0.32: one renamed method on verl's LoRA rollout path.

verl's LoRA adapter loader in the vLLM worker (`verl/utils/vllm/utils.py`, `VLLMHijack`'s
`hijack__load_adapter`) calls `model.hf_to_vllm_mapper.get_unstacked_mapper()` on vLLM >= 0.25. vLLM 0.32
names that method `get_rename_mapper` (the mapper with stacked maps and `None` targets dropped, which its own
`LRUCacheWorkerLoRAManager._load_adapter` uses at the same place), so every verl LoRA sync into vLLM 0.32
raised AttributeError in the worker, on any platform, and verl then waited on the failed engine. This gives
the old name to the same method, only where it is missing. Models without `hf_to_vllm_mapper` never reach it.
"""

from __future__ import annotations


def alias_unstacked_mapper() -> bool:
    """Make `WeightsMapper.get_unstacked_mapper` vLLM 0.32's `get_rename_mapper`; True if it was added."""
    from vllm.model_executor.models.utils import WeightsMapper

    if hasattr(WeightsMapper, "get_unstacked_mapper") or not hasattr(WeightsMapper, "get_rename_mapper"):
        return False
    WeightsMapper.get_unstacked_mapper = WeightsMapper.get_rename_mapper
    return True
