"""Prepared parquet files load in verl's own RLHFDataset (+ collate_fn) with the suite's tokenizer."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tinylora_verl.data.prepare import prepare


# gsm8k: the first 200 rows (one template, ~8 s saved); math500: all rows (the longest prompts)
@pytest.mark.parametrize("name,split,n_rows", [("gsm8k", "test", 200), ("math500", "test", 500)])
def test_rlhf_dataset_loads_prepared_parquet(tmp_path, tokenizer, real_data_dir, name, split, n_rows):
    from torch.utils.data import DataLoader
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    prepare(name, tmp_path / "data", jsonl_dir=real_data_dir, progress=False, log=lambda *_: None)
    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "max_prompt_length": 1024,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "cache_dir": str(tmp_path / "cache"),
            "truncation": "error",
        }
    )
    dataset = RLHFDataset(
        str(tmp_path / "data" / f"{split}.parquet"),
        tokenizer,
        config,
        max_samples=n_rows if name == "gsm8k" else -1,
    )
    assert len(dataset) == n_rows  # every prompt renders under 1024 tokens: none filtered

    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_fn)))
    assert list(batch["data_source"]) == [name] * 4
    assert [rm["ground_truth"] for rm in batch["reward_model"]] == [
        dataset[i]["reward_model"]["ground_truth"] for i in range(4)
    ]
    assert [e["index"] for e in batch["extra_info"]] == [0, 1, 2, 3]
    messages = list(batch["raw_prompt"][0])
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected_tail = (
        'after "####".' if name == "gsm8k" else "within \\boxed{}."
    ) + "<|im_end|>\n<|im_start|>assistant\n"
    assert text.endswith(expected_tail)
