"""Checkpoints refuse edited metadata: a checksum over tinylora_config.json, an exact hash of P, the tying
and the base fingerprint (even when a forger recomputes the checksum); NaN/inf v refused; the SVD's bits
compared with a tolerance; version-1 files (no checksum) load only when their factor hash matches."""

import json
import logging
import re

import pytest
import torch
from safetensors.torch import save_file

from tests.adapter.support import logits, randomize, small_model
from tinylora_verl.adapter import AdapterLoadError, TinyLoRAConfig, apply_tinylora, load_adapter
from tinylora_verl.adapter.metadata import CHECKSUM_KEY, CONFIG_NAME, WEIGHTS_NAME, adapter_path, seal


@pytest.fixture
def saved(tmp_path):
    handle = apply_tinylora(small_model(), TinyLoRAConfig(budget=4, seed=3, lora_alpha=32))
    randomize(handle, seed=1)
    handle.save_adapter(tmp_path / "a")
    return tmp_path / "a", logits(handle.model)


def meta_of(path):
    return json.loads((path / CONFIG_NAME).read_text())


def write(path, meta, reseal):
    (path / CONFIG_NAME).write_text(json.dumps(seal(meta) if reseal else meta))


def edit(path, where, key, value, reseal=False):
    meta = meta_of(path)
    (meta if where is None else meta[where])[key] = value
    write(path, meta, reseal)


EDITS = [
    ("config", "seed", 4),
    ("config", "frozen_rank", 1),
    ("config", "alpha", 2.0),
    ("config", "lora_alpha", 16.0),
    ("config", "lora_alpha", None),
    ("config", "tie_mode", "structured"),
    ("config", "budget", 7),
    ("config", "target_modules", ["q_proj"]),
    ("config", "svd_method", "exact"),
    ("plan", "group_of_module", [0] * 14),
    ("plan", "projection_dim", 2),
    ("base_model", "fingerprint", "0" * 64),
    (None, "projection_sha256", "0" * 64),
    (None, "factor_hash", "0" * 64),
    (None, "singular_value_sums", [1.0, 2.0]),
]


@pytest.mark.parametrize("where,key,value", EDITS, ids=[f"{w}.{k}-{i}" for i, (w, k, _) in enumerate(EDITS)])
def test_any_edited_value_is_refused_by_the_checksum(saved, where, key, value):
    path, _ = saved
    edit(path, where, key, value)
    with pytest.raises(AdapterLoadError, match="was edited after it was saved .*restore the file"):
        load_adapter(small_model(), path)


def test_layout_changes_that_keep_the_values_still_load(saved):
    path, want = saved
    meta = meta_of(path)
    (path / CONFIG_NAME).write_text(json.dumps(dict(reversed(list(meta.items()))), indent=4))
    model = small_model()
    load_adapter(model, path)
    assert torch.equal(logits(model), want)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("seed", 4, "P matrices its config regenerates \\(seed=4, frozen_rank=2, u=1\\) are not the ones"),
        ("frozen_rank", 1, "P matrices its config regenerates \\(seed=3, frozen_rank=1"),
        ("svd_power_iters", 3, None),  # not part of P or the tying: the factor check only warns (below)
    ],
)
def test_forged_checksum_on_an_edited_seed_or_rank_is_caught_by_the_exact_P_hash(saved, key, value, match):
    path, _ = saved
    edit(path, "config", key, value, reseal=True)
    if match is None:
        load_adapter(small_model(), path)
        return
    with pytest.raises(AdapterLoadError, match=match):
        load_adapter(small_model(), path)


def test_forged_tying_is_caught_by_the_tying_check(saved):
    path, _ = saved
    meta = meta_of(path)
    meta["plan"]["group_of_module"] = [min(3, g + 1) for g in meta["plan"]["group_of_module"]]
    write(path, meta, reseal=True)
    with pytest.raises(AdapterLoadError, match="the tying it records \\(u=1, 4 groups\\) differs"):
        load_adapter(small_model(), path)


