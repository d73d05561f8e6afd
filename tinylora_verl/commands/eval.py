"""tinylora-verl eval --model PATH [--adapter DIR] --benchmarks gsm8k,math500,... --out DIR

Generates with vLLM (tinylora_verl/eval/generate.py) on each benchmark's test split, prepared exactly as
`tinylora-verl prepare` does (same templates, same answers), and scores with the training rewards
(tinylora_verl/eval/scoring.py). With --adapter, the adapter is merged into a temporary plain HF
directory (export_merged) that vLLM serves. Writes DIR/samples/<benchmark>.jsonl, DIR/summary.csv,
DIR/summary.md and DIR/eval_config.json. Defaults follow the authors' eval: T 1.0, top-p 0.95.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from ..data.datasets import DATASETS, build_split, get_spec
from ..data.templates import TEMPLATES
from ..errors import InvalidValue, check_dir_path

EVAL_SETS = ("gsm8k", "math500", "minerva_math", "olympiadbench", "aime24", "amc23")


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="base model: a local HF directory (or hub id)")
    p.add_argument("--adapter", default=None, help="TinyLoRA adapter directory to merge into the model first")
    p.add_argument(
        "--benchmarks",
        required=True,
        help=f"comma-separated, from: {', '.join(EVAL_SETS)} (any prepare dataset with a test split)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--from-jsonl", default=None, metavar="DIR", help="local JSONL directory (see `prepare`)")
    p.add_argument("--no-hub", action="store_true", help="never contact the Hugging Face hub")
    p.add_argument(
        "--template",
        default=None,
        choices=sorted(TEMPLATES),
        help="prompt template for every benchmark (default: each dataset's own)",
    )
    p.add_argument("--n", type=int, default=1, help="samples per prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-tokens", type=int, default=4096, help="response token limit (authors: 16k)")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts of each benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="auto", help="vLLM dtype (auto, float32, bfloat16)")
    p.add_argument(
        "--max-model-len", type=int, default=None, help="vLLM context length (default: the model's)"
    )
    p.add_argument("--kv-cache-bytes", type=int, default=None, help="KV cache size (CPU default 256 MiB)")


def _check(args) -> list[str]:
    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    errors = []
    if not names:
        errors.append("--benchmarks is empty; give e.g. gsm8k,math500")
    for name in names:
        if name not in DATASETS or "test" not in DATASETS[name].splits:
            errors.append(f"unknown benchmark {name!r}; choose from {', '.join(EVAL_SETS)}")
    if args.n < 1:
        errors.append(f"--n {args.n}: need at least 1 sample per prompt")
    if args.limit is not None and args.limit < 1:
        errors.append(f"--limit {args.limit}: give a positive number of prompts")
    if args.max_tokens < 1:
        errors.append(f"--max-tokens {args.max_tokens}: must be positive")
    if not 0.0 < args.top_p <= 1.0 or args.temperature < 0:
        errors.append("--top-p must be in (0, 1] and --temperature >= 0")
    if args.adapter is not None and not Path(args.adapter).is_dir():
        errors.append(f"--adapter {args.adapter}: no such directory")
    if errors:
        raise InvalidValue("; ".join(errors))
    return names


def _merged_model(model: str, adapter: str, tmp: str, dtype: str) -> str:
    from .. import load_adapter
    from ..adapter.export import export_merged
    from ..hf import load_causal_lm

    base = load_causal_lm(model, dtype="float32" if dtype == "auto" else dtype)
    handle = load_adapter(base, adapter)
    export_merged(handle, tmp, tokenizer_dir=model if Path(model).is_dir() else None)
    print(f"merged {handle.num_trainable} adapter parameters into {tmp}")
    return tmp


def run(args) -> int:
    from ..data.prepare import choose_origin, load_split
    from ..eval.generate import SamplingConfig, generate
    from ..eval.scoring import score_benchmark, summarize, write_samples, write_summary
    from ..hf import check_model_path

    names = _check(args)
    check_model_path(args.model)
    out = check_dir_path(args.out, "--out")
    sampling = SamplingConfig(
        n=args.n, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed
    )
    prepared = {}
    for name in names:  # all data first: fail before the model loads
        spec = get_spec(name)
        origin = choose_origin(spec, args.from_jsonl, use_hub=not args.no_hub)
        raw, _ = load_split(spec.splits["test"], "test", origin)
        rows = build_split(spec.splits["test"], "test", raw, args.template or spec.template).rows
        prepared[name] = (spec, rows[: args.limit] if args.limit else rows)
        print(f"{name}: {len(prepared[name][1])} prompts from {origin.note}")

    with tempfile.TemporaryDirectory(prefix="tinylora-merged-") as tmp:
        model_dir = _merged_model(args.model, args.adapter, tmp, args.dtype) if args.adapter else args.model
        all_rows = [row for _, rows in prepared.values() for row in rows]
        t0 = time.perf_counter()
        completions = generate(
            model_dir,
            [r["prompt"] for r in all_rows],
            sampling,
            dtype=args.dtype,
            max_model_len=args.max_model_len,
            kv_cache_bytes=args.kv_cache_bytes,
        )
        seconds = time.perf_counter() - t0

    summary, start = [], 0
    for name, (spec, rows) in prepared.items():
        records = score_benchmark(name, spec.reward, rows, completions[start : start + len(rows)])
        start += len(rows)
        write_samples(out, name, records)
        summary.append(summarize(name, records))
    title = f"Evaluation of {args.model}" + (f" + adapter {args.adapter}" if args.adapter else "")
    csv_path, md_path = write_summary(out, summary, title=title)
    settings = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    (out / "eval_config.json").write_text(
        json.dumps({**settings, "generate_seconds": round(seconds, 2)}, indent=2)
    )
    print(md_path.read_text())
    print(f"wrote {csv_path}, {md_path} and {out / 'samples'}/<benchmark>.jsonl")
    return 0
