"""Loading Hugging Face models from a local directory, a GGUF file, or the hub (for real users).

Nothing here downloads unless given a hub id and the network allows it; tests use local copies.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .errors import InvalidValue, MissingPath, UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _split_gguf(path: str) -> tuple[str, str | None]:
    p = Path(path)
    if p.suffix == ".gguf":
        return str(p.parent), p.name
    if p.is_dir():
        ggufs = sorted(p.glob("*.gguf"))
        if ggufs and not (p / "config.json").exists():
            return str(p), ggufs[0].name
    return path, None


def check_model_path(path: str) -> None:
    """Fail early, with a clear message, on a local-looking path that does not exist."""
    looks_local = path.startswith((".", "/", "~")) or os.sep in path.strip("/").split("/", 2)[-1]
    if looks_local and not Path(path).expanduser().exists():
        raise MissingPath(
            f"model path {path!r} does not exist (give a local HF model directory, a .gguf "
            "file, or a hub id such as Qwen/Qwen2.5-7B-Instruct)"
        )
    p = Path(path).expanduser()
    if p.is_dir() and not (p / "config.json").is_file() and not any(p.glob("*.gguf")):
        raise MissingPath(
            f"model path {path!r} is a directory without config.json or a .gguf file: not a model "
            "(give a local HF model directory, a .gguf file, or a hub id)"
        )


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def load_causal_lm(path: str, dtype: str = "float32", device: str = "cpu") -> nn.Module:
    """AutoModelForCausalLM from a directory, a .gguf file (dequantised), or a hub id."""
    from transformers import AutoModelForCausalLM

    check_model_path(path)
    if dtype not in DTYPES:
        raise InvalidValue(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    directory, gguf = _split_gguf(str(Path(path).expanduser()) if Path(path).expanduser().exists() else path)
    kwargs = {"dtype": DTYPES[dtype]}
    if gguf:
        kwargs["gguf_file"] = gguf
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
    except OSError as err:  # transformers' "not a model directory / unknown hub id / no access"
        raise UserError(f"cannot load a model from {path!r}: {_first_line(err)}") from None
    return model.to(device).eval()


def load_on_meta(path: str) -> nn.Module:
    """The model's module tree with no weights (for planning): config only, on the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    check_model_path(path)
    directory, gguf = _split_gguf(path)
    try:
        config = AutoConfig.from_pretrained(directory, **({"gguf_file": gguf} if gguf else {}))
    except OSError as err:  # transformers' "not a model directory / unknown hub id / no access"
        raise UserError(f"cannot read a model config from {path!r}: {_first_line(err)}") from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
