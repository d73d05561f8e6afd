"""Factors computed on rank 0 only reach every rank through verl's FSDP2 load (untied embeddings).

verl builds untied-embedding models (Qwen2.5-7B) on the meta device on ranks > 0. The two-rank case runs
verl's own build steps on a tiny untied Qwen2 over gloo (no Ray, no vLLM): `get_init_weight_context_manager`
-> `apply_tinylora_from_rank0` -> `apply_fsdp2` -> `fsdp2_load_full_state_dict` -> `check_factors_match`,
and checks that both ranks hold the factors of the SVD of the full weights and agree on the identity.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny_model import tiny_qwen2, tiny_qwen2_config
from tinylora_verl import TinyLoRAConfig, apply_tinylora
from tinylora_verl.verl_seam.engine import apply_tinylora_from_rank0, check_factors_match

ROOT = Path(__file__).resolve().parents[2]
CFG = dict(budget=4)

RANK_SCRIPT = r"""
import json, os, sys
import torch, torch.distributed as dist
rank, model_dir, out, port = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
dist.init_process_group("gloo", rank=rank, world_size=2)
from torch.distributed.device_mesh import init_device_mesh
from transformers import AutoConfig, AutoModelForCausalLM
from verl.utils.fsdp_utils import apply_fsdp2, fsdp2_load_full_state_dict, get_init_weight_context_manager
from tinylora_verl import TinyLoRAConfig
from tinylora_verl.verl_seam.engine import apply_tinylora_from_rank0, check_factors_match
hf = AutoConfig.from_pretrained(model_dir)
with get_init_weight_context_manager(use_meta_tensor=not hf.tie_word_embeddings)():   # as verl's _build_module
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, config=hf)
on_meta = any(p.is_meta for p in model.parameters())
handle, identity = apply_tinylora_from_rank0(model, TinyLoRAConfig(**json.loads(sys.argv[5])))
mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("fsdp",))
full_state = model.state_dict()                                    # as verl's _build_fsdp_module
apply_fsdp2(model, {"mesh": mesh}, {})
fsdp2_load_full_state_dict(model, full_state, mesh, None)
check_factors_match(handle, identity)
json.dump({"rank": rank, "on_meta": on_meta, "identity": list(identity), "factor_hash": handle.factor_hash()},
          open(os.path.join(out, f"rank{rank}.json"), "w"))
dist.destroy_process_group()
"""


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_untied_two_ranks_get_rank0s_factors(tmp_path):
    model_dir = tmp_path / "model"
    full = tiny_qwen2(tie_word_embeddings=False)
    full.save_pretrained(model_dir)
    want = apply_tinylora(full, TinyLoRAConfig(**CFG))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(VERL_PLATFORM="cpu", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, str(r), str(model_dir), str(tmp_path), port, json.dumps(CFG)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["on_meta"] for r in ranks] == [False, True]  # rank 1 had no weights when TinyLoRA went in
    for r in ranks:
        assert r["factor_hash"] == want.factor_hash()  # the SVD of the full weights, bit for bit
        assert r["identity"] == [want.base_fingerprint(), want.factor_hash()]


def test_check_factors_match_refuses_factors_that_are_not_rank0s():
    from transformers import Qwen2ForCausalLM

    full = tiny_qwen2(tie_word_embeddings=False)
    handle, identity = apply_tinylora_from_rank0(full, TinyLoRAConfig(**CFG))  # one process: rank 0
    assert identity == (handle.base_fingerprint(), handle.factor_hash())
    with torch.device("meta"):
        other = Qwen2ForCausalLM(tiny_qwen2_config(tie_word_embeddings=False))
    placeholder = apply_tinylora(other, TinyLoRAConfig(**CFG), compute_factors=False)
    other.to_empty(device="cpu")
    with torch.no_grad():
        for buf in other.buffers():
            buf.zero_()
    with pytest.raises(RuntimeError, match="differ from rank 0's"):
        check_factors_match(placeholder, identity)
    theirs = dict(full.named_buffers())
    with torch.no_grad():
        for name, buf in other.named_buffers():
            buf.copy_(theirs[name])
    check_factors_match(placeholder, identity)
