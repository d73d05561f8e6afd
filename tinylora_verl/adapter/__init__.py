"""Pure-PyTorch TinyLoRA: math, SVD init, planner, layer, injection, checkpoint, export (imports no verl).

Every error a user can cause (a bad setting, a model that does not fit, a damaged or edited checkpoint)
is a TinyLoRAUserError (a ValueError) with a message naming the problem and the fix; anything else is a bug.
"""

from .checkpoint import load_adapter
from .config import DEFAULT_TARGETS, TinyLoRAConfig
from .errors import AdapterLoadError, PlanError, TinyLoRAConfigError, TinyLoRAError, TinyLoRAUserError
from .model import TinyLoRAHandle, apply_tinylora
from .planner import Plan, plan_tying

__all__ = [
    "AdapterLoadError",
    "DEFAULT_TARGETS",
    "Plan",
    "PlanError",
    "TinyLoRAConfig",
    "TinyLoRAConfigError",
    "TinyLoRAError",
    "TinyLoRAHandle",
    "TinyLoRAUserError",
    "apply_tinylora",
    "load_adapter",
    "plan_tying",
]
