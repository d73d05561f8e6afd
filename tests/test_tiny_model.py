"""The suite's tiny model and tokenizer (tests/tiny_model.py): what the other tests take for granted."""

import json

import torch

from tests.tiny_model import TOKENIZER_FILES, VOCAB_SIZE, tiny_qwen2


def test_saved_tiny_model_is_a_consistent_model_directory(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert all((tiny_model_dir / name).is_file() for name in TOKENIZER_FILES)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert len(tok) == len(tokenizer) == VOCAB_SIZE
    text = tok.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")
    gen = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert (gen["eos_token_id"], gen["pad_token_id"]) == (tok.eos_token_id, tok.pad_token_id)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    cfg = model.config
    assert (
        cfg.vocab_size == VOCAB_SIZE and cfg.hidden_size // cfg.num_attention_heads == 32
    )  # vLLM CPU rejects 16
    assert model.get_input_embeddings().weight.shape[0] == VOCAB_SIZE
    for (name, saved), fresh in zip(model.state_dict().items(), tiny_qwen2(seed=0).state_dict().values()):
        assert torch.equal(saved, fresh), name  # the directory holds tiny_qwen2(seed=0)


def test_same_seed_same_weights_and_no_weight_left_at_its_init_constant():
    a, b, c = tiny_qwen2(seed=0), tiny_qwen2(seed=0), tiny_qwen2(seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    norms = [p for n, p in a.named_parameters() if n.endswith("norm.weight")]
    assert norms and all(p.unique().numel() == p.numel() for p in norms)  # HF inits them to exact ones
    bf16 = tiny_qwen2(seed=0, dtype=torch.bfloat16)
    assert torch.equal(bf16.lm_head.weight, a.lm_head.weight.to(torch.bfloat16))  # the same base, rounded
