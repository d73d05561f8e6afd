"""Every TinyLoRAConfig field is type- and range-checked at construction (and again by apply_tinylora),
with a message naming the setting and the fix; hostile values never raise anything but
TinyLoRAConfigError, and never start unbounded work."""

import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylora_verl import TinyLoRAUserError
from tinylora_verl.adapter import TinyLoRAConfig, TinyLoRAConfigError
from tinylora_verl.adapter.limits import MAX_POWER_ITERS, MAX_PROJECTION_ENTRIES, MAX_SCALE, MAX_SEED

BAD = [
    ("budget", 0, "budget=0 must be an integer from 1"),
    ("budget", -13, "budget=-13"),
    ("budget", 2.5, "budget=2.5"),
    ("budget", "13", "budget='13'"),
    ("budget", True, "budget=True"),
    ("budget", MAX_PROJECTION_ENTRIES // 4 + 1, "budget \\* frozen_rank\\^2 <= 4194304"),
    ("budget", 10**12, "budget=1000000000000"),
    ("frozen_rank", 0, "frozen_rank=0 must be an integer from 1 to 2048"),
    ("frozen_rank", 2049, "frozen_rank=2049"),
    ("frozen_rank", 2.0, "frozen_rank=2.0"),
    ("frozen_rank", None, "frozen_rank=None"),
    ("projection_dim", 0, "projection_dim=0"),
    ("projection_dim", 10**7, "projection_dim=10000000 .*None lets the planner choose u"),
    ("projection_dim", False, "projection_dim=False"),
    ("tie_factor", 0, "tie_factor=0"),
    ("tie_factor", "16", "tie_factor='16'"),
    ("tie_mode", "ring", "tie_mode='ring' must be one of"),
    ("tie_mode", None, "tie_mode=None"),
    ("tie_mode", ["tiled"], "tie_mode=\\['tiled'\\]"),
    ("target_modules", None, "target_modules=None must be a non-empty list"),
    ("target_modules", [], "target_modules=\\[\\]"),
    ("target_modules", "", "target_modules=''"),
    ("target_modules", ["q_proj", 3], "target_modules=\\['q_proj', 3\\]"),
    ("target_modules", [" q_proj"], "without surrounding spaces"),
    ("target_modules", b"q_proj", "target_modules=b'q_proj'"),
    ("target_modules", 7, "target_modules=7"),
    (
        "seed",
        -1,
        "seed=-1 must be an integer from 0 to 9223372036854775807: use a seed in \\[0, 2\\*\\*63\\)",
    ),
    ("seed", 2**63, "seed=9223372036854775808"),
    ("seed", 1.5, "seed=1.5"),
    ("seed", None, "seed=None"),
    ("alpha", float("nan"), "alpha=nan must be a finite non-zero number"),
    ("alpha", float("inf"), "alpha=inf"),
    ("alpha", -float("inf"), "alpha=-inf"),
    ("alpha", 0, "alpha=0"),
    ("alpha", MAX_SCALE * 2, "alpha=2000000.0 .*1.0 is the paper's formula"),
    ("alpha", "1.0", "alpha='1.0'"),
    ("alpha", True, "alpha=True"),
    ("alpha", None, "alpha=None"),
    ("lora_alpha", float("nan"), "lora_alpha=nan .*the authors' scripts use 32"),
    ("lora_alpha", float("inf"), "lora_alpha=inf"),
    ("lora_alpha", 0.0, "lora_alpha=0.0"),
    ("lora_alpha", "32", "lora_alpha='32'"),
    ("svd_method", "qr", "svd_method='qr' must be one of \\('randomized', 'exact', 'krylov'\\)"),
    ("svd_method", None, "svd_method=None"),
    ("svd_dtype", "float16", "svd_dtype='float16'"),
    ("svd_dtype", ["float32"], "svd_dtype=\\['float32'\\]"),  # unhashable: no TypeError
    ("svd_power_iters", -1, "svd_power_iters=-1"),
    ("svd_power_iters", MAX_POWER_ITERS + 1, "svd_power_iters=33 must be an integer from 0 to 32"),
    ("svd_power_iters", 10**9, "svd_power_iters=1000000000"),
    ("svd_power_iters", True, "svd_power_iters=True"),
    ("svd_oversample", -1, "svd_oversample=-1"),
    ("svd_oversample", 2.0, "svd_oversample=2.0"),
    ("svd_cache_dir", "", "svd_cache_dir='' must be a directory path"),
    ("svd_cache_dir", 5, "svd_cache_dir=5"),
]


@pytest.mark.parametrize("name,value,match", BAD, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BAD)])
def test_bad_value_is_refused_naming_the_setting(name, value, match):
    with pytest.raises(TinyLoRAConfigError, match=match) as err:
        TinyLoRAConfig(**{name: value})
    assert f"{name}=" in str(err.value)
    assert isinstance(err.value, TinyLoRAUserError) and isinstance(err.value, ValueError)


