"""Pure-PyTorch TinyLoRA: math, SVD init, planner, layer, injection, checkpoint, export (imports no verl)."""

from .checkpoint import AdapterLoadError, load_adapter
from .config import DEFAULT_TARGETS, TinyLoRAConfig, TinyLoRAConfigError
from .model import TinyLoRAError, TinyLoRAHandle, apply_tinylora
from .planner import Plan, PlanError, plan_tying

__all__ = [
    "AdapterLoadError",
    "DEFAULT_TARGETS",
    "Plan",
    "PlanError",
    "TinyLoRAConfig",
    "TinyLoRAConfigError",
    "TinyLoRAError",
    "TinyLoRAHandle",
    "apply_tinylora",
    "load_adapter",
    "plan_tying",
]
