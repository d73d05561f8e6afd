"""One-GPU check of TinyLoRA's training and sync building blocks: correctness on CUDA plus three figures.

    PYTHONPATH=. python bench/gpu_check.py --out $OUT/gpu_check.json          # one CUDA GPU, ~minutes
    PYTHONPATH=. python bench/gpu_check.py --device cpu --small --out x.json  # plumbing test on a CPU

Needs only torch, transformers (and safetensors, which it brings) and this repository: no verl, no vLLM,
no Ray. `vllm` and `ray` are made unimportable at start-up (sys.modules[name] = None), so an indirect
import of either fails here as it would on a machine without them; the JSON records which of
verl/vllm/ray/omegaconf/hydra ended up imported (none, when run as intended).

Checks (each prints PASS/FAIL or a figure; the process exits 1 if a correctness check fails, 2 when
--device cuda finds no CUDA device, 0 otherwise):

a. FSDP2 + TinyLoRA on one rank, bf16 mixed precision (param_dtype bf16, reduce_dtype fp32), without
   and with FSDP2's CPUOffloadPolicy. NOT verl's `TinyLoRAFSDPEngine` itself: importing
   tinylora_verl/verl_seam/engine.py imports verl's FSDP engine, which imports Ray, tensordict, pyarrow,
   datasets ... (compiled packages a bare torch machine lacks). The check uses the same building blocks
   in the same order as the engine and verl's `apply_fsdp2`: a small Qwen2 built from a config in
   float32 on the host, `apply_tinylora` on the full unsharded weights (the engine's
   `_build_lora_module`), `fully_shard` on every decoder layer then on the root with
   MixedPrecisionPolicy(bf16, fp32, cast_forward_inputs) and optionally CPUOffloadPolicy(pin_memory=True),
   in a world-size-1 process group (MASTER_ADDR=127.0.0.1; backend "cpu:gloo,cuda:nccl" as verl's,
   "gloo" on a CPU). verl's `fsdp2_load_full_state_dict` (a broadcast from rank 0) is skipped: with one
   rank there is nothing to broadcast, and fully_shard places the shards itself. Then one
   forward+backward (+ an AdamW step on v): PASS when exactly the v tensors have a gradient, finite and
   non-zero, and the merged weights the trainer's sync sends (sync/sender.py `SyncSender.merged`, the
   engine's own code: the all-gathered base weight and v, with the CPU-offloaded shard first moved to
   the device, as verl's own weight stream does `param.to(device).full_tensor()`) are finite and equal
   (torch.equal) to the merge of a copy of the weight taken before sharding, and the projections
   computed with bf16 weights (a forward pre-hook reads the dtype).
   In --device cpu mode (gloo, a cpu mesh) both cases run, but the offload one is nominal: the policy's
   code path (unpinned, since pinning needs an accelerator) with nothing to move.
b. Rollout-side merge (sync/receiver.py `VectorSyncReceiver`, device cuda) vs the trainer's merged
   weights, bf16 and fp32, on a small Qwen2 with all 7 projections adapted and with 5 of 7 (so k_proj and
   gate_proj travel as fused siblings): a setup stream then a vector stream (the trainer's
   `SyncSender` in vector mode, as the engine sends them), each followed by `finish()`; PASS when every returned tensor
   is torch.equal (same dtype) to the trainer's and the names match exactly.
c. Receiver peak device memory at Qwen2.5-7B layer shapes (bench/shapes.py): synthetic bf16 weights and
   factors for --layers decoder layers (default 2), `torch.cuda.max_memory_allocated` over the
   iteration of `finish(device)` (each tensor is dropped once received, as a loader would). Works
   whether finish() returns a list or yields one module at a time; the JSON says which. Reported as
   the peak extra bytes and as a multiple of the largest single module in fp32 (gate/up/down_proj,
   18944 x 3584 x 4 B). On a CPU the shapes are scaled down and no peak is measured (null).
d. TinyLoRA fwd+bwd time over the frozen base's, one decoder layer's 7 projections at 7B shapes in
   bf16 (batch x seq tokens, default 4 x 512), the same nn.Linear modules with the adapter on (gradient
   for the inputs and v) or off (gradient for the inputs only). CUDA events, rounds interleaved in a
   shuffled order, median of per-round ratios. Projections only: the attention and MLP element-wise work
   of a real layer (bench/adapter.py measures whole layers) would dilute the ratio, so this is the
   upper end.
"""