def test_every_problem_is_listed_at_once():
    with pytest.raises(TinyLoRAConfigError) as err:
        TinyLoRAConfig(budget=0, seed=-1, alpha=float("nan"), tie_mode="x")
    text = str(err.value)
    assert all(s in text for s in ("budget=0", "seed=-1", "alpha=nan", "tie_mode='x'"))
    assert text.count("\n  - ") == 4


def test_budget_and_projection_dim_both_none():
    with pytest.raises(TinyLoRAConfigError, match="both None: set budget"):
        TinyLoRAConfig(budget=None)


@pytest.mark.parametrize("r", [1, 2, 3, 16])
def test_budget_cap_follows_the_frozen_rank(r):
    cap = MAX_PROJECTION_ENTRIES // (r * r)
    assert TinyLoRAConfig(budget=cap, frozen_rank=r).budget == cap
    assert TinyLoRAConfig(budget=None, projection_dim=cap, frozen_rank=r).projection_dim == cap
    with pytest.raises(TinyLoRAConfigError, match=f"budget={cap + 1} must be an integer from 1 to {cap}"):
        TinyLoRAConfig(budget=cap + 1, frozen_rank=r)
    with pytest.raises(TinyLoRAConfigError, match=f"projection_dim={cap + 1}"):
        TinyLoRAConfig(budget=None, projection_dim=cap + 1, frozen_rank=r)


def test_edges_that_are_valid():
    c = TinyLoRAConfig(seed=MAX_SEED, alpha=-MAX_SCALE, lora_alpha=MAX_SCALE, svd_power_iters=MAX_POWER_ITERS)
    assert (c.seed, c.alpha, c.lora_alpha, c.svd_power_iters) == (MAX_SEED, -MAX_SCALE, MAX_SCALE, 32)
    assert (
        TinyLoRAConfig(seed=0, svd_power_iters=0, svd_oversample=0, frozen_rank=2048, budget=1).frozen_rank
        == 2048
    )


def test_values_are_normalised_to_plain_types():
    c = TinyLoRAConfig(
        budget=np.int64(13),
        seed=np.int32(4),
        alpha=np.float32(0.5),
        lora_alpha=32,
        target_modules=["q_proj", "v_proj"],
        svd_cache_dir=Path("/tmp/x"),
    )
    assert type(c.budget) is int and type(c.seed) is int and c.budget == 13 and c.seed == 4
    assert type(c.alpha) is float and c.alpha == 0.5 and type(c.lora_alpha) is float and c.lora_alpha == 32.0
    assert c.target_modules == ("q_proj", "v_proj") and c.svd_cache_dir == "/tmp/x"
    assert TinyLoRAConfig(target_modules="q_proj").target_modules == ("q_proj",)
    assert TinyLoRAConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "bad,kind", [(None, "NoneType"), ([("budget", 13)], "list"), ("budget=13", "str"), ({1: 13}, "dict")]
)
def test_from_dict_refuses_what_is_not_a_mapping_of_names(bad, kind):
    with pytest.raises(TinyLoRAConfigError) as err:
        TinyLoRAConfig.from_dict(bad)
    assert str(err.value) == f"TinyLoRA settings must be a mapping of setting names to values, got {kind}"


def test_from_dict_refuses_unknown_settings():
    with pytest.raises(TinyLoRAConfigError, match="unknown TinyLoRA settings \\['rank'\\]"):
        TinyLoRAConfig.from_dict({"rank": 2})


def test_assignment_after_construction_is_caught_by_validate():
    c = TinyLoRAConfig()
    c.alpha = float("nan")
    with pytest.raises(TinyLoRAConfigError, match="alpha=nan"):
        c.validate()


HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.one_of(st.text(max_size=4), st.integers()), max_size=3),
    st.binary(max_size=4),
)
FIELDS = [
    "budget",
    "frozen_rank",
    "projection_dim",
    "tie_mode",
    "tie_factor",
    "target_modules",
    "seed",
    "alpha",
    "lora_alpha",
    "svd_method",
    "svd_dtype",
    "svd_power_iters",
    "svd_oversample",
    "svd_cache_dir",
]


@settings(max_examples=300, deadline=None)
@given(values=st.dictionaries(st.sampled_from(FIELDS), HOSTILE, max_size=4))
def test_hostile_values_either_validate_or_raise_the_config_error_quickly(values):
    start = time.perf_counter()
    try:
        c = TinyLoRAConfig(**values)
    except TinyLoRAConfigError:
        pass
    else:  # what is accepted is within bounds and of plain types
        assert math.isfinite(c.alpha) and 0 < abs(c.alpha) <= MAX_SCALE
        assert isinstance(c.seed, int) and 0 <= c.seed <= MAX_SEED
        assert c.budget is None or 1 <= c.budget * c.frozen_rank**2 <= MAX_PROJECTION_ENTRIES
        assert 0 <= c.svd_power_iters <= MAX_POWER_ITERS and not isinstance(c.svd_power_iters, bool)
        assert c.target_modules and all(isinstance(t, str) and t for t in c.target_modules)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "settings,message",
    [
        (
            dict(frozen_rank=0),
            "frozen_rank=0 must be an integer from 1 to 2048: the paper uses 2 (frozen_rank=2)",
        ),
        (
            dict(tie_factor=0),
            "tie_factor=0 must be an integer from 1 to 4194304 or None: None lets the planner choose",
        ),
        (
            dict(budget=None, projection_dim=None),
            "budget and projection_dim are both None: set budget (e.g. 13) or projection_dim (u)",
        ),
        (
            dict(target_modules=[" q"]),
            "target_modules=[' q'] must be a non-empty list of module-name suffixes (non-empty strings without "
            "surrounding spaces), e.g. ['q_proj', 'v_proj']",
        ),
        (
            dict(alpha=float("nan")),
            "alpha=nan must be a finite non-zero number with |alpha| <= 1e+06: 1.0 is the paper's formula",
        ),
        (
            dict(lora_alpha=0),
            "lora_alpha=0 must be a finite non-zero number with |lora_alpha| <= 1e+06: the authors' scripts use "
            "32; None is the paper's formula",
        ),
        (dict(svd_power_iters=-1), "svd_power_iters=-1 must be an integer from 0 to 32: the default is 6"),
        (
            dict(svd_oversample=(1 << 20) + 1),
            "svd_oversample=1048577 must be an integer from 0 to 1048576: the default is 8 (capped by min(out, in))",
        ),
        (
            dict(budget=0),
            "budget=0 must be an integer from 1 to 1048576 or None: budget * frozen_rank^2 <= 4194304",
        ),
        (
            dict(budget=0, frozen_rank=1),
            "budget=0 must be an integer from 1 to 4194304 or None: budget * frozen_rank^2 <= 4194304",
        ),
    ],
)
def test_each_refusal_in_full(settings, message):
    with pytest.raises(TinyLoRAConfigError) as err:
        TinyLoRAConfig(**settings)
    assert str(err.value) == "invalid TinyLoRAConfig:\n  - " + message
    TinyLoRAConfig(svd_oversample=1 << 20)  # the limit itself is allowed


def test_errors_are_listed_one_per_line():
    with pytest.raises(TinyLoRAConfigError) as err:
        TinyLoRAConfig(svd_power_iters=-1, svd_oversample=-1)
    assert str(err.value) == (
        "invalid TinyLoRAConfig:\n  - svd_power_iters=-1 must be an integer from 0 to 32: the default is 6\n"
        "  - svd_oversample=-1 must be an integer from 0 to 1048576: the default is 8 (capped by min(out, in))"
    )


def test_an_invalid_rank_leaves_the_budget_cap_at_the_full_limit_and_u_may_be_1():
    assert TinyLoRAConfig(budget=None, projection_dim=1).projection_dim == 1
    with pytest.raises(TinyLoRAConfigError) as err:
        TinyLoRAConfig(frozen_rank=0, budget=0)
    assert str(err.value) == (
        "invalid TinyLoRAConfig:\n  - frozen_rank=0 must be an integer from 1 to 2048: the paper uses 2 "
        "(frozen_rank=2)\n  - budget=0 must be an integer from 1 to 4194304 or None: budget * frozen_rank^2 <= "
        "4194304"
    )
