"""Where the demo's generation phase goes: bare vLLM against the e2e run, side by side.

    python bench/gen_phase.py                                  # bare vLLM baselines (demo prompts and sampling)
    python bench/gen_phase.py --trace T.jsonl --metrics RUN/tinylora_metrics.jsonl   # + an e2e run's breakdown
    python bench/gen_phase.py --trace T.jsonl --no-bare        # the e2e breakdown alone

The bare part builds one vLLM engine the way verl's `vLLMHttpServer` does for the CPU demo (float32,
enforce_eager, max_num_seqs, max_num_batched_tokens, chunked prefill, prefix caching, sleep mode, the 64 MiB
KV cache, max_model_len, our worker extension, `distributed_executor_backend`) and generates the demo's first
training batch: 16 prompts (chat template applied) x n=4 as 64 requests of one sample each, temperature 0.7,
top_p 1, top_k -1, 16 tokens at most, the sampled token's log-prob returned, as verl's agent loop sends them.
It times, each `--repeats` times (the median is printed):
  * `LLM.generate` of all 64 requests at once (offline engine, in-process executor "uni"),
  * `AsyncLLM.generate`, 64 concurrent requests (the engine class verl's server runs), executor "uni" and "mp"
    (verl passes "mp": the model runs in a separate worker process),
  * the sleep verl's sync trainer calls after every rollout (level 2: our CPU emulation overwrites every
    weight with NaN through `reload_weights`; level 1 keeps them).

The e2e part reads a trace written by bench/gen_trace/sitecustomize.py (every process of a run stamps the
generation-path calls it makes) and splits each step's `timing_s/gen` window into: agent-loop dispatch ->
first request at the vLLM server, engine busy time (the worker's `execute_model` calls), the tail after the
last response (reward, TransferQueue puts), the replay buffer's poll latency, and the sleep.
Figures depend on the machine's load: compare ratios measured close together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The demo's rollout settings (tinylora_verl/config/cpu_demo.yaml, config/platform/cpu.yaml, verl's rollout.yaml)
DEMO = dict(
    dtype="float32",
    enforce_eager=True,
    max_num_seqs=64,
    max_num_batched_tokens=4096,
    enable_chunked_prefill=True,
    enable_prefix_caching=True,
    enable_sleep_mode=True,
    kv_cache_memory_bytes=64 << 20,
    max_model_len=512,
    seed=0,
)
N, TEMPERATURE, MAX_TOKENS, PROMPTS = 4, 0.7, 16, 16
# the step's phases in tinylora_metrics.jsonl (verl's timing_s/...; probe_s: our post-sync KL probe)
PHASES = ("t_gen", "t_old_logprob", "t_ref", "t_update", "t_sync", "probe_s")


def demo_prompts(model_dir: str) -> list[list[int]]:
    """Token ids of the demo's first training batch, chat template applied (as verl's agent loop does)."""
    import pandas as pd
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from tinylora_verl.data.arithmetic import ensure_dataset

    cfg = OmegaConf.load(ROOT / "tinylora_verl" / "config" / "cpu_demo.yaml").task
    task_dir = Path(os.path.expanduser(f"~/.cache/tinylora_verl/arithmetic_{cfg.op}_{cfg.style}"))
    ensure_dataset(task_dir, op=cfg.op, n_train=cfg.n_train, n_val=cfg.n_val, seed=cfg.seed, style=cfg.style)
    rows = pd.read_parquet(task_dir / "train.parquet").head(PROMPTS)
    tok = AutoTokenizer.from_pretrained(model_dir)
    out = []
    for p in rows["prompt"]:
        ids = tok.apply_chat_template(list(p), add_generation_prompt=True, tokenize=True, return_dict=True)
        out.append([int(t) for t in ids["input_ids"]])
    return out


def _sampling():
    from vllm import SamplingParams

    return SamplingParams(
        temperature=TEMPERATURE,
        top_p=1.0,
        top_k=-1,
        max_tokens=MAX_TOKENS,
        logprobs=0,
        repetition_penalty=1.0,
    )


def _engine_kwargs(model_dir: str, executor: str, kv_mib: int, block_size: int | None) -> dict:
    from tinylora_verl.rollout.vllm_replica import EXTENSION

    kwargs = dict(
        model=model_dir, worker_extension_cls=EXTENSION, distributed_executor_backend=executor, **DEMO
    )
    kwargs["kv_cache_memory_bytes"] = kv_mib << 20
    if block_size:
        kwargs["block_size"] = block_size
    return kwargs


def bare_llm(model_dir: str, prompts: list[list[int]], repeats: int, kv_mib: int, block_size=None) -> dict:
    """LLM.generate of the 64 requests, and the sleep of both levels."""
    from vllm import LLM
    from vllm.inputs import TokensPrompt

    llm = LLM(**_engine_kwargs(model_dir, "uni", kv_mib, block_size))
    reqs = [TokensPrompt(prompt_token_ids=p) for p in prompts for _ in range(N)]
    llm.generate(reqs[:4], _sampling(), use_tqdm=False)  # warm-up
    times, tokens = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = llm.generate(reqs, _sampling(), use_tqdm=False)
        times.append(time.perf_counter() - t0)
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    t0 = time.perf_counter()
    llm.sleep(level=1)
    sleep1 = time.perf_counter() - t0
    llm.wake_up()
    t0 = time.perf_counter()
    llm.sleep(level=2)  # every weight NaN from here on: last
    sleep2 = time.perf_counter() - t0
    llm.llm_engine.engine_core.shutdown()
    del llm
    return {"s": times, "tokens": tokens, "sleep_level1_s": sleep1, "sleep_level2_s": sleep2}


def bare_async(
    model_dir: str, prompts: list[list[int]], repeats: int, executor: str, kv_mib: int, block_size=None
) -> dict:
    """AsyncLLM with 64 concurrent requests (as verl's server receives them from the agent loop)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.inputs import TokensPrompt
    from vllm.v1.engine.async_llm import AsyncLLM

    async def one(engine, rid, p):
        final = None
        async for out in engine.generate(
            prompt=TokensPrompt(prompt_token_ids=p), sampling_params=_sampling(), request_id=rid
        ):
            final = out
        return len(final.outputs[0].token_ids)

    async def main():
        args = AsyncEngineArgs(**_engine_kwargs(model_dir, executor, kv_mib, block_size))
        engine = AsyncLLM.from_engine_args(args)
        try:
            await asyncio.gather(*[one(engine, f"w{i}", prompts[0]) for i in range(4)])  # warm-up
            times = []
            for r in range(repeats):
                t0 = time.perf_counter()
                await asyncio.gather(
                    *[one(engine, f"r{r}-{i}-{j}", p) for i, p in enumerate(prompts) for j in range(N)]
                )
                times.append(time.perf_counter() - t0)
            return times
        finally:
            engine.shutdown()

    return {"s": asyncio.run(main())}


def _spans(events: list[dict], ev: str) -> list[tuple[float, float, dict]]:
    """(begin, end, end-record) of every call of `ev`, paired per process in order (calls nest only across
    processes or asyncio tasks; overlapping async calls are paired FIFO by begin time)."""
    open_: dict[int, list[dict]] = defaultdict(list)
    out = []
    for e in events:
        if e["ev"] != ev:
            continue
        if e["ph"] == "b":
            open_[e["pid"]].append(e)
        elif open_[e["pid"]]:
            b = open_[e["pid"]].pop(0)
            out.append((b["t"], e["t"], {**b, **e}))
    return out


def trace_breakdown(path: str) -> list[dict]:
    """Per training step: the `gen` window (from `_step_once` to the end of `on_sample_end`) split into its
    parts (seconds). The gen timer starts as `_step_once` starts; the prompts were submitted just before."""
    events = sorted((json.loads(x) for x in open(path) if x.strip()), key=lambda e: e["t"])
    spans = {ev: _spans(events, ev) for ev in {e["ev"] for e in events}}
    steps = []
    for n, (z0, z1, _) in enumerate(spans.get("sleep_replicas", [])):
        g0 = max(
            (e["t"] for e in events if e["ev"] == "step_once" and e["ph"] == "b" and e["t"] <= z0),
            default=None,
        )
        sub = max(((a, b) for a, b, _ in spans.get("submit", []) if g0 is not None and a <= g0), default=None)
        if g0 is None or sub is None:
            continue

        def within(ev, lo=sub[0], hi=z0):
            return [(a, b, r) for a, b, r in spans.get(ev, []) if lo <= a <= hi]

        gens, execs = within("server_generate"), within("execute_model")
        if not gens or not execs:
            continue
        loops, scores, toks = within("agent_loop"), within("score"), within("tokenize")
        prompts_done = [b for _, b, _ in within("prompt")]
        first_req, last_req = min(a for a, _, _ in gens), max(a for a, _, _ in gens)
        last_resp = max(b for _, b, _ in gens)
        last_loop = max((b for _, b, _ in loops), default=last_resp)
        last_done = max(prompts_done, default=last_loop)
        sample_end = max((b for _, b, _ in within("sample")), default=z0)
        exec_busy = sum(b - a for a, b, _ in execs)
        in_sleep = [
            (a, b) for ev in ("cpu_sleep", "server_drain") for a, b, _ in spans.get(ev, []) if z0 <= a <= z1
        ]
        steps.append(
            {
                "step": n + 1,
                "gen window (= timing_s/gen)": z1 - g0,
                "submit (before the gen timer)": sub[1] - sub[0],
                "submit -> first request at the server": first_req - sub[0],
                "first -> last request at the server": last_req - first_req,
                "tokenize, longest call": max((b - a for a, b, _ in toks), default=0.0),
                "first request -> last response": last_resp - first_req,
                "  worker execute_model, sum": exec_busy,
                "  execute_model calls": float(len(execs)),
                "  not in execute_model": (last_resp - first_req) - exec_busy,
                "last response -> last agent loop done": last_loop - last_resp,
                "  reward call, longest": max((b - a for a, b, _ in scores), default=0.0),
                # nan when the trace has no per-prompt spans (the agent-loop worker was not patched)
                "last agent loop -> last prompt finished": last_done - last_loop
                if prompts_done
                else float("nan"),
                "last prompt finished -> sample returns": sample_end - last_done,
                "  replay-buffer polls in the step": float(len(within("poll", g0, z0))),
                "sample returns -> on_sample_end": z0 - sample_end,
                "on_sample_end (sleep_replicas)": z1 - z0,
                "  cpu sleep emulation (worker)": sum(
                    b - a for a, b in in_sleep if (a, b) in [(x, y) for x, y, _ in spans.get("cpu_sleep", [])]
                ),
            }
        )
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=None, help="HF model dir (default: the demo's SmolLM2-135M)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trace", default=None, help="trace of an e2e run (bench/gen_trace/sitecustomize.py)")
    ap.add_argument("--metrics", default=None, help="that run's tinylora_metrics.jsonl (t_gen per step)")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare vLLM engines")
    ap.add_argument("--out", default=None, help="write everything as JSON here")
    ap.add_argument("--kv-mib", default="64,256", help="KV cache sizes (MiB) to compare; 64 = the demo's")
    ap.add_argument("--cases", default="llm,async-mp,async-uni", help="bare engines to run (comma list)")
    ap.add_argument("--block-size", type=int, default=None, help="KV block size (vLLM CPU default: 128)")
    args = ap.parse_args()

    result: dict = {"bare": []}
    if not args.no_bare:
        from bench.sync_harness import _prepare_env
        from tinylora_verl.smollm2 import ensure_smollm2

        _prepare_env()
        model_dir = str(args.model_dir or ensure_smollm2())
        prompts = demo_prompts(model_dir)
        kvs = [int(x) for x in args.kv_mib.split(",")]
        cases = args.cases.split(",")
        bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto")
        for kv in kvs:
            if "llm" in cases:
                r = bare_llm(model_dir, prompts, args.repeats, kv, args.block_size)
                result["bare"].append({"case": f"LLM.generate (uni), KV {kv} MiB, bind {bind}", **r})
            if "async-mp" in cases:
                r = bare_async(model_dir, prompts, args.repeats, "mp", kv, args.block_size)
                result["bare"].append({"case": f"AsyncLLM x64 (mp, verl's), KV {kv} MiB, bind {bind}", **r})
        if "async-uni" in cases:
            r = bare_async(model_dir, prompts, args.repeats, "uni", kvs[-1], args.block_size)
            result["bare"].append({"case": f"AsyncLLM x64 (uni), KV {kvs[-1]} MiB, bind {bind}", **r})
    if args.trace:
        result["trace_steps"] = trace_breakdown(args.trace)
    if args.metrics:
        rows = [json.loads(x) for x in open(args.metrics) if x.strip()]
        result["t_gen"] = [r["t_gen"] for r in rows]
        result["budget"] = [
            {
                "step": r["step"],
                **{k: r.get(k, 0.0) for k in PHASES},
                "other": r["t_step"] - sum(r.get(k, 0.0) for k in PHASES),
                "t_step": r["t_step"],
            }
            for r in rows
        ]

    print()
    ref = statistics.median(result["bare"][0]["s"]) if result["bare"] else None
    if ref is not None:
        print(
            f"bare vLLM, {PROMPTS} prompts x n={N}, <= {MAX_TOKENS} tokens, T={TEMPERATURE}, block_size "
            f"{args.block_size or 'default'}, median of {args.repeats} (ratios to the first row):"
        )
        for case in result["bare"]:
            sec = statistics.median(case["s"])
            print(f"  {case['case']:44s} {sec:7.2f} s   x{sec / ref:5.2f}")
            for k in ("sleep_level1_s", "sleep_level2_s"):
                if k in case:
                    print(f"    {k:42s} {case[k]:7.2f} s")
    if result.get("t_gen"):
        t_gen = result["t_gen"]
        later = t_gen[1:] or t_gen
        print(
            f"e2e t_gen per step: {', '.join(f'{x:.2f}' for x in t_gen)} s (steps 2+: median "
            f"{statistics.median(later):.2f} s"
            + (f", x{statistics.median(later) / ref:.2f} of the first bare row)" if ref else ")")
        )
    for b in result.get("budget", []):
        print(
            f"step {b['step']} budget (s): " + ", ".join(f"{k} {v:.1f}" for k, v in b.items() if k != "step")
        )
    for step in result.get("trace_steps", []):
        print(f"trace, step {step['step']}:")
        for k, v in step.items():
            if k != "step":
                print(f"  {k:48s} {v:8.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
