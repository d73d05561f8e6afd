"""The datasets `tinylora-verl prepare` knows, and how a raw row becomes a verl row.

A verl row (what verl's RLHFDataset reads, as in verl's own GSM8K example):
    data_source   str     which benchmark/reward family the row belongs to (e.g. "gsm8k", "math500")
    prompt        list    chat messages [{role, content}, ...] from the chosen template
    ability       str     "math"
    reward_model  dict    {"style": "rule", "ground_truth": <final answer string>}
    extra_info    dict    {"split", "index", "question" (original text), "source_line", "source_id",
                           "solution" (the reference solution text: gsm8k `answer`, MATH-style `solution`;
                           "" where the source has none) — what `tinylora-verl sft` trains on}

Answers: gsm8k -> text after "####" (commas removed); MATH / minerva -> last \\boxed{} of the solution;
math500 / aime24 -> `answer`; amc23 -> `answer` (27.0 -> "27"); olympiadbench -> `final_answer` (a list,
or its Python repr as a string; several values joined with ", ", `$` removed).
A row without a usable question or answer is rejected with a reason, never dropped silently; so is a
ground truth no reward can score (answers.py: numeric sets need one finite number).
simplerl_math35 keeps MATH levels 3-5 of the 12k split (rows outside are filtered, and counted).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from dataclasses import dataclass

from reward_fns._latex import last_boxed

from ..errors import InvalidValue
from .answers import check_answer
from .sources import RawRow, Rejected
from .templates import render


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} is missing or empty")
    return value.strip()


def _gsm8k(data: dict) -> tuple[str, str]:
    solution = _text(data, "answer")
    if "####" not in solution:
        raise ValueError("field 'answer' has no '#### N' final answer")
    answer = solution.rsplit("####", 1)[1].strip().replace(",", "")
    if not answer:
        raise ValueError("nothing after '####' in field 'answer'")
    return _text(data, "question"), answer


def _boxed_solution(question_key: str) -> Callable[[dict], tuple[str, str]]:
    def example(data: dict) -> tuple[str, str]:
        boxed = last_boxed(_text(data, "solution"))
        if boxed is None or not boxed.strip():
            raise ValueError("field 'solution' has no complete, non-empty \\boxed{...} answer")
        return _text(data, question_key), boxed.strip()

    return example


def _answer_field(data: dict) -> tuple[str, str]:
    answer = data.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(int(answer)) if float(answer).is_integer() else repr(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError("field 'answer' is missing or empty")
    return _text(data, "problem"), answer.strip()


def _olympiad(data: dict) -> tuple[str, str]:
    final = data.get("final_answer")
    if isinstance(final, str):
        try:
            final = ast.literal_eval(final)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"field 'final_answer' is not a Python list repr: {err}") from None
    if not isinstance(final, list) or not final or not all(isinstance(v, str) for v in final):
        raise ValueError("field 'final_answer' is not a non-empty list of strings")
    answer = ", ".join(v.replace("$", "").strip() for v in final)
    question = _text(data, "question")
    context = data.get("context")
    if isinstance(context, str) and context.strip() and context.strip() != "None":
        question = context.strip() + "\n\n" + question
    return question, answer


def _level_3_to_5(data: dict) -> bool:
    return data.get("level") in ("Level 3", "Level 4", "Level 5")


@dataclass(frozen=True)
class SplitSource:
    jsonl: str  # path under the JSONL directory
    data_source: str  # written to every row
    example: Callable[[dict], tuple[str, str]]  # raw row -> (question, answer); ValueError if unusable
    keep: Callable[[dict], bool] | None = None  # deliberate filter (counted, not rejected)
    hub: tuple[str, str | None, str] | None = None  # (repo id, config, split) on the Hugging Face hub
    solution_key: str | None = None  # raw field holding the reference solution (SFT)
    numeric: bool = False  # the answer must be one finite number (the set's reward compares numbers)


@dataclass(frozen=True)
class DatasetSpec:
    splits: dict[str, SplitSource]
    template: str  # default prompt template
    reward: str  # "gsm8k" or "math": which reward_fns module scores it
    expected_rows: dict[str, int]  # rows written from the offline copies (docs/data.md)


_MATH500 = SplitSource(
    "math500/test.jsonl",
    "math500",
    _answer_field,
    hub=("HuggingFaceH4/MATH-500", None, "test"),
    solution_key="solution",
)
_MATH12K = "math/train_12k_prm800k_split.jsonl"

DATASETS: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec(
        {
            "train": SplitSource(
                "gsm8k/train.jsonl",
                "gsm8k",
                _gsm8k,
                hub=("openai/gsm8k", "main", "train"),
                solution_key="answer",
                numeric=True,
            ),
            "test": SplitSource(
                "gsm8k/test.jsonl",
                "gsm8k",
                _gsm8k,
                hub=("openai/gsm8k", "main", "test"),
                solution_key="answer",
                numeric=True,
            ),
        },
        "gsm8k",
        "gsm8k",
        {"train": 7473, "test": 1319},
    ),
    "math": DatasetSpec(
        {
            "train": SplitSource(_MATH12K, "math", _boxed_solution("problem"), solution_key="solution"),
            "test": _MATH500,
        },
        "qwen-boxed",
        "math",
        {"train": 11998, "test": 500},
    ),  # 12,000 minus 2 with an empty \boxed{}
    "simplerl_math35": DatasetSpec(
        {
            "train": SplitSource(
                _MATH12K,
                "simplerl_math35",
                _boxed_solution("problem"),
                keep=_level_3_to_5,
                solution_key="solution",
            ),
            "test": _MATH500,
        },
        "qwen-boxed",
        "math",
        {"train": 8886, "test": 500},
    ),  # 8,888 at level 3-5 minus the same 2
    "math500": DatasetSpec({"test": _MATH500}, "qwen-boxed", "math", {"test": 500}),
    "minerva_math": DatasetSpec(
        {
            "test": SplitSource(
                "minerva_math/test.jsonl", "minerva_math", _boxed_solution("problem"), solution_key="solution"
            )
        },
        "qwen-boxed",
        "math",
        {"test": 272},
    ),
    "olympiadbench": DatasetSpec(
        {"test": SplitSource("olympiadbench/test.jsonl", "olympiadbench", _olympiad)},
        "qwen-boxed",
        "math",
        {"test": 675},
    ),
    "aime24": DatasetSpec(
        {"test": SplitSource("aime24/test.jsonl", "aime24", _answer_field, numeric=True)},
        "qwen-boxed",
        "math",
        {"test": 30},
    ),
    "amc23": DatasetSpec(
        {"test": SplitSource("amc23/test.jsonl", "amc23", _answer_field, numeric=True)},
        "qwen-boxed",
        "math",
        {"test": 40},
    ),
}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise InvalidValue(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass
class SplitResult:
    rows: list[dict]
    rejected: list[Rejected]
    filtered: int  # rows left out on purpose by SplitSource.keep


def build_split(
    source: SplitSource, split: str, raw: list[RawRow], template: str, progress: bool = False
) -> SplitResult:
    """verl rows for one split (see the module docstring for the row layout)."""
    rows, rejected, filtered = [], [], 0
    iterator = raw
    if progress:
        from tqdm import tqdm

        iterator = tqdm(raw, desc=f"{source.data_source} {split}", unit="row", leave=False)
    for item in iterator:
        if source.keep is not None and not source.keep(item.data):
            filtered += 1
            continue
        try:
            question, answer = source.example(item.data)
            answer = check_answer(answer, source.numeric)
        except ValueError as err:
            rejected.append(Rejected(split, item.line, str(err), json.dumps(item.data, ensure_ascii=False)))
            continue
        source_id = item.data.get("unique_id", item.data.get("id", item.data.get("idx", "")))
        solution = item.data.get(source.solution_key) if source.solution_key else None
        rows.append(
            {
                "data_source": source.data_source,
                "prompt": render(template, question),
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": answer},
                "extra_info": {
                    "split": split,
                    "index": len(rows),
                    "question": question,
                    "source_line": item.line,
                    "source_id": str(source_id),
                    "solution": solution.strip() if isinstance(solution, str) else "",
                },
            }
        )
    return SplitResult(rows, rejected, filtered)
