"""Prompt templates: a question -> chat messages ([{role, content}, ...]) that verl/vLLM render with the
model's own chat template.

- `gsm8k`: verl's GSM8K example (examples/data_preprocess/gsm8k.py): one user turn,
  question + " " + 'Let\\'s think step by step and output the final answer after "####".'
- `qwen-boxed`: Qwen2.5-Math evaluation/utils.py PROMPT_TEMPLATES["qwen-boxed"] (the template the
  TinyLoRA authors name for MATH-style evals): system "You are a helpful assistant.", user
  question + "\\nPlease reason step by step, and put your final answer within \\boxed{}."
- `qwen25-math-cot`: same file, PROMPT_TEMPLATES["qwen25-math-cot"]: system "Please reason step by step,
  and put your final answer within \\boxed{}.", user = the question alone.

(Note: "qwen-boxed" keeps the instruction in the user turn; the system-prompt variant is
"qwen25-math-cot". Both were read from QwenLM/Qwen2.5-Math, not recalled.)
"""

from __future__ import annotations

from ..errors import InvalidValue

GSM8K_INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def _gsm8k(question: str) -> list[dict]:
    return [{"role": "user", "content": question + " " + GSM8K_INSTRUCTION}]


def _qwen_boxed(question: str) -> list[dict]:
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": question + "\n" + BOXED_INSTRUCTION},
    ]


def _qwen25_math_cot(question: str) -> list[dict]:
    return [{"role": "system", "content": BOXED_INSTRUCTION}, {"role": "user", "content": question}]


TEMPLATES = {"gsm8k": _gsm8k, "qwen-boxed": _qwen_boxed, "qwen25-math-cot": _qwen25_math_cot}


def render(template: str, question: str) -> list[dict]:
    """Chat messages for `question` under `template` (one of TEMPLATES)."""
    if template not in TEMPLATES:
        raise InvalidValue(f"unknown prompt template {template!r}; choose one of {', '.join(TEMPLATES)}")
    return TEMPLATES[template](question)