def test_forged_u_is_caught_by_the_tying_check(saved):
    path, _ = saved
    meta = meta_of(path)
    meta["config"]["budget"] = 8  # u = 2 with 4 groups: the recorded plan says u = 1
    write(path, meta, reseal=True)
    with pytest.raises(
        AdapterLoadError, match="the tying it records \\(u=1, 4 groups\\) differs .* \\(u=2, 4 groups\\)"
    ):
        load_adapter(small_model(), path)


def test_forged_fingerprint_is_caught(saved):
    path, _ = saved
    edit(path, "base_model", "fingerprint", "0" * 64, reseal=True)
    with pytest.raises(AdapterLoadError, match="fingerprint mismatch"):
        load_adapter(small_model(), path)


@pytest.mark.parametrize(
    "plan_change,match",
    [
        ({"num_groups": "4"}, "plan must hold positive integers"),
        ({"projection_dim": 0}, "plan must hold positive integers"),
        ({"group_of_module": [0] * 13}, "plan.group_of_module must list a group index"),
        ({"group_of_module": [9] * 14}, "plan.group_of_module must list a group index"),
    ],
)
def test_malformed_fields_are_refused_even_with_a_valid_checksum(saved, plan_change, match):
    path, _ = saved
    meta = meta_of(path)
    meta["plan"].update(plan_change)
    write(path, meta, reseal=True)
    with pytest.raises(AdapterLoadError, match=f"is malformed: {match}"):
        load_adapter(small_model(), path)


def _rewrite_vectors(path, tensors):
    import hashlib

    save_file(tensors, str(path / WEIGHTS_NAME))
    meta = meta_of(path)
    meta["vectors_sha256"] = hashlib.sha256((path / WEIGHTS_NAME).read_bytes()).hexdigest()
    write(path, meta, reseal=True)


def _exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_v_with_matching_checksums_is_refused(saved, bad):
    path, _ = saved
    vs = {f"v.{g}": torch.full((1,), 0.5) for g in range(4)}
    vs["v.2"][0] = bad
    _rewrite_vectors(path, vs)
    message = (
        f"{path / WEIGHTS_NAME}: v.2 holds NaN or inf; the adapter diverged or the file was damaged — load an "
        "earlier checkpoint"
    )
    with pytest.raises(AdapterLoadError, match=_exactly(message)):
        load_adapter(small_model(), path)


