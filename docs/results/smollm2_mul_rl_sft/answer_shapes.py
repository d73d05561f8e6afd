"""Shape of the held-out answers per run: answer-first ("a * b = c" / "a * b is c" at the start), cut at the cap, score."""

import glob
import json
import os
import re
import sys

for d in sorted(glob.glob(sys.argv[1] + "/runs/*")):
    rows = []
    for f in ("val.jsonl", "arithmetic_mul.jsonl"):
        p = os.path.join(d, "eval/samples", f)
        if os.path.exists(p):
            rows += [json.loads(l) for l in open(p)]
    if not rows:
        continue
    first = sum(
        bool(re.match(r"\s*\d+\s*(\*|x|times)\s*\d+\s*(=|is|equals)", r["response"])) for r in rows
    ) / len(rows)
    cut = sum(r["finish_reason"] == "length" for r in rows) / len(rows)
    only = sum(bool(re.fullmatch(r"\s*\d+\.?\s*", r["response"])) for r in rows) / len(rows)
    acc = sum(r["score"] for r in rows) / len(rows)
    print(
        f"{os.path.basename(d):28s} n={len(rows)} answer_first={first:.3f} number_only={only:.3f} cut_at_cap={cut:.3f} acc={acc:.3f}"
    )
