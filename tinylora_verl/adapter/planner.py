"""Tying and the parameter-budget planner.

A *group* is a set of modules sharing one trainable vector v [u]; trainable = n_groups * u.

Tie modes (paper §3, "weight tying"):
  none        every module has its own v                      n_groups = n
  all         one v for the whole model                       n_groups = 1
  tiled       t neighbouring modules share, whatever their type (model order)
                                                              n_groups = ceil(n / t)
  structured  t neighbouring modules *of the same type* share (all q_proj of layers 0..t-1, ...)
                                                              n_groups = sum_type ceil(n_type / t)

Given a budget B the planner picks the smallest u (finest tying) such that B / u groups are reachable
by some tie factor t; t is the smallest that gives that many groups (the most even split). If no
(u, t) hits B exactly it takes the nearest total (smaller u on ties) and marks the plan inexact.
Examples: 196 modules (Qwen2.5-7B: 28 layers x 7) -> B=13: u=1, t=16 (ceil(196/16) = 13 groups);
224 modules -> B=13: u=1, t=18.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .errors import PlanError

TIE_MODES = ("none", "all", "tiled", "structured")
__all__ = ["TIE_MODES", "Plan", "PlanError", "make_groups", "module_type", "plan_tying"]


@dataclass
class Plan:
    tie_mode: str
    projection_dim: int  # u
    tie_factor: int  # t (modules per group; n for "all", 1 for "none")
    modules: list[str]  # adapted modules, model order
    groups: list[list[str]]  # group id -> module names
    budget: int | None = None  # what was asked for (None if u/t were given directly)
    group_of: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.group_of = {m: g for g, members in enumerate(self.groups) for m in members}

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def num_trainable(self) -> int:
        return self.num_groups * self.projection_dim

    @property
    def exact(self) -> bool:
        return self.budget is None or self.budget == self.num_trainable

    def to_dict(self) -> dict:
        return {
            "tie_mode": self.tie_mode,
            "projection_dim": self.projection_dim,
            "tie_factor": self.tie_factor,
            "num_modules": len(self.modules),
            "num_groups": self.num_groups,
            "num_trainable": self.num_trainable,
            "budget": self.budget,
            "exact": self.exact,
            "groups": [
                {"group": g, "params": self.projection_dim, "modules": members}
                for g, members in enumerate(self.groups)
            ],
        }

    def table(self) -> str:
        """Human-readable group table (one row per group)."""
        head = (
            f"TinyLoRA plan: {len(self.modules)} modules, tie_mode={self.tie_mode}, tie_factor={self.tie_factor}, "
            f"u={self.projection_dim} -> {self.num_groups} groups x {self.projection_dim} = "
            f"{self.num_trainable} trainable parameters"
        )
        if self.budget is not None:
            head += f" (budget {self.budget}{'' if self.exact else ', NOT exact: nearest reachable'})"
        rows = [head, f"{'group':>5}  {'params':>6}  {'modules':>7}  types / first -> last module"]
        for g, members in enumerate(self.groups):
            types = ",".join(sorted({module_type(m) for m in members}))
            span = members[0] if len(members) == 1 else f"{members[0]} -> {members[-1]}"
            rows.append(f"{g:>5}  {self.projection_dim:>6}  {len(members):>7}  [{types}] {span}")
        return "\n".join(rows)


def module_type(name: str) -> str:
    """'model.layers.3.self_attn.q_proj' -> 'q_proj'."""
    return name.rsplit(".", 1)[-1]


def _layer_key(name: str) -> tuple:
    nums = [int(x) for x in re.findall(r"\.(\d+)(?=\.|$)", name)]
    return tuple(nums)


def make_groups(modules: list[str], tie_mode: str, tie_factor: int) -> list[list[str]]:
    """Assign modules (in model order) to groups of at most `tie_factor` members."""
    if tie_mode in ("tiled", "none", "all"):
        t = {"none": 1, "all": max(len(modules), 1)}.get(tie_mode, tie_factor)
        return [modules[i : i + t] for i in range(0, len(modules), t)]
    if tie_mode == "structured":
        by_type: dict[str, list[str]] = {}
        for m in modules:  # dict keeps first-appearance order of types
            by_type.setdefault(module_type(m), []).append(m)
        groups = []
        for members in by_type.values():
            members = sorted(members, key=_layer_key)
            groups += [members[i : i + tie_factor] for i in range(0, len(members), tie_factor)]
        return groups
    raise PlanError(f"tie_mode={tie_mode!r} is not one of {TIE_MODES}")


def _num_groups(modules: list[str], tie_mode: str, t: int) -> int:
    if tie_mode == "tiled":
        return math.ceil(len(modules) / t)
    counts: dict[str, int] = {}
    for m in modules:
        counts[module_type(m)] = counts.get(module_type(m), 0) + 1
    return sum(math.ceil(c / t) for c in counts.values())


def _max_tie(modules: list[str], tie_mode: str) -> int:
    if tie_mode == "structured":
        counts: dict[str, int] = {}
        for m in modules:
            counts[module_type(m)] = counts.get(module_type(m), 0) + 1
        return max(counts.values())
    return len(modules)


def plan_tying(
    modules: list[str],
    tie_mode: str = "tiled",
    budget: int | None = None,
    projection_dim: int | None = None,
    tie_factor: int | None = None,
) -> Plan:
    """Choose (u, t) for `modules`. Give `budget`, or `projection_dim` (+ `tie_factor`), or both."""
    n = len(modules)
    if n == 0:
        raise PlanError("no modules to adapt: none of the target_modules matched a Linear layer of the model")
    if tie_mode not in TIE_MODES:
        raise PlanError(f"tie_mode={tie_mode!r} is not one of {TIE_MODES}")
    for label, val in (("budget", budget), ("projection_dim", projection_dim), ("tie_factor", tie_factor)):
        if val is not None and (not isinstance(val, int) or isinstance(val, bool) or val < 1):
            raise PlanError(f"{label}={val!r} must be a positive integer")
    if budget is None and projection_dim is None:
        raise PlanError("give a parameter budget (e.g. budget=13) or a projection_dim u (and tie_factor)")
    if tie_factor is not None and tie_mode in ("none", "all"):
        raise PlanError(
            f"tie_factor is only used with tie_mode 'tiled' or 'structured', not {tie_mode!r}; "
            "drop tie_factor or change tie_mode"
        )
    max_t = _max_tie(modules, tie_mode) if tie_mode in ("tiled", "structured") else n
    if tie_factor is not None and tie_factor > max_t:
        raise PlanError(
            f"tie_factor={tie_factor} exceeds the {max_t} modules that can share a vector with "
            f"tie_mode={tie_mode!r}; use tie_factor <= {max_t} or tie_mode='all'"
        )

    def build(u: int, t: int) -> Plan:
        return Plan(
            tie_mode=tie_mode,
            projection_dim=u,
            tie_factor=t,
            modules=list(modules),
            groups=make_groups(list(modules), tie_mode, t),
            budget=budget,
        )

    if tie_mode in ("none", "all"):
        g, t = (n, 1) if tie_mode == "none" else (1, n)
        if budget is None:
            return build(projection_dim, t)
        if projection_dim is not None and projection_dim * g != budget:
            raise PlanError(
                f"budget={budget} conflicts with projection_dim={projection_dim}: tie_mode={tie_mode!r} "
                f"gives {g} group(s), so u={projection_dim} trains {g * projection_dim}; drop one of them"
            )
        if budget < g:
            raise PlanError(
                f"budget={budget} is below the {n} modules of tie_mode='none' (at least one parameter "
                "per module); use tie_mode='tiled' or 'structured' to share vectors"
            )
        return build(nearest_u(budget, g), t)

    # tiled / structured: reachable group counts, smallest t for each
    t_range = [tie_factor] if tie_factor is not None else range(1, max_t + 1)
    t_for_groups: dict[int, int] = {}
    for t in t_range:
        t_for_groups.setdefault(_num_groups(modules, tie_mode, t), t)

    if budget is None:
        t = tie_factor if tie_factor is not None else 1
        return build(projection_dim, t)

    # exact: the smallest u (= the most groups g) with g * u == budget; O(reachable group counts)
    exact = [
        g
        for g in t_for_groups
        if budget % g == 0 and (projection_dim is None or budget // g == projection_dim)
    ]
    if exact:
        g = max(exact)
        return build(budget // g, t_for_groups[g])
    # nothing exact: nearest total, smaller u first, then fewer groups. For a given g the nearest u is
    # floor or ceil(budget / g) (any other u is farther), unless u is fixed.
    _, u, g = min(
        (abs(g * u - budget), u, g)
        for g in t_for_groups
        for u in ([projection_dim] if projection_dim is not None else {max(1, budget // g), budget // g + 1})
    )
    return build(u, t_for_groups[g])


def nearest_u(budget: int, groups: int) -> int:
    """The u >= 1 whose total groups * u is nearest to budget; the smaller u on a tie."""
    low = max(1, budget // groups)
    return low if abs(groups * low - budget) <= abs(groups * (low + 1) - budget) else low + 1