def test_vectors_file_missing_damaged_or_holding_other_tensors_is_refused(saved):
    import hashlib

    path, _ = saved
    weights = path / WEIGHTS_NAME
    good = weights.read_bytes()
    weights.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(AdapterLoadError) as err:
        load_adapter(small_model(), path)
    assert str(err.value) == (
        f"{weights} does not match the checksum in {CONFIG_NAME}: the file is corrupt, truncated, or from "
        "another save — restore both files from the same checkpoint"
    )
    weights.write_bytes(b"not a safetensors file")  # with a checksum that matches it
    meta = meta_of(path)
    meta["vectors_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    write(path, meta, reseal=True)
    with pytest.raises(
        AdapterLoadError, match="^" + re.escape(f"{weights} is not a readable safetensors file (") + ".+\\)$"
    ):
        load_adapter(small_model(), path)
    _rewrite_vectors(path, {f"v.{g}": torch.zeros(1) for g in range(6)})
    with pytest.raises(AdapterLoadError) as err:
        load_adapter(small_model(), path)
    assert (
        str(err.value)
        == f"{weights} holds tensors ['v.0', 'v.1', 'v.2', 'v.3', 'v.4']..., expected v.0 .. v.3"
    )
    weights.unlink()
    with pytest.raises(AdapterLoadError) as err:
        load_adapter(small_model(), path)
    assert str(err.value) == f"{weights} does not exist; the adapter directory is incomplete"


def test_v_of_another_dtype_is_refused(saved):
    path, _ = saved
    _rewrite_vectors(path, {f"v.{g}": torch.zeros(1, dtype=torch.float64) for g in range(4)})
    with pytest.raises(AdapterLoadError, match="v.0 is torch.float64 of shape \\(1,\\), expected float32"):
        load_adapter(small_model(), path)


def test_deeply_nested_json_is_a_load_error_not_a_recursion_error(saved):
    path, _ = saved
    (path / CONFIG_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AdapterLoadError, match="is not valid JSON \\(RecursionError"):
        load_adapter(small_model(), path)


def test_recorded_hashes_are_what_they_claim(tmp_path):
    """projection_sha256 is the exact hash of the P that seed, names, u and r regenerate; the singular value
    sums are the float64 sums of S over modules, per rank index (against torch.linalg.svdvals in float64)."""
    from tinylora_verl.adapter.digests import projection_hash
    from tinylora_verl.adapter.functional import random_projections

    cfg = TinyLoRAConfig(budget=4, seed=3, svd_method="exact", svd_dtype="float64")
    apply_tinylora(small_model(), cfg).save_adapter(tmp_path)
    meta = meta_of(tmp_path)
    model = small_model()
    names = [n for n, m in model.named_modules() if n.endswith("_proj")]
    assert meta["projection_sha256"] == projection_hash((n, random_projections(n, 3, 1, 2)) for n in names)
    assert meta["projection_sha256"] != projection_hash((n, random_projections(n, 4, 1, 2)) for n in names)
    sums = torch.zeros(2, dtype=torch.float64)
    for n in names:
        sums += torch.linalg.svdvals(model.get_submodule(n).weight.detach().double())[:2]
    assert meta["singular_value_sums"] == pytest.approx(sums.tolist(), rel=1e-12)
    assert meta[CHECKSUM_KEY] != seal({**meta, "factor_hash": "x"})[CHECKSUM_KEY]


FACTORS_DIFFER = (
    "TinyLoRA SVD factors recomputed here differ from the saved run's (singular values by {} relative, over "
    "the 1e-04 of rounding): the randomized SVD draws its test matrix on the weights' device, so another "
    "device type (or BLAS) gives other factors, and Delta W differs; load it on the device type that trained "
    "it, or train with svd_method='exact' for portable factors"
)


def _messages(caplog) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def test_factor_bits_differing_by_rounding_is_an_info_beyond_it_a_warning(saved, caplog):
    """Another BLAS moves the SVD's last bits: the exact factor hash then differs, the singular value sums
    agree within 1e-4 (info); a bigger difference (another device's random test matrix) is a warning."""
    path, want = saved
    meta = meta_of(path)
    meta["factor_hash"] = "0" * 64  # as if recomputed elsewhere
    write(path, meta, reseal=True)
    caplog.set_level(logging.INFO, logger="tinylora_verl.adapter.checkpoint")
    model = small_model()
    load_adapter(model, path)
    assert torch.equal(logits(model), want)
    info = "TinyLoRA factors differ from the saved run's in their last bits only (rel 0.0e+00)"
    assert _messages(caplog) == [(logging.INFO, info)]
    caplog.clear()
    meta["singular_value_sums"] = [s * (1 + 1e-3) for s in meta["singular_value_sums"]]
    write(path, meta, reseal=True)
    load_adapter(small_model(), path)
    assert _messages(caplog) == [(logging.WARNING, FACTORS_DIFFER.format("1.0e-03"))]
    caplog.clear()
    meta["singular_value_sums"] = []  # no sums to compare (a forged file): a warning, not a crash
    write(path, meta, reseal=True)
    load_adapter(small_model(), path)
    assert _messages(caplog) == [(logging.WARNING, FACTORS_DIFFER.format("0.0e+00"))]


def test_a_difference_of_exactly_the_tolerance_is_rounding(saved, caplog, monkeypatch):
    from tinylora_verl.adapter import checkpoint

    path, _ = saved
    meta = meta_of(path)
    here = meta["singular_value_sums"]
    meta["factor_hash"] = "0" * 64
    meta["singular_value_sums"] = [a * (1 + 1e-3) for a in here]
    write(path, meta, reseal=True)
    rel = max(abs(a - b) / abs(b) for a, b in zip(here, meta["singular_value_sums"]))  # the loader's formula
    monkeypatch.setattr(checkpoint, "SVD_SUM_RTOL", rel)  # the tolerance is exactly the difference
    caplog.set_level(logging.INFO, logger="tinylora_verl.adapter.checkpoint")
    load_adapter(small_model(), path)
    assert _messages(caplog) == [
        (logging.INFO, "TinyLoRA factors differ from the saved run's in their last bits only (rel 1.0e-03)")
    ]


def test_factor_difference_is_relative_to_small_singular_values(tmp_path, caplog):
    """Weights scaled by 1e-6: the sums are tiny, and a 1e-3 relative difference is still a warning."""
    model = small_model()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-6)
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4))
    handle.save_adapter(tmp_path / "a")
    meta = meta_of(tmp_path / "a")
    assert max(meta["singular_value_sums"]) < 1e-3
    meta["factor_hash"] = "0" * 64
    meta["singular_value_sums"] = [s * (1 + 1e-3) for s in meta["singular_value_sums"]]
    write(tmp_path / "a", meta, reseal=True)
    caplog.set_level(logging.INFO, logger="tinylora_verl.adapter.checkpoint")
    fresh = small_model()
    with torch.no_grad():
        for p in fresh.parameters():
            p.mul_(1e-6)
    load_adapter(fresh, tmp_path / "a")
    assert _messages(caplog) == [(logging.WARNING, FACTORS_DIFFER.format("1.0e-03"))]


