"""Peak extra memory of a vector sync on the rollout side, at Qwen2.5-7B shapes (synthetic bf16 weights, CPU).

    python bench/receiver_memory.py [--layers 2] [--out results.json]

A `VectorSyncReceiver` is given a setup stream for N decoder layers of Qwen2.5-7B (7 projections each,
random bf16 weights, real U/S/V/P shapes, u=1), then a vector stream; what its `finish()` yields is
"loaded" (dropped, as vLLM's loader copies it into the engine's own storage). Two ways, each in a fresh
process, side by side:

* before — what `finish()` did until issue 11: every merged weight built (W + ΔW, float32 copies of
  both) into a list before the first one is loaded;
* after  — today's `finish()`: checks, then one module at a time, each merged in row blocks
  (`adapter.functional.merged_weight`), loaded before the next one is built.

Reported: the resident high-water mark during `finish()` + loading, minus resident memory just before
(peak extra), against the largest single module in float32 (gate/up/down: 18944 x 3584 x 4 B = 272 MB).
Goal: after <= 2x that, whatever the number of layers. glibc returns large freed blocks to the OS, so the
resident high-water mark (VmHWM, reset through /proc/self/clear_refs) sees every transient allocation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

HIDDEN, INTER, HEADS, KV_HEADS = 3584, 18944, 28, 4  # Qwen2.5-7B-Instruct config.json
HEAD_DIM = HIDDEN // HEADS
PROJ = {
    "self_attn.q_proj": (HIDDEN, HIDDEN),
    "self_attn.k_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
    "self_attn.v_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
    "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (INTER, HIDDEN),
    "mlp.up_proj": (INTER, HIDDEN),
    "mlp.down_proj": (HIDDEN, INTER),
}
LARGEST_FP32 = INTER * HIDDEN * 4


def _rss() -> int:
    import resource

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _streams(layers: int):
    from tinylora_verl.adapter.functional import random_projections
    from tinylora_verl.sync import wire

    g = torch.Generator().manual_seed(0)
    modules = [f"model.layers.{i}.{p}" for i in range(layers) for p in PROJ]
    meta = {
        "kind": "setup",
        "sync": 1,
        "groups": 1,
        "u": 1,
        "modules": [[m, 0, 1.0] for m in modules],
        "siblings": [],
    }
    yield [(wire.META, wire.encode_meta(meta))]
    for m in modules:
        out_f, in_f = PROJ[m.split(".", 3)[-1]]
        U = torch.linalg.qr(torch.randn(out_f, 2, generator=g))[0]
        V = torch.linalg.qr(torch.randn(in_f, 2, generator=g))[0]
        factors = {"U": U, "S": torch.tensor([40.0, 30.0]), "V": V, "P": random_projections(m, 0, 1, 2)}
        yield [(wire.factor_name(m, k), t) for k, t in factors.items()]
        yield [(f"{m}.weight", (torch.randn(out_f, in_f, generator=g) * 0.02).to(torch.bfloat16))]
    yield [(wire.VECTOR, torch.tensor([[0.01]]))]


def child(variant: str, layers: int) -> dict:
    from tinylora_verl.adapter.functional import mix
    from tinylora_verl.sync import wire
    from tinylora_verl.sync.receiver import VectorSyncReceiver

    r = VectorSyncReceiver()
    r.begin()
    for bucket in _streams(layers):
        r.consume(bucket)
    list(r.finish("cpu"))  # the setup's own rebuild
    r.begin()
    r.consume(
        [(wire.META, wire.encode_meta({"kind": "vector", "sync": 2})), (wire.VECTOR, torch.tensor([[0.02]]))]
    )
    base = _rss()
    _reset_hwm()
    if variant == "before":
        built = []  # pre-issue-11 finish(): all merges first, merge as W + ΔW
        for module, group, alpha in r.modules:
            stored, dtype = r.base[f"{module}.weight"]
            f = r.factors[module]
            W = stored.to(dtype)
            dW = (f["U"] * (alpha * f["S"])) @ mix(r._v[group], f["P"]) @ f["V"].T
            built.append((module, (W.float() + dW).to(dtype)))
            del W, dW
        for _ in built:  # then loaded
            pass
        del built
    else:
        for _name, _t in r.finish("cpu"):  # loaded one by one
            del _t
    return {
        "variant": variant,
        "layers": layers,
        "modules": len(r.modules),
        "peak_extra_bytes": _hwm() - base,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=2, help="decoder layers of Qwen2.5-7B shapes (default 2)")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--child", choices=["before", "after"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.layers < 1:
        ap.error("--layers must be >= 1")
    if args.child:
        print(json.dumps(child(args.child, args.layers)))
        return 0
    rows = []
    for variant in ("before", "after"):
        res = subprocess.run(
            [sys.executable, __file__, "--child", variant, "--layers", str(args.layers)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(
        f"vector-sync receiver, {args.layers} Qwen2.5-7B layer(s) ({rows[0]['modules']} modules, bf16 bases), "
        f"largest module in fp32 = {LARGEST_FP32 / 2**20:.0f} MiB"
    )
    print(f"{'variant':<8} {'peak extra MiB':>15} {'x largest fp32 module':>22}")
    for row in rows:
        row["ratio_to_largest_fp32"] = row["peak_extra_bytes"] / LARGEST_FP32
        print(
            f"{row['variant']:<8} {row['peak_extra_bytes'] / 2**20:>15.0f} {row['ratio_to_largest_fp32']:>22.2f}"
        )
    after = rows[1]["ratio_to_largest_fp32"]
    print(
        f"goal: after <= 2.00x -> {'met' if after <= 2 else 'NOT met'} ({after:.2f}x); "
        f"before / after = {rows[0]['peak_extra_bytes'] / max(1, rows[1]['peak_extra_bytes']):.1f}"
    )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"layers": args.layers, "largest_fp32_bytes": LARGEST_FP32, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
