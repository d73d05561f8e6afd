"""TinyLoRATrainer is verl's sync trainer under its own registered name, and verl's base must see it so.

verl 0.9.1's `PPOTrainer` (trainer_base.py) compares `self.trainer_mode` with "sync" in six places: the
replay buffer class, `data.gen_batch_size` forced to 1, prompts persisted in TransferQueue, and its
checkpoint save / restore / re-issue. Under the registered name "tinylora_sync" every one of them took the
async branch. These tests build the trainer the way verl's constructor does (assigning the configured
mode) and check what the base then reads and builds.
"""

import pytest
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.trainer.ppo.v1.trainer_base import get_trainer_cls

from tinylora_verl.config_compose import compose
from tinylora_verl.verl_seam import trainer as trainer_mod


@pytest.mark.parametrize("preset", ["cpu_demo", "experiment/gsm8k_paper", "experiment/math_paper"])
def test_verl_base_sees_the_sync_mode(preset):
    cfg = compose(preset, ["actor_rollout_ref.model.path=/nonexistent-model"])
    assert cfg.trainer.v1.trainer_mode == trainer_mod.TRAINER_MODE
    assert get_trainer_cls(cfg.trainer.v1.trainer_mode) is trainer_mod.TinyLoRATrainer
    t = object.__new__(trainer_mod.TinyLoRATrainer)
    t.config = cfg
    t.trainer_mode = cfg.trainer.v1.trainer_mode  # what PPOTrainer.__init__ does
    assert t.trainer_mode == "sync"
    assert t.registered_mode == trainer_mod.TRAINER_MODE
    buffer = t._build_replay_buffer()
    # the sync buffer itself, not ReplayBufferAsync (its subclass), with the sync block's settings
    assert type(buffer) is ReplayBuffer
    assert buffer.trainer_mode == "sync"
    assert buffer.trainer_config == cfg.trainer.v1.get("sync", {})
    assert buffer.poll_interval == trainer_mod.REPLAY_POLL_S
