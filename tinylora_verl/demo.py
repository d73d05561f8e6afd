"""`make demo`: until the verl + vLLM + Ray GRPO loop lands, the demo is the adapter on SmolLM2-135M
(tinylora_verl/adapter_demo.py)."""

from .adapter_demo import main

if __name__ == "__main__":
    raise SystemExit(main())
