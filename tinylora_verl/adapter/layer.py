"""TinyLoRALinear: a frozen nn.Linear plus the TinyLoRA low-rank update.

    y = base(x) + alpha * ((x V) M^T * S) U^T,   M = sum_i v_i P_i

computed in float32 (the factors' dtype) and cast to the base output's dtype; Delta W is never formed.
U, S, V, P are non-persistent buffers (they are derived from the base weight and the seed, so they
never enter a state dict). v is *not* owned by the layer: it lives in the model-level `TinyLoRAVectors`
container and is looked up by group index at every forward, so tied layers share one tensor and
wrappers that swap parameters at run time (FSDP2 un-sharding) are seen.
"""

from __future__ import annotations

import torch
from torch import nn

from .functional import add_lowrank_delta_, merged_weight


class TinyLoRAVectors(nn.Module):
    """The trainable state of the whole adapter: one vector v [u] per group, zero-initialised.

    v = 0 makes the adapter an exact no-op at step 0 (policy == reference), while the gradient is
    non-zero because Delta W is linear in v. `enabled` switches every layer off at once
    (reference log-probs with the adapter disabled, no second model copy).
    """

    def __init__(self, num_groups: int, projection_dim: int):
        super().__init__()
        self.v = nn.ParameterList([nn.Parameter(torch.zeros(projection_dim)) for _ in range(num_groups)])
        self.enabled = True

    def vector(self, group: int) -> torch.Tensor:
        return self.v[group]


class TinyLoRALinear(nn.Module):
    def __init__(
        self,
        base_layer: nn.Linear,
        U: torch.Tensor,
        S: torch.Tensor,
        V: torch.Tensor,
        P: torch.Tensor,
        group: int,
        vectors: TinyLoRAVectors,
        alpha: float = 1.0,
    ):
        super().__init__()
        out_f, in_f = base_layer.weight.shape
        r = S.shape[0]
        if U.shape != (out_f, r) or V.shape != (in_f, r) or P.shape[1:] != (r, r):
            raise ValueError(
                f"factor shapes U{tuple(U.shape)} S{tuple(S.shape)} V{tuple(V.shape)} P{tuple(P.shape)} "
                f"do not fit a weight of shape {(out_f, in_f)} at rank {r}"
            )
        self.base_layer = base_layer
        self.register_buffer("tinylora_U", U, persistent=False)  # [out, r]
        self.register_buffer("tinylora_S", S, persistent=False)  # [r]
        self.register_buffer("tinylora_V", V, persistent=False)  # [in, r]
        self.register_buffer("tinylora_P", P, persistent=False)  # [u, r, r]
        self.group = group
        self.alpha = alpha
        # A list, not an attribute, so the container is not registered (and not duplicated) as a submodule.
        self._vectors = [vectors]

    @property
    def vectors(self) -> TinyLoRAVectors:
        return self._vectors[0]

    @property
    def weight(self) -> torch.Tensor:  # code that inspects `.weight` (dtype, device) sees the base weight
        return self.base_layer.weight

    def v(self) -> torch.Tensor:
        return self.vectors.vector(self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if not self.vectors.enabled:
            return y
        return add_lowrank_delta_(
            y, x, self.tinylora_U, self.tinylora_S, self.tinylora_V, self.tinylora_P, self.v(), self.alpha
        )

    def merged_weight(self) -> torch.Tensor:
        """dtype(W_base + Delta W(v)), from the untouched base weight (never in place)."""
        return merged_weight(
            self.base_layer.weight,
            self.tinylora_U,
            self.tinylora_S,
            self.tinylora_V,
            self.tinylora_P,
            self.v(),
            self.alpha,
        )

    def extra_repr(self) -> str:
        return f"rank={self.tinylora_S.shape[0]}, u={self.tinylora_P.shape[0]}, group={self.group}, alpha={self.alpha}"
