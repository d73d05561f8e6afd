"""Adversarial inputs for the rewards (issue 14 item 4): worst-case families, hypothesis strategies, a bench.

FAMILIES maps a name to a builder: size in characters -> a response of about that size that once
made some parser quadratic or memory-hungry (or could: digit runs, many matches, unbalanced braces).
Each response ends with a correct answer where the family allows it, so a reward must still find it.

Bench (prints the worst time and memory per family and reward, at 1 MB unless told otherwise):

    nice -n 10 .venv/bin/python -m tests.reward_fns.adversarial [--size 1000000] [--repeat 3]
    PYTHONPATH=<a checkout> .venv/bin/python tests/reward_fns/adversarial.py --issue-cases
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

from hypothesis import strategies as st

from reward_fns import arithmetic, gsm8k, math

ANSWER = "5"
FAMILIES = {
    "backslash_run": lambda n: "\\boxed{5}" + "\\" * n,
    "backslash_run_brace": lambda n: "\\boxed{5} " + "\\" * n + "{",
    "nested_braces": lambda n: "\\boxed{" + "{" * (n // 2) + "5" + "}" * (n // 2) + "}",
    "nested_boxed": lambda n: "\\boxed{" * (n // 8) + "5" + "}" * (n // 8),
    "unclosed_boxed": lambda n: "\\boxed{5} " + "\\boxed{" * (n // 7),
    "many_boxed": lambda n: "\\boxed{5}" * (n // 9),
    "many_bare_boxed": lambda n: "\\boxed 5 " * (n // 9),
    "unbalanced_closes": lambda n: "\\boxed{5}" + "}" * n,
    "unbalanced_opens": lambda n: "{" * n + "\\boxed{5}",
    "escaped_braces": lambda n: "\\boxed{" + "\\{" * (n // 2) + "5}",
    "digit_run": lambda n: "#### " + "1" * n,
    "many_numbers": lambda n: "1 " * (n // 2) + "#### 5",
    "comma_numbers": lambda n: "1," * (n // 2) + "\n#### 5",
    "many_markers": lambda n: "####" * (n // 4) + " 5",
    "text_wraps": lambda n: "\\boxed{" + "\\text{" * (n // 6) + "5" + "}" * (n // 6) + "}",
    "spaces_after_commands": lambda n: "\\boxed{5^" + " " * n + "}",
    "mixed": lambda n: ("\\boxed{\\\\{" + "\\" * 7 + "}1,0#### {") * (n // 24) + "\\boxed{5}",
}
REWARDS = {
    "gsm8k": lambda s: gsm8k.compute_score("adv", s, ANSWER),
    "math": lambda s: math.compute_score("adv", s, ANSWER, timeout_s=0.5),
    "arith_hash": lambda s: arithmetic.compute_score("adv", s, ANSWER),
    "arith_number": lambda s: arithmetic.compute_score("adv", s, ANSWER, {"style": "number"}),
}

# ---------------------------------------------------------------------------------- hypothesis blocks
_SMALL = st.integers(1, 2_000)
_BIG = st.integers(1, 60_000)
block = st.one_of(
    _BIG.map(lambda k: "\\" * k),
    _BIG.map(lambda k: "{" * k),
    _BIG.map(lambda k: "}" * k),
    _BIG.map(lambda k: "1" * k),
    _SMALL.map(lambda k: "\\boxed{" * k),
    _SMALL.map(lambda k: "\\boxed " * k),
    _SMALL.map(lambda k: "\\{" * k + "\\}" * k),
    _SMALL.map(lambda k: "\\text{" * k),
    _SMALL.map(lambda k: "#### 1" * k),
    _SMALL.map(lambda k: "1,0 " * k),
    st.sampled_from(["\\boxed{5}", "#### 5", "5", " ", "$", "\\fbox{", "\\left(", "^\\circ", "\\frac{1}{2}"]),
)
# nesting depth, runs and repeats combined: up to ~1 MB, ends with anything or a correct answer
adversarial_text = st.tuples(st.lists(block, min_size=1, max_size=16), st.booleans()).map(
    lambda t: "".join(t[0]) + ("\\boxed{5} #### 5" if t[1] else "")
)


def load_factor() -> float:
    """How oversubscribed the CPUs are (1-minute load / CPUs, at least 1): wall-clock bounds stretch by it."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def measure(fn, text: str) -> tuple[float, float, float, float]:
    """(score, wall seconds, CPU seconds of this thread, peak MiB traced) of one call.

    Timed without tracemalloc, then called again under it for the peak. CPU time does not stretch on
    a busy machine; the wall time of a MATH call also holds the math-verify child's time.
    """
    t0, c0 = time.perf_counter(), time.thread_time()
    score = fn(text)
    seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
    tracemalloc.start()
    try:
        fn(text)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return score, seconds, cpu, peak


def bench(size: int, repeat: int) -> None:
    math.shared_worker().warm_up()  # the math-verify children's first start
    print(f"worst of {repeat} calls per cell at {size:,} characters: wall s / CPU s / peak MiB (tracemalloc)")
    print(f"1-minute load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'family':22}" + "".join(f"{name:>24}" for name in REWARDS))
    worst = [0.0, 0.0, 0.0]
    for family, build in FAMILIES.items():
        text, cells = build(size), []
        for fn in REWARDS.values():
            runs = [measure(fn, text) for _ in range(repeat)]
            cell = [max(r[i] for r in runs) for i in (1, 2, 3)]
            worst = [max(w, c) for w, c in zip(worst, cell)]
            cells.append("{:.3f} / {:.3f} / {:.1f}".format(*cell))
        print(f"{family:22}" + "".join(f"{c:>24}" for c in cells))
    print("worst: {:.3f} s wall, {:.3f} s CPU, {:.1f} MiB".format(*worst))


def issue_cases() -> None:
    """The issue's three cases at sizes the former code finishes (its cost grows with the square)."""
    import reward_fns

    print(f"reward_fns from {os.path.dirname(reward_fns.__file__)}")
    cases = [
        ("backslash run after a box, gsm8k", REWARDS["gsm8k"], FAMILIES["backslash_run"](20_000)),
        ("backslash run after a box, math", REWARDS["math"], FAMILIES["backslash_run"](20_000)),
        ("nested braces, math.normalize", math.normalize, "{" * 5000 + "5" + "}" * 5000),
        ("nested \\boxed{, math", REWARDS["math"], FAMILIES["nested_boxed"](32_000)),
    ]
    for name, fn, text in cases:
        _, seconds, _, peak = measure(fn, text)
        print(f"{name:34} {len(text):>7,} chars {seconds:8.2f} s {peak:8.1f} MiB traced")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--issue-cases", action="store_true", help="the issue's three cases only")
    args = parser.parse_args()
    issue_cases() if args.issue_cases else bench(args.size, args.repeat)