def _as_version_1(path, **config_changes):
    meta = meta_of(path)
    for k in (CHECKSUM_KEY, "projection_sha256", "singular_value_sums"):
        meta.pop(k)
    meta["format_version"] = 1
    meta["config"].update(config_changes)
    write(path, meta, reseal=False)


def test_version_1_file_loads_when_its_factor_hash_matches(saved, caplog):
    path, want = saved
    _as_version_1(path)
    model = small_model()
    load_adapter(model, path)
    assert torch.equal(logits(model), want)
    warned = f"{path / CONFIG_NAME} is a version-1 adapter without a metadata checksum: save it again to protect it"
    assert (logging.WARNING, warned) in _messages(caplog)


def test_version_1_file_with_an_edited_seed_is_refused(saved):
    path, _ = saved
    _as_version_1(path, seed=4)
    with pytest.raises(AdapterLoadError) as err:
        load_adapter(small_model(), path)
    assert str(err.value) == (
        f"{adapter_path(path, CONFIG_NAME)} is a version-1 file (no metadata checksum, no separate P hash) and "
        "the factors recomputed here differ from its factor_hash, so an edited seed or rank cannot be told "
        "from another BLAS: load it on the machine type that saved it and save it again with this version"
    )


@pytest.mark.parametrize("bad", [None, 3, ""])
def test_a_directory_that_is_not_a_path_is_a_load_error(bad):
    model = small_model()
    with pytest.raises(AdapterLoadError, match="the adapter directory must be a path"):
        load_adapter(model, bad)


@pytest.mark.parametrize("name", [CONFIG_NAME, WEIGHTS_NAME])
def test_oversized_files_are_refused_before_they_are_read(saved, monkeypatch, name):
    from tinylora_verl.adapter import checkpoint, metadata

    path, _ = saved
    monkeypatch.setattr(metadata, "MAX_CONFIG_BYTES", 100)
    monkeypatch.setattr(checkpoint, "MAX_WEIGHTS_BYTES", 100)
    if name == WEIGHTS_NAME:
        monkeypatch.setattr(metadata, "MAX_CONFIG_BYTES", 1 << 20)
    size = (path / name).stat().st_size
    with pytest.raises(AdapterLoadError, match=f"{name} is {size} bytes, more than the 100"):
        load_adapter(small_model(), path)


def test_size_limits_fit_the_largest_adapter_the_limits_allow():
    from tinylora_verl.adapter.limits import MAX_PROJECTION_ENTRIES
    from tinylora_verl.adapter.metadata import MAX_CONFIG_BYTES, MAX_WEIGHTS_BYTES

    assert MAX_WEIGHTS_BYTES >= 4 * MAX_PROJECTION_ENTRIES  # every v entry in float32
    assert MAX_CONFIG_BYTES >= 8 * 100_000  # a group index for each of 100k modules


