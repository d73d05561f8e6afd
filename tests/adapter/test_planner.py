"""Tying and the budget planner: a table of cases, the paper's 196->13, invariants, refusals."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import qwen_module_names
from tinylora_verl.adapter.planner import PlanError, make_groups, module_type, plan_tying

# n_layers, tie_mode, budget, u, t  ->  expected (u, tie_factor, n_groups, trainable)
CASES = [
    (28, "tiled", 13, None, None, (1, 16, 13, 13)),  # Qwen2.5-7B: 196 modules, the paper's 13
    (32, "tiled", 13, None, None, (1, 18, 13, 13)),  # 224 modules
    (28, "all", 13, None, None, (13, 196, 1, 13)),  # u=13, one group
    (28, "tiled", 1, None, None, (1, 196, 1, 1)),
    (28, "tiled", 120, None, None, (3, 5, 40, 120)),  # u=1 (120 groups) and u=2 (60) unreachable
    (28, "none", 196, None, None, (1, 1, 196, 196)),
    (28, "none", 392, None, None, (2, 1, 196, 392)),
    (28, "structured", 7, None, None, (1, 28, 7, 7)),  # one vector per projection type
    (28, "structured", 14, None, None, (1, 14, 14, 14)),
    (28, "tiled", None, 4, 49, (4, 49, 4, 16)),  # u, t given directly
    (2, "tiled", 4, None, None, (1, 4, 4, 4)),
]


@pytest.mark.parametrize("layers,mode,budget,u,t,expected", CASES)
def test_plan_table(layers, mode, budget, u, t, expected):
    mods = qwen_module_names(layers)
    plan = plan_tying(mods, mode, budget, u, t)
    assert (plan.projection_dim, plan.tie_factor, plan.num_groups, plan.num_trainable) == expected
    assert plan.exact
    # every module in exactly one group, groups no larger than the tie factor
    flat = [m for g in plan.groups for m in g]
    assert sorted(flat) == sorted(mods) and len(flat) == len(mods)
    assert max(len(g) for g in plan.groups) <= plan.tie_factor
    assert all(plan.groups[plan.group_of[m]].count(m) == 1 for m in mods)


def test_tiled_groups_are_neighbours_in_model_order():
    mods = qwen_module_names(28)
    plan = plan_tying(mods, "tiled", 13)
    assert plan.groups[0] == mods[:16] and plan.groups[12] == mods[192:]
    assert len(plan.groups[12]) == 4  # 196 = 12 * 16 + 4


def test_structured_groups_hold_one_type():
    plan = plan_tying(qwen_module_names(28), "structured", 14)
    for g in plan.groups:
        assert len({module_type(m) for m in g}) == 1
    q_groups = [g for g in plan.groups if module_type(g[0]) == "q_proj"]
    assert [len(g) for g in q_groups] == [14, 14]
    assert q_groups[0][0] == "model.layers.0.self_attn.q_proj"
    assert q_groups[0][-1] == "model.layers.13.self_attn.q_proj"


def test_structured_orders_layers_numerically_not_lexically():
    mods = qwen_module_names(12)
    groups = make_groups(mods, "structured", 3)
    q = [g for g in groups if module_type(g[0]) == "q_proj"]
    assert q[0] == [f"model.layers.{i}.self_attn.q_proj" for i in (0, 1, 2)]
    assert q[3] == [f"model.layers.{i}.self_attn.q_proj" for i in (9, 10, 11)]


def test_unreachable_budget_gives_nearest_and_says_so():
    mods = qwen_module_names(1)  # 7 modules
    plan = plan_tying(mods, "none", 10)  # multiples of 7 only
    assert not plan.exact and plan.num_trainable == 7
    assert "NOT exact" in plan.table()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tie_mode="none", budget=13), "below the 196 modules"),
        (dict(tie_mode="tiled", budget=13, tie_factor=500), "exceeds the 196 modules"),
        (dict(tie_mode="structured", budget=13, tie_factor=29), "exceeds the 28 modules"),
        (dict(tie_mode="all", budget=13, tie_factor=4), "only used with tie_mode"),
        (dict(tie_mode="all", budget=13, projection_dim=4), "conflicts with projection_dim"),
        (dict(tie_mode="tiled", budget=0), "budget=0 must be a positive integer"),
        (dict(tie_mode="tiled", budget=2.5), "budget=2.5"),
        (dict(tie_mode="tiled"), "give a parameter budget"),
        (dict(tie_mode="ring", budget=13), "tie_mode='ring'"),
    ],
)
def test_infeasible_requests_are_refused_with_a_fix(kwargs, match):
    with pytest.raises(PlanError, match=match):
        plan_tying(qwen_module_names(28), **kwargs)


def test_no_modules_is_refused():
    with pytest.raises(PlanError, match="no modules"):
        plan_tying([], "tiled", 13)


def test_table_lists_every_group():
    plan = plan_tying(qwen_module_names(28), "tiled", 13)
    lines = plan.table().splitlines()
    assert "196 modules" in lines[0] and "13 trainable parameters" in lines[0]
    assert len(lines) == 2 + 13
    assert "model.layers.0.self_attn.q_proj -> model.layers.2.self_attn.k_proj" in lines[2]
    d = plan.to_dict()
    assert d["num_trainable"] == 13 and sum(len(g["modules"]) for g in d["groups"]) == 196


@settings(max_examples=150, deadline=None)
@given(layers=st.integers(1, 40), budget=st.integers(1, 3000), mode=st.sampled_from(["tiled", "structured"]))
def test_planner_invariants(layers, budget, mode):
    mods = qwen_module_names(layers)
    plan = plan_tying(mods, mode, budget)
    assert sorted(m for g in plan.groups for m in g) == sorted(mods)
    assert plan.num_trainable == plan.num_groups * plan.projection_dim
    if plan.exact:
        assert plan.num_trainable == budget
    if (
        mode == "tiled"
        and budget <= len(mods)
        and any(math.ceil(len(mods) / t) == budget for t in range(1, len(mods) + 1))
    ):
        assert plan.projection_dim == 1 and plan.exact  # the finest tying is preferred


# ---- exact outputs and messages (mutation testing: docs/testing.md) ----------------------------------
ONE_LAYER = qwen_module_names(1)  # q, k, v, o, gate, up, down of layer 0
Q, K, V, O, G, UP, D = ONE_LAYER


def test_to_dict_is_the_plan_written_out():
    assert plan_tying(ONE_LAYER, "tiled", 3).to_dict() == {
        "tie_mode": "tiled",
        "projection_dim": 1,
        "tie_factor": 3,
        "num_modules": 7,
        "num_groups": 3,
        "num_trainable": 3,
        "budget": 3,
        "exact": True,
        "groups": [
            {"group": 0, "params": 1, "modules": [Q, K, V]},
            {"group": 1, "params": 1, "modules": [O, G, UP]},
            {"group": 2, "params": 1, "modules": [D]},
        ],
    }
    inexact = plan_tying(ONE_LAYER, "none", 10).to_dict()
    assert (inexact["budget"], inexact["num_trainable"], inexact["exact"]) == (10, 7, False)
    assert plan_tying(ONE_LAYER, "tiled", projection_dim=2, tie_factor=7).to_dict()["budget"] is None


def test_table_is_exact():
    assert plan_tying(ONE_LAYER, "tiled", 3).table().splitlines() == [
        "TinyLoRA plan: 7 modules, tie_mode=tiled, tie_factor=3, u=1 -> 3 groups x 1 = 3 trainable parameters"
        " (budget 3)",
        "group  params  modules  types / first -> last module",
        f"    0       1        3  [k_proj,q_proj,v_proj] {Q} -> {V}",
        f"    1       1        3  [gate_proj,o_proj,up_proj] {O} -> {UP}",
        f"    2       1        1  [down_proj] {D}",
    ]
    head = plan_tying(ONE_LAYER, "none", 10).table().splitlines()[0]
    assert head.endswith("= 7 trainable parameters (budget 10, NOT exact: nearest reachable)")
    head = plan_tying(ONE_LAYER, "all", projection_dim=2).table().splitlines()[0]
    assert head.endswith("-> 1 groups x 2 = 2 trainable parameters")  # no budget asked: no budget note


def test_structured_sorts_by_layer_number_whatever_the_input_order():
    mods = [m for layer in (10, 2, 1) for m in qwen_module_names(11) if f".layers.{layer}." in m]
    q = [g for g in make_groups(mods, "structured", 2) if module_type(g[0]) == "q_proj"]
    assert q == [[f"model.layers.{i}.self_attn.q_proj" for i in (1, 2)], ["model.layers.10.self_attn.q_proj"]]


def test_none_and_all_ignore_the_tie_factor():
    assert make_groups(ONE_LAYER, "none", 3) == [[m] for m in ONE_LAYER]
    assert make_groups(ONE_LAYER, "all", 2) == [ONE_LAYER]


def test_the_default_tie_mode_is_tiled():
    mods = qwen_module_names(4)  # tiled and structured group these 28 modules differently at budget 7
    assert plan_tying(mods, budget=7).groups == plan_tying(mods, "tiled", 7).groups
    assert plan_tying(mods, budget=7).groups != plan_tying(mods, "structured", 7).groups


@pytest.mark.parametrize(
    "modules,kwargs,message",
    [
        (
            [],
            dict(budget=13),
            "no modules to adapt: none of the target_modules matched a Linear layer of the model",
        ),
        (
            None,
            dict(tie_mode="ring", budget=13),
            "tie_mode='ring' is not one of ('none', 'all', 'tiled', 'structured')",
        ),
        (None, dict(projection_dim=0), "projection_dim=0 must be a positive integer"),
        (None, dict(budget=13, tie_factor=-1), "tie_factor=-1 must be a positive integer"),
        (None, dict(), "give a parameter budget (e.g. budget=13) or a projection_dim u (and tie_factor)"),
        (
            None,
            dict(tie_mode="all", budget=13, tie_factor=4),
            "tie_factor is only used with tie_mode 'tiled' or 'structured', not 'all'; drop tie_factor or change "
            "tie_mode",
        ),
        (
            None,
            dict(budget=13, tie_factor=500),
            "tie_factor=500 exceeds the 196 modules that can share a vector with tie_mode='tiled'; use "
            "tie_factor <= 196 or tie_mode='all'",
        ),
        (
            None,
            dict(tie_mode="all", budget=13, projection_dim=4),
            "budget=13 conflicts with projection_dim=4: tie_mode='all' gives 1 group(s), so u=4 trains 4; drop "
            "one of them",
        ),
        (
            None,
            dict(tie_mode="none", budget=13),
            "budget=13 is below the 196 modules of tie_mode='none' (at least one parameter per module); use "
            "tie_mode='tiled' or 'structured' to share vectors",
        ),
    ],
)
def test_refusals_say_exactly_what_is_wrong(modules, kwargs, message):
    with pytest.raises(PlanError) as e:
        plan_tying(qwen_module_names(28) if modules is None else modules, **kwargs)
    assert str(e.value) == message


def test_make_groups_names_the_bad_mode():
    with pytest.raises(PlanError) as e:
        make_groups(ONE_LAYER, "ring", 2)
    assert str(e.value) == "tie_mode='ring' is not one of ('none', 'all', 'tiled', 'structured')"


def test_module_type_of_a_top_level_name_is_the_name():
    assert module_type("lm_head") == "lm_head"


def test_u_alone_gives_the_mode_s_tie_factor():
    assert plan_tying(ONE_LAYER, "none", projection_dim=2).tie_factor == 1
    assert plan_tying(ONE_LAYER, "all", projection_dim=2).tie_factor == 7
    tiled = plan_tying(ONE_LAYER, "tiled", projection_dim=2)  # no tie_factor: every module its own vector
    assert (tiled.tie_factor, tiled.num_groups, tiled.num_trainable) == (1, 7, 14)


def test_budget_and_u_that_agree_are_accepted_and_the_tie_factor_refused_for_none():
    plan = plan_tying(ONE_LAYER, "none", budget=14, projection_dim=2)
    assert (plan.projection_dim, plan.num_trainable, plan.exact) == (2, 14, True)
    with pytest.raises(PlanError) as e:
        plan_tying(ONE_LAYER, "none", 7, tie_factor=2)
    assert str(e.value) == (
        "tie_factor is only used with tie_mode 'tiled' or 'structured', not 'none'; drop tie_factor or change "
        "tie_mode"
    )


def test_nearest_budget_can_take_u_1_when_budget_over_groups_is_1():
    # structured on one layer: 7 types of 1 module, so 7 groups whatever t; 9 is unreachable, 7 nearest
    plan = plan_tying(ONE_LAYER, "structured", 9)
    assert (plan.projection_dim, plan.num_trainable, plan.exact) == (1, 7, False)
