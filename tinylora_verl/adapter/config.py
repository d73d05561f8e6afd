"""TinyLoRAConfig: every knob of the adapter, validated all at once (validation.py, limits.py)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields

from .errors import TinyLoRAConfigError
from .planner import TIE_MODES
from .svd import SVD_DTYPES, SVD_METHODS, SVDOptions
from .validation import config_errors, target_modules_tuple

# The seven projections of a Llama/Qwen2 decoder layer (paper: "all linear layers of the transformer").
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
INT_FIELDS = (
    "budget",
    "frozen_rank",
    "projection_dim",
    "tie_factor",
    "seed",
    "svd_power_iters",
    "svd_oversample",
)


@dataclass
class TinyLoRAConfig:
    budget: int | None = field(
        default=13,
        metadata={
            "help": "Total trainable parameters to aim for; the planner picks u and the tie factor "
            "(13 = the paper's headline). Set to None and give projection_dim to choose directly."
        },
    )
    frozen_rank: int = field(default=2, metadata={"help": "r: rank of the frozen truncated SVD (paper: 2)."})
    projection_dim: int | None = field(
        default=None,
        metadata={
            "help": "u: length of each trainable vector v. None = chosen by the planner from the budget."
        },
    )
    tie_mode: str = field(default="tiled", metadata={"help": f"How modules share v: one of {TIE_MODES}."})
    tie_factor: int | None = field(
        default=None,
        metadata={
            "help": "Modules per shared vector for tiled/structured tying. None = chosen by the planner."
        },
    )
    target_modules: tuple[str, ...] = field(
        default=DEFAULT_TARGETS,
        metadata={
            "help": "Suffixes of the nn.Linear modules to adapt (matched against the last name component)."
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the random P_i (combined with a hash of each module's name) and of the randomized SVD."
        },
    )
    alpha: float = field(
        default=1.0,
        metadata={
            "help": "Scale of the update: W' = W + alpha U diag(S) M V^T. 1.0 is the paper's formula; other ports "
            "use 1/sqrt(u) or alpha/u — set it explicitly to reproduce them. With lora_alpha set, the "
            "scale is alpha * lora_alpha / sqrt(r u) (see lora_alpha)."
        },
    )
    lora_alpha: float | None = field(
        default=None,
        metadata={
            "help": "The authors' scale (jxmorris12/verl-lora; docs/parity.md \"The authors' scale\"): their "
            "ΔW = (lora_alpha / r) U (sum_i v_i P_i / sqrt(u)) diag(S) V^T with P_i ~ N(0, 1), ours has "
            "P_i ~ N(0, 1/r); a module's scale becomes alpha * lora_alpha / sqrt(r u), which gives v the "
            "same meaning as theirs (the same expected ||ΔW||_F for every v), so their learning rates, "
            "weight decay and gradient clipping carry over as written. Their scripts: 32. "
            "None = the paper's formula (scale alpha)."
        },
    )
    svd_method: str = field(
        default="krylov",
        metadata={
            "help": f"One of {SVD_METHODS}. krylov: exact-quality top-r factors (block Krylov, residual stop); "
            "randomized: 6 power iterations, cheaper, misses the top-r subspace of flat spectra; exact: full SVD "
            "(docs/performance_svd.md)."
        },
    )
    svd_dtype: str = field(
        default="float32", metadata={"help": f"Arithmetic of the SVD: one of {tuple(SVD_DTYPES)}."}
    )
    svd_power_iters: int = field(
        default=6,
        metadata={
            "help": "Power iterations of the randomized SVD (krylov stops by its residual test instead)."
        },
    )
    svd_oversample: int = field(
        default=8,
        metadata={"help": "Extra random vectors of the randomized SVD; the krylov block is r + this."},
    )
    svd_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Directory for cached factors keyed by a hash of each weight; None = no cache."},
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field (validation.py; bounds in limits.py) and normalise types; raise
        TinyLoRAConfigError listing every problem. apply_tinylora calls it again, so a field assigned
        after construction is checked too."""
        errors = config_errors(self)
        if errors:
            raise TinyLoRAConfigError("invalid TinyLoRAConfig:\n  - " + "\n  - ".join(errors))
        self.target_modules = target_modules_tuple(self.target_modules)
        for name in INT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, int(value))  # numpy integers -> int (JSON, hashing)
        self.alpha = float(self.alpha)
        if self.lora_alpha is not None:
            self.lora_alpha = float(self.lora_alpha)
        if self.svd_cache_dir is not None:
            self.svd_cache_dir = os.fspath(self.svd_cache_dir)

    def scale(self, projection_dim: int) -> float:
        """The factor in front of U diag(S) M V^T for modules whose v has `projection_dim` (u) entries:
        alpha, or alpha * lora_alpha / sqrt(r u) in the authors' convention (lora_alpha set)."""
        if self.lora_alpha is None:
            return self.alpha
        return self.alpha * self.lora_alpha / math.sqrt(self.frozen_rank * projection_dim)

    @property
    def svd_options(self) -> SVDOptions:
        return SVDOptions(
            method=self.svd_method,
            dtype=self.svd_dtype,
            oversample=self.svd_oversample,
            power_iters=self.svd_power_iters,
            seed=self.seed,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TinyLoRAConfig:
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
            raise TinyLoRAConfigError(
                f"TinyLoRA settings must be a mapping of setting names to values, got {type(d).__name__}"
            )
        unknown = sorted(set(d) - known)
        if unknown:
            raise TinyLoRAConfigError(f"unknown TinyLoRA settings {unknown}; valid ones are {sorted(known)}")
        return cls(**d)