def test_metadata_refusals_name_the_file_and_what_is_wrong(saved, monkeypatch):
    from tinylora_verl.adapter import metadata
    from tinylora_verl.adapter.metadata import read_metadata

    path, _ = saved
    config = path / CONFIG_NAME
    good = meta_of(path)

    def refused(meta=None, text=None) -> str:
        config.write_text(text if text is not None else json.dumps(meta))
        with pytest.raises(AdapterLoadError) as err:
            read_metadata(path)
        return str(err.value)

    malformed = f"{config} is malformed: {{}} — restore it from the checkpoint"
    group = {**good["plan"], "group_of_module": [0] * 13 + [good["plan"]["num_groups"]]}  # one past the last
    assert refused(seal({**good, "plan": group})) == malformed.format(
        "plan.group_of_module must list a group index for each of plan.num_modules modules"
    )
    assert refused(seal({**good, "base_model": {**good["base_model"], "fingerprint": 5}, "config": []})) == (
        malformed.format("base_model.fingerprint must be a string; config must be a mapping")
    )
    for sums in ("1.0", [1.0, float("nan")], [1.0, "2"]):
        assert refused(seal({**good, "singular_value_sums": sums})) == malformed.format(
            "singular_value_sums must be a list of finite numbers"
        )
    assert refused(["a", "list"]) == f"{config} is not a tinylora-verl-adapter file (format=None)"
    assert (
        refused({**good, "format": "peft"}) == f"{config} is not a tinylora-verl-adapter file (format='peft')"
    )
    try:
        json.loads("{")
    except json.JSONDecodeError as err:
        why = str(err)
    assert refused(text="{") == (
        f"{config} is not valid JSON (JSONDecodeError: {why}); the file is corrupt or truncated — restore it "
        "from the checkpoint it came from"
    )
    config.write_text(json.dumps(good))
    size = config.stat().st_size
    monkeypatch.setattr(metadata, "MAX_CONFIG_BYTES", size)
    assert read_metadata(path) == good  # a file of exactly the limit is read
    monkeypatch.setattr(metadata, "MAX_CONFIG_BYTES", size - 1)
    assert refused(good) == (
        f"{config} is {size} bytes, more than the {size - 1} any adapter file can have: it is not a TinyLoRA "
        "checkpoint file — restore it from the checkpoint it came from"
    )
    config.unlink()
    with pytest.raises(AdapterLoadError) as err:
        read_metadata(path)
    assert str(err.value) == (
        f"{config} does not exist: {path} is not a TinyLoRA adapter directory (expected {CONFIG_NAME} and "
        f"{WEIGHTS_NAME}, written by save_adapter)"
    )


def test_version_fields_checksum_and_recipe_refusals(saved):
    from tinylora_verl.adapter.metadata import read_metadata

    path, _ = saved
    config = path / CONFIG_NAME
    good = meta_of(path)

    def refused(meta) -> str:
        config.write_text(json.dumps(meta))
        with pytest.raises(AdapterLoadError) as err:
            read_metadata(path)
        return str(err.value)

    for version in (3, True, "2"):
        assert refused({**good, "format_version": version}) == (
            f"{config} has format_version={version!r}; this tinylora_verl reads versions [1, 2]. Use the "
            "tinylora_verl release that wrote it (or a newer one)."
        )
    assert refused({k: v for k, v in good.items() if k != "factor_hash"}) == (
        f"{config} lacks the fields ['factor_hash']; the file is incomplete"
    )
    assert refused({**good, "factor_hash": "0" * 64}) == (
        f"{config} was edited after it was saved (metadata_sha256 does not match its contents): the seed, "
        "frozen rank, alpha, tying and hashes it records define the adapter and cannot be changed — restore the "
        "file from the checkpoint it came from, or train a new adapter with the settings you want"
    )
    assert refused(seal({**good, "projection_recipe": "torch-randn/0"})) == (
        f"{config} was made with P recipe 'torch-randn/0'; this version generates 'blake2b-boxmuller/1' and "
        "cannot rebuild its P matrices"
    )