from __future__ import annotations

import sys

for _name in ("vllm", "ray"):  # not on the target machine: make any indirect import fail here too
    sys.modules.setdefault(_name, None)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.shapes import SHAPES  # noqa: E402
from tinylora_verl.adapter import TinyLoRAConfig, apply_tinylora  # noqa: E402
from tinylora_verl.adapter.functional import merged_weight, random_projections  # noqa: E402
from tinylora_verl.adapter.layer import TinyLoRALinear, TinyLoRAVectors  # noqa: E402
from tinylora_verl.adapter.model import CONTAINER  # noqa: E402
from tinylora_verl.sync import wire  # noqa: E402
from tinylora_verl.sync.receiver import VectorSyncReceiver  # noqa: E402
from tinylora_verl.sync.sender import SyncSender  # noqa: E402

ALL7 = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PARTIAL5 = ("q_proj", "v_proj", "o_proj", "up_proj", "down_proj")  # k_proj, gate_proj: fused siblings
WATCHED = ("verl", "vllm", "ray", "omegaconf", "hydra")
SMALL_SHAPES = dict(hidden_size=256, intermediate_size=1024, num_attention_heads=8, num_key_value_heads=2)


def log(msg: str) -> None:
    print(msg, flush=True)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def small_qwen2(dtype: torch.dtype, layers: int = 2, seed: int = 0) -> nn.Module:
    """A random Qwen2ForCausalLM from a config (hidden 64, head_dim 32, untied lm_head like 7B), on the host."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=512,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # HF init leaves exact zeros/ones; give every weight a distinct spectrum
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.to(dtype)


def set_vectors(handle, scale: float, step: int = 1) -> None:
    with torch.no_grad():
        for g, p in enumerate(handle.vectors.v):
            p.copy_(
                torch.sin(torch.arange(p.numel(), dtype=torch.float32) + 0.37 * step + g).to(p.device) * scale
            )


def layer_shapes(shape: dict) -> list[tuple[str, tuple[int, int]]]:
    """(projection, (out, in)) of one Qwen2 decoder layer."""
    h, i = shape["hidden_size"], shape["intermediate_size"]
    kv = h // shape["num_attention_heads"] * shape["num_key_value_heads"]
    return [
        ("self_attn.q_proj", (h, h)),
        ("self_attn.k_proj", (kv, h)),
        ("self_attn.v_proj", (kv, h)),
        ("self_attn.o_proj", (h, h)),
        ("mlp.gate_proj", (i, h)),
        ("mlp.up_proj", (i, h)),
        ("mlp.down_proj", (h, i)),
    ]


# ---- a. FSDP2 ----------------------------------------------------------------------------------------


def _fsdp2():
    try:
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
    return CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard


def init_process_group(dev: torch.device) -> None:
    dist = torch.distributed
    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"
    )
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl", rank=0, world_size=1, device_id=dev)
    else:
        dist.init_process_group(backend="gloo", rank=0, world_size=1)


def full_on(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """The whole tensor on `dev`: a DTensor shard (on the host under CPU offload) is moved, then all-gathered."""
    from torch.distributed.tensor import DTensor

    if isinstance(t, DTensor):
        return t.to(dev).full_tensor()
    return t.to(dev)


def check_fsdp2(dev: torch.device, offload: bool) -> dict:
    CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard = _fsdp2()
    from torch.distributed.device_mesh import init_device_mesh

    init_process_group(dev)
    model = small_qwen2(torch.float32, layers=2)  # verl loads the actor in fp32 on the host
    handle = apply_tinylora(model, TinyLoRAConfig(budget=13, frozen_rank=2, tie_mode="tiled", seed=0))
    pre_shard = {n: l.base_layer.weight.detach().clone() for n, l in handle.layers.items()}
    v_names = {f"{CONTAINER}.v.{g}" for g in range(len(handle.vectors.v))}
    mesh = init_device_mesh(dev.type, (1,))
    kwargs = dict(
        mesh=mesh,
        mp_policy=MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=True
        ),
    )
    if offload:
        kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=dev.type == "cuda")
    for layer in model.model.layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    if offload:  # what verl's fsdp2_load_full_state_dict does with an offload policy: buffers on the device
        for buf in model.buffers():
            buf.data = buf.data.to(dev)
    model.train()
    w0 = handle.layers[next(iter(handle.layers))].base_layer.weight
    placement = {
        "param_type": type(w0).__name__,
        "param_device": str(w0.device),
        "param_local_dtype": str(getattr(w0, "_local_tensor", w0).dtype),
    }

    seen = {}  # the weight dtype a projection computes with (bf16 under the mixed-precision policy)
    first = handle.layers[next(iter(handle.layers))]
    hook = first.base_layer.register_forward_pre_hook(
        lambda mod, args: seen.setdefault("compute_dtype", str(mod.weight.dtype)) and None
    )
    opt = torch.optim.AdamW(handle.trainable_parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, 32), generator=gen).to(dev)
    t0 = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    sync(dev)
    step_s = time.perf_counter() - t0
    hook.remove()
    with_grad = sorted(n for n, p in model.named_parameters() if p.grad is not None)
    grad_dtype = str(handle.vectors.v[0].grad.dtype) if handle.vectors.v[0].grad is not None else None
    grads = [full_on(p.grad, dev) for p in handle.vectors.v]
    grad_ok = all(g is not None and bool(torch.isfinite(g).all()) and bool(g.abs().sum() > 0) for g in grads)
    opt.step()
    opt.zero_grad(set_to_none=True)

    # what the trainer's sync sends: SyncSender.merged = merged_weight(full(W_base), U, S, V, P, full(v)[g])
    sender = SyncSender(handle, model, device=dev)
    vectors = sender.vectors()
    v_moved = any(bool(v.abs().sum() > 0) for v in vectors)
    finite = equal = True
    names = list(handle.layers)
    for name in names:
        layer = handle.layers[name]
        m = sender.merged(name, vectors)
        ref = merged_weight(
            pre_shard[name].to(dev),
            layer.tinylora_U,
            layer.tinylora_S,
            layer.tinylora_V,
            layer.tinylora_P,
            vectors[layer.group],
            layer.alpha,
        )
        finite &= bool(torch.isfinite(m).all())
        equal &= m.dtype == ref.dtype and torch.equal(m, ref)
    only_v = set(with_grad) == v_names
    bf16 = seen.get("compute_dtype") == "torch.bfloat16"
    ok = only_v and grad_ok and v_moved and finite and equal and bf16 and math.isfinite(loss.item())
    detail = (
        f"computes in {seen.get('compute_dtype', '?').replace('torch.', '')}, "
        f"grad on {len(with_grad)} tensor(s) ({'only v' if only_v else with_grad[:4]}, {grad_dtype}), "
        f"{len(names)} merged {'finite' if finite else 'NOT finite'}, "
        f"{'==' if equal else '!='} pre-shard merge"
    )
    return {
        "pass": ok,
        "detail": detail,
        "loss": loss.item(),
        "params_with_grad": with_grad,
        "v_grad_finite_nonzero": grad_ok,
        "v_changed_by_step": v_moved,
        "merged_finite": finite,
        "merged_equal_pre_shard": equal,
        "modules": len(names),
        "compute_dtype": seen.get("compute_dtype"),
        "v_grad_dtype": grad_dtype,
        "step_seconds": step_s,
        "offload": offload,
        **placement,
    }


# ---- b. receiver vs trainer ----------------------------------------------------------------------------


def feed(receiver: VectorSyncReceiver, stream, bucket: int = 8) -> int:
    """Push a stream through begin()/consume() in buckets, as the vLLM worker does; number passed through."""
    receiver.begin()
    items, passed = list(stream), 0
    for i in range(0, len(items), bucket):
        passed += len(receiver.consume(items[i : i + bucket]))
    return passed


def compare(receiver: VectorSyncReceiver, expected: dict[str, torch.Tensor], dev: torch.device) -> dict:
    got_names, bad = [], []
    for name, t in receiver.finish(dev):
        got_names.append(name)
        want = expected.get(name)
        if want is None or t.dtype != want.dtype or t.device.type != dev.type or not torch.equal(t, want):
            bad.append(name)
    return {
        "names_match": sorted(got_names) == sorted(expected),
        "mismatched": bad,
        "tensors": len(got_names),
    }


def check_receiver(dev: torch.device, dtype: torch.dtype, targets: tuple[str, ...]) -> dict:
    model = small_qwen2(dtype, layers=2).to(dev)
    handle = apply_tinylora(
        model, TinyLoRAConfig(budget=13, frozen_rank=2, tie_mode="tiled", seed=0, target_modules=targets)
    )
    sender = SyncSender(handle, model, "vector", device=dev)  # the trainer's side: setup, then vector
    siblings = [n for n in sender.delta_modules() if n not in handle.layers]
    receiver = VectorSyncReceiver()
    rounds = []
    for sync_no, scale in enumerate([0.5, -0.3], start=1):
        set_vectors(handle, scale, sync_no)
        expected = dict(handle.iter_merged_weights())  # the trainer's merge, on the device
        base = {f"{n}.weight": l.base_layer.weight.detach() for n, l in handle.layers.items()}
        changed = sum(int((expected[n] != base[n]).sum()) for n in base)
        numel = sum(w.numel() for w in base.values())
        expected.update({f"{s}.weight": model.get_submodule(s).weight.detach() for s in siblings})
        passed = feed(receiver, sender.stream())
        r = compare(receiver, expected, dev)
        rounds.append(
            {
                "kind": "setup" if sync_no == 1 else "vector",
                "passthrough": passed,
                "changed_frac": changed / numel,
                **r,
            }
        )
    ok = all(r["names_match"] and not r["mismatched"] and r["changed_frac"] > 0 for r in rounds)
    detail = (
        f"{rounds[-1]['tensors']} tensors ({len(handle.layers)} merged + {len(siblings)} siblings) "
        f"{'bit-identical' if ok else 'DIFFER'} after setup and vector syncs; "
        f"{rounds[-1]['changed_frac']:.0%} of entries moved by v"
    )
    return {
        "pass": ok,
        "detail": detail,
        "dtype": str(dtype).replace("torch.", ""),
        "targets": list(targets),
        "adapted": len(handle.layers),
        "siblings": siblings,
        "rounds": rounds,
    }


# ---- c. receiver peak memory -----------------------------------------------------------------------------


def check_receiver_memory(dev: torch.device, shape_name: str, shape: dict, layers: int) -> dict:
    gen = torch.Generator(device=dev).manual_seed(0)
    modules = [(f"model.layers.{i}.{p}", s) for i in range(layers) for p, s in layer_shapes(shape)]
    u, r = 1, 2
    receiver = VectorSyncReceiver()
    meta = {
        "kind": "setup",
        "sync": 1,
        "groups": len(modules),
        "u": u,
        "modules": [[name, g, 1.0] for g, (name, _) in enumerate(modules)],
        "siblings": [],
    }
    receiver.begin()
    receiver.consume([(wire.META, wire.encode_meta(meta))])
    t0 = time.perf_counter()
    for name, (out_f, in_f) in modules:  # one weight at a time: the receiver keeps them on the host
        W = (torch.randn(out_f, in_f, generator=gen, device=dev) * 0.02).to(torch.bfloat16)
        U = torch.linalg.qr(torch.randn(out_f, r, generator=gen, device=dev))[0]
        V = torch.linalg.qr(torch.randn(in_f, r, generator=gen, device=dev))[0]
        S = torch.tensor([3.0, 2.0], device=dev)
        P = random_projections(name, 0, u, r).to(dev)
        receiver.consume(
            [
                (wire.factor_name(name, "U"), U),
                (wire.factor_name(name, "S"), S),
                (wire.factor_name(name, "V"), V),
                (wire.factor_name(name, "P"), P),
                (f"{name}.weight", W),
            ]
        )
        del W, U, V
    v = torch.linspace(-0.05, 0.05, len(modules) * u).reshape(len(modules), u)
    receiver.consume([(wire.VECTOR, v.to(dev))])
    setup_s = time.perf_counter() - t0
    largest_fp32 = max(o * i for _, (o, i) in modules) * 4
    cuda = dev.type == "cuda"
    if cuda:
        sync(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    t0 = time.perf_counter()
    result = receiver.finish(dev)
    kind = "list" if isinstance(result, list) else type(result).__name__
    count, out_bytes, finite, shapes_ok = 0, 0, True, True
    want = dict(modules)
    for name, t in result:
        count += 1
        out_bytes += t.numel() * t.element_size()
        finite &= bool(torch.isfinite(t).all())
        shapes_ok &= tuple(t.shape) == want.get(name.removesuffix(".weight")) and t.dtype == torch.bfloat16
        del t
    del result
    sync(dev)
    merge_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(dev) - before if cuda else None
    ok = count == len(modules) and finite and shapes_ok
    ratio = peak / largest_fp32 if peak is not None else None
    detail = (
        f"{'peak extra ' + _gb(peak) if cuda else 'peak n/a on cpu'}, largest module fp32 {_gb(largest_fp32)}, "
        f"finish() -> {kind}, {count} modules in {merge_s:.2f}s"
        + ("" if ok else " [outputs WRONG: count/shape/dtype/finite]")
    )
    return {
        "pass": ok,
        "figure": ratio,
        "detail": detail,
        "shapes": shape_name,
        "layers": layers,
        "modules": count,
        "finish_returns": kind,
        "peak_extra_bytes": peak,
        "largest_module_fp32_bytes": largest_fp32,
        "peak_over_largest_fp32": ratio,
        "merged_bytes_total": out_bytes,
        "merge_seconds": merge_s,
        "merge_seconds_per_layer": merge_s / layers,
        "merge_seconds_projected_28_layers": merge_s / layers * 28 if shape_name == "qwen2.5-7b" else None,
        "setup_seconds": setup_s,
        "outputs_finite": finite,
        "outputs_shape_dtype_ok": shapes_ok,
    }


def _gb(n) -> str:
    return "n/a" if n is None else f"{n / 2**30:.3f} GiB"


# ---- d. fwd+bwd time ratio ---------------------------------------------------------------------------------


def check_ratio(
    dev: torch.device, shape_name: str, shape: dict, batch: int, seq: int, rounds: int, warmup: int
) -> dict:
    dtype = torch.bfloat16
    torch.manual_seed(0)
    r, u = 2, 1
    vectors = TinyLoRAVectors(1, u).to(dev)  # 7B plan: u=1, tie 16 -> one layer's modules share a v
    with torch.no_grad():
        vectors.v[0].fill_(0.01)
    layers = []
    for name, (out_f, in_f) in layer_shapes(shape):
        base = nn.Linear(in_f, out_f, bias=False, device=dev, dtype=dtype).requires_grad_(False)
        U = torch.linalg.qr(torch.randn(out_f, r, device=dev))[0]
        V = torch.linalg.qr(torch.randn(in_f, r, device=dev))[0]
        P = random_projections(name, 0, u, r).to(dev)
        layers.append(TinyLoRALinear(base, U, torch.tensor([3.0, 2.0], device=dev), V, P, 0, vectors))
    h, i = shape["hidden_size"], shape["intermediate_size"]
    x_h = torch.randn(batch, seq, h, device=dev, dtype=dtype, requires_grad=True)
    x_i = torch.randn(batch, seq, i, device=dev, dtype=dtype, requires_grad=True)
    inputs = [x_i if lin.base_layer.in_features == i and i != h else x_h for lin in layers]
    grad_out = [
        torch.randn(batch, seq, lin.base_layer.out_features, device=dev, dtype=dtype) for lin in layers
    ]
    v = vectors.v[0]

    def step(adapter: bool):
        vectors.enabled = adapter
        outs = [lin(x) for lin, x in zip(layers, inputs)]
        wrt = [x_h, x_i, v] if adapter else [x_h, x_i]
        grads = torch.autograd.grad(outs, wrt, grad_out, allow_unused=False)
        return grads

    cuda = dev.type == "cuda"

    def timed(adapter: bool) -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(adapter)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000
        t0 = time.perf_counter()
        step(adapter)
        return time.perf_counter() - t0

    for _ in range(warmup):
        timed(False)
        timed(True)
    rng = random.Random(0)
    times = {"frozen": [], "tinylora": []}
    for _ in range(rounds):
        order = ["frozen", "tinylora"]
        rng.shuffle(order)
        for name in order:
            times[name].append(timed(name == "tinylora"))
    vectors.enabled = True
    g = step(True)[2]
    ratio = statistics.median(a / b for a, b in zip(times["tinylora"], times["frozen"]))
    fro, tin = statistics.median(times["frozen"]), statistics.median(times["tinylora"])
    ok = bool(torch.isfinite(g).all()) and bool(g.abs().sum() > 0)
    detail = (
        f"frozen {fro * 1e3:.2f} ms, tinylora {tin * 1e3:.2f} ms (median of {rounds}, "
        f"{batch}x{seq} tokens, {'cuda events' if cuda else 'perf_counter'})"
    )
    return {
        "pass": ok,
        "figure": ratio,
        "detail": detail,
        "shapes": shape_name,
        "dtype": "bfloat16",
        "tokens": [batch, seq],
        "rounds": rounds,
        "ratio_median": ratio,
        "frozen_seconds_median": fro,
        "tinylora_seconds_median": tin,
        "seconds": times,
        "v_grad_finite_nonzero": ok,
    }


# ---- driver ----------------------------------------------------------------------------------------------------


def run_check(results: dict, key: str, label: str, fn, *args, on_result=None) -> None:
    log(f"[{key}] {label} ...")
    t0 = time.perf_counter()
    try:
        res = fn(*args)
    except Exception as err:  # noqa: BLE001 (a crash is reported as a failure; the other checks still run)
        tb = traceback.format_exc()
        log(tb)
        res = {
            "pass": False,
            "detail": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}",
            "error": tb[-4000:],
        }
    res["label"] = label
    res["wall_seconds"] = time.perf_counter() - t0
    results[key] = res
    if on_result:
        on_result(results)
    log(f"[{key}] {'PASS' if res['pass'] else 'FAIL'} in {res['wall_seconds']:.1f}s: {res['detail']}")


def table(results: dict) -> str:
    rows = []
    for key, res in results.items():
        fig = res.get("figure")
        if not res["pass"]:
            verdict = "FAIL"
        elif fig is None:
            verdict = "PASS"
        else:
            verdict = f"{fig:.2f}x"
        rows.append((key, res["label"], verdict, res["detail"]))
    w = [max(len(r[i]) for r in rows + [("check", "what", "result", "")]) for i in range(3)]
    head = f"{'check':<{w[0]}}  {'what':<{w[1]}}  {'result':<{w[2]}}  detail"
    lines = [head, "-" * len(head)]
    lines += [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument(
        "--small", action="store_true", help="scaled-down shapes for (c) and (d) (default on cpu)"
    )
    ap.add_argument("--layers", type=int, default=2, help="decoder layers for the receiver memory check (c)")
    ap.add_argument("--batch", type=int, default=None, help="(d) batch; default 4 (cuda) / 2 (cpu)")
    ap.add_argument(
        "--seq", type=int, default=None, help="(d) sequence length; default 512 (cuda) / 64 (cpu)"
    )
    ap.add_argument("--rounds", type=int, default=None, help="(d) timed rounds; default 50 (cuda) / 5 (cpu)")
    ap.add_argument("--skip", default="", help="comma-separated checks to skip: a,b,c,d")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    report = {
        "device": args.device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "argv": sys.argv[1:] if argv is None else list(argv),
    }

    def write(report):
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2, default=str))

    if args.device == "cuda" and not torch.cuda.is_available():
        log("no CUDA device: nothing run")
        write({**report, "status": "no CUDA device: nothing run", "all_pass": None})
        return 2
    dev = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    cuda = dev.type == "cuda"
    small = args.small or not cuda
    import transformers

    report.update(
        transformers=transformers.__version__, gpu=torch.cuda.get_device_name(dev) if cuda else None
    )
    shape_name, shape = ("small", SMALL_SHAPES) if small else ("qwen2.5-7b", SHAPES["qwen2.5-7b"])
    batch = args.batch or (4 if cuda else 2)
    seq = args.seq or (512 if cuda else 64)
    rounds = args.rounds or (50 if cuda else 5)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    log(
        f"gpu_check: device {dev} ({report['gpu'] or platform.processor() or 'cpu'}), torch {torch.__version__}, "
        f"transformers {transformers.__version__}, shapes {shape_name}"
    )

    results: dict[str, dict] = {}

    def check(key, label, fn, *fn_args):  # the JSON is rewritten after every check: a hang loses only one
        run_check(
            results,
            key,
            label,
            fn,
            *fn_args,
            on_result=lambda r: write({**report, "checks": r, "complete": False}),
        )

    if "a" not in skip:
        check("a1", "FSDP2 bf16-mixed, no offload", check_fsdp2, dev, False)
        check(
            "a2",
            "FSDP2 bf16-mixed, CPU offload" + ("" if cuda else " (nominal on cpu)"),
            check_fsdp2,
            dev,
            True,
        )
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if "b" not in skip:
        for dtype in (torch.bfloat16, torch.float32):
            for tag, targets in (("7/7", ALL7), ("5/7", PARTIAL5)):
                dn = str(dtype).replace("torch.", "")
                key = f"b-{'bf16' if dtype == torch.bfloat16 else 'fp32'}-{tag[0]}"
                check(
                    key,
                    f"receiver == trainer merge, {dn}, {tag} adapted",
                    check_receiver,
                    dev,
                    dtype,
                    targets,
                )
    if "c" not in skip:
        check(
            "c",
            f"receiver peak / largest fp32 module, {args.layers} layer(s) {shape_name}",
            check_receiver_memory,
            dev,
            shape_name,
            shape,
            args.layers,
        )
    if "d" not in skip:
        check(
            "d",
            f"fwd+bwd tinylora / frozen, 7 projections {shape_name} bf16",
            check_ratio,
            dev,
            shape_name,
            shape,
            batch,
            seq,
            rounds,
            5 if cuda else 1,
        )

    all_pass = all(r["pass"] for r in results.values())
    report.update(
        checks=results,
        complete=True,
        all_pass=all_pass,
        wall_seconds=time.perf_counter() - start,
        imported={m: m in sys.modules and sys.modules[m] is not None for m in WATCHED},
    )
    print()
    print(table(results))
    print(
        f"\n{'ALL PASS' if all_pass else 'SOME CHECKS FAILED'} in {report['wall_seconds']:.0f}s; imported: "
        + ", ".join(f"{m}={'yes' if v else 'no'}" for m, v in report["imported"].items()),
        flush=True,
    )
    write(report)
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
