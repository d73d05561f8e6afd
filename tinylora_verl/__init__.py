"""tinylora_verl: TinyLoRA ("Learning to Reason in 13 Parameters") on verl + vLLM + Ray."""

from .adapter import TinyLoRAConfig, TinyLoRAHandle, TinyLoRAUserError, apply_tinylora, load_adapter

__all__ = ["TinyLoRAConfig", "TinyLoRAHandle", "TinyLoRAUserError", "apply_tinylora", "load_adapter"]
__version__ = "0.1.0"