def test_saved_files_are_the_documented_format(tmp_path):
    import hashlib

    from safetensors import safe_open

    model = small_model()
    model.config._name_or_path, model.config._commit_hash = "org/base", "abc123"
    handle = apply_tinylora(model, TinyLoRAConfig(budget=4))
    randomize(handle, seed=3)
    with torch.no_grad():  # v held in bf16 (a model cast after apply_tinylora): saved as float32 anyway
        for p in handle.vectors.v:
            p.data = p.data.to(torch.bfloat16)
    out = tmp_path / "new" / "nested"
    handle.save_adapter(out)
    with safe_open(str(out / WEIGHTS_NAME), "pt") as f:
        assert f.metadata() == {"format": "tinylora-verl-adapter", "format_version": "2"}
        assert sorted(f.keys()) == ["v.0", "v.1", "v.2", "v.3"]
        for g, p in enumerate(handle.vectors.v):
            t = f.get_tensor(f"v.{g}")
            assert t.dtype == torch.float32 and torch.equal(t, p.detach().float())
    text = (out / CONFIG_NAME).read_text()
    meta = json.loads(text)
    assert text == json.dumps(meta, indent=1) + "\n"
    modules = list(handle.layers)
    assert meta["base_model"] == {
        "name_or_path": "org/base",
        "revision": "abc123",
        "architecture": "Qwen2ForCausalLM",
        "fingerprint": handle.base_fingerprint(),
    }
    assert meta["plan"] == {
        "projection_dim": 1,
        "tie_mode": "tiled",
        "tie_factor": handle.plan.tie_factor,
        "num_groups": 4,
        "num_trainable": 4,
        "num_modules": 14,
        "modules_sha256": hashlib.sha256("\n".join(modules).encode()).hexdigest(),
        "group_of_module": [handle.plan.group_of[m] for m in modules],
    }
    sums = torch.stack([layer.tinylora_S.double() for layer in handle.layers.values()]).sum(0).tolist()
    assert meta["singular_value_sums"] == sums  # summed in float64
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert meta["metadata_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert meta["vectors_sha256"] == hashlib.sha256((out / WEIGHTS_NAME).read_bytes()).hexdigest()


def test_base_model_info_falls_back_on_name_or_path_then_unnamed():
    from types import SimpleNamespace

    from tinylora_verl.adapter.checkpoint import _base_model_info

    class Bare(torch.nn.Module):
        pass

    plain = Bare()
    assert _base_model_info(plain) == {"name_or_path": "(unnamed)", "revision": None, "architecture": "Bare"}
    plain.config = SimpleNamespace(name_or_path="hub/name", _commit_hash="c0ffee")
    assert _base_model_info(plain) == {
        "name_or_path": "hub/name",
        "revision": "c0ffee",
        "architecture": "Bare",
    }
    plain.config = SimpleNamespace(_name_or_path="local/dir", name_or_path="hub/name")  # HF's own field first
    assert _base_model_info(plain)["name_or_path"] == "local/dir"
    plain.config = SimpleNamespace(_name_or_path="", name_or_path="")
    assert _base_model_info(plain)["name_or_path"] == "(unnamed)"


def test_metadata_checksum_and_base_fingerprint_are_the_documented_hashes(monkeypatch):
    import hashlib

    from tinylora_verl.adapter import digests
    from tinylora_verl.adapter.metadata import metadata_checksum, modules_sha256

    assert (
        metadata_checksum({"b": 1, "a": [1, 2], "metadata_sha256": "x"})
        == hashlib.sha256(b'{"a":[1,2],"b":1}').hexdigest()
    )
    assert modules_sha256(["a", "b"]) == hashlib.sha256(b"a\nb").hexdigest()

    def reference(weights, stride):
        h = hashlib.sha256()
        for name, w in weights:
            h.update(f"{name}|{tuple(w.shape)}|".encode())
            h.update(w.reshape(-1)[::stride].to(torch.bfloat16).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    w = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(digests, "FINGERPRINT_SAMPLES", 8)  # 15 entries: stride 1
    assert digests.base_fingerprint([("m", w)]) == reference([("m", w)], 1)
    monkeypatch.setattr(digests, "FINGERPRINT_SAMPLES", 4)  # stride 15 // 4 = 3
    assert digests.base_fingerprint([("m", w), ("n", w.T)]) == reference([("m", w), ("n", w.T)], 3)
