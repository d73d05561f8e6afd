"""The trainer and task runner: verl's synchronous V1 GRPO trainer with the TinyLoRA worker plugged in.

`TinyLoRATrainer` (registered as trainer mode "tinylora_sync") is verl's `PPOTrainerSync` with:
* the actor/rollout role served by `TinyLoRAActorRolloutRefWorker` (worker.py), and, when a tinylora
  block is set, the reference policy computed *in the actor* with the adapter off (`ref_in_actor`), so
  no second model copy is built;
* after each weight sync (`on_init_end`: first, full sync; `on_step_end`: adapted tensors only), if
  `tinylora.verify_sync` is true: the trainer's merged weights and the vLLM engine's effective weights
  are dumped to `<default_local_dir>/sync_check/step_<n>/` (with each actor rank's factor hash and v in
  `ranks.json`) and compared; the largest difference is logged
  as `tinylora/sync_max_abs_diff` (tests assert on the files themselves);
* one summary line per step (reward, sync seconds, trainable count, phase timings) printed and appended
  to `<default_local_dir>/tinylora_metrics.jsonl` (the demo reads it).

`TinyLoRATaskRunner` is verl's `TaskRunnerV1` that imports this module in the TaskRunner process so the
trainer mode is registered before verl looks it up.
"""

from __future__ import annotations

import json
import os
import time

import ray
import torch

from verl.trainer.main_ppo import TaskRunnerV1
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from .worker import CONFIG_KEY, TinyLoRAActorRolloutRefWorker, tinylora_config_from

TRAINER_MODE = "tinylora_sync"
from .trainer_files import METRICS_FILE
# metric keys (verl's names) shown in the per-step summary
SUMMARY_KEYS = {
    "reward": "critic/score/mean", "acc": "critic/rewards/mean", "response_len": "response_length/mean",
    "t_step": "timing_s/step", "t_gen": "timing_s/gen", "t_old_logprob": "timing_s/old_log_prob",
    "t_ref": "timing_s/ref", "t_update": "timing_s/update_actor", "t_sync": "timing_s/update_weights",
    "pg_clipfrac": "actor/pg_clipfrac", "pg_loss": "actor/pg_loss", "kl": "actor/kl_loss",
}


@register_trainer(TRAINER_MODE)
class TinyLoRATrainer(PPOTrainerSync):
    @property
    def _tinylora_on(self) -> bool:
        return tinylora_config_from(self.config.actor_rollout_ref.get(CONFIG_KEY)) is not None

    # verl sets ref_in_actor from lora_rank; with TinyLoRA the reference is the actor with the adapter off.
    @property
    def ref_in_actor(self) -> bool:
        return getattr(self, "_verl_ref_in_actor", False) or self._tinylora_on

    @ref_in_actor.setter
    def ref_in_actor(self, value: bool) -> None:
        self._verl_ref_in_actor = value

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        worker = ray.remote(TinyLoRAActorRolloutRefWorker)
        for role in list(self.role_worker_mapping):
            if role in (Role.ActorRollout, Role.ActorRolloutRef, Role.Actor, Role.RefPolicy):
                self.role_worker_mapping[role] = worker
        if self._tinylora_on and Role.ActorRolloutRef in self.role_worker_mapping:
            # one model: the reference policy is the actor with the adapter disabled
            self.role_worker_mapping[Role.ActorRollout] = self.role_worker_mapping.pop(Role.ActorRolloutRef)
            self.mapping[Role.ActorRollout] = self.mapping.pop(Role.ActorRolloutRef)

    # ---- weight sync and its verification -------------------------------------------------------
    def on_init_end(self):
        start = time.perf_counter()
        super().on_init_end()
        self._first_sync_s = time.perf_counter() - start
        print(f"[tinylora] first weight sync (all tensors): {self._first_sync_s:.2f} s", flush=True)
        self._verify_sync(self.global_steps)

    def on_step_end(self):
        super().on_step_end()
        self._verify_sync(self.global_steps)

    def _verify_sync(self, step: int) -> None:
        block = self.config.actor_rollout_ref.get(CONFIG_KEY)
        if not self._tinylora_on or not block.get("verify_sync", False):
            return
        from safetensors.torch import load_file
        out = os.path.join(self.config.trainer.default_local_dir, "sync_check", f"step_{step}")
        os.makedirs(out, exist_ok=True)
        trainer_path = os.path.join(out, "trainer.safetensors")
        self.actor_rollout_wg.tinylora_dump_merged(trainer_path)
        ranks = [{**s, "v": [v.tolist() for v in s["v"]]} for s in self.actor_rollout_wg.tinylora_state()]
        with open(os.path.join(out, "ranks.json"), "w") as f:
            json.dump(ranks, f)
        paths = []
        for r, replica in enumerate(self.checkpoint_manager.replicas):
            for s, server in enumerate(replica.servers):
                path = os.path.join(out, f"vllm_{r}_{s}.safetensors")
                ray.get(server.collective_rpc.remote("tinylora_dump_weights", kwargs={"path": path}))
                paths.append(path)
        ours = load_file(trainer_path)
        worst = 0.0
        for path in paths:
            theirs = load_file(path)
            for key, merged in ours.items():
                if key.startswith("merged."):
                    got = theirs[key[len("merged."):]]
                    worst = max(worst, (got.float() - merged.to(got.dtype).float()).abs().max().item())
        pending = getattr(self, "_pending_sync_metrics", None) or {}
        pending["tinylora/sync_max_abs_diff"] = worst
        self._pending_sync_metrics = pending
        print(f"[tinylora] step {step}: vLLM weights vs trainer merged weights, max |diff| = {worst:.3g}", flush=True)

    # ---- per-step summary -----------------------------------------------------------------------
    def _compute_metrics(self, batch, metrics, timing_raw, **kwargs):
        result = super()._compute_metrics(batch, metrics, timing_raw, **kwargs)
        row = {"step": kwargs.get("global_steps", self.global_steps)}
        for short, key in SUMMARY_KEYS.items():
            if key in metrics:
                value = metrics[key]
                row[short] = float(value.item() if isinstance(value, torch.Tensor) else value)
        if "tinylora/sync_max_abs_diff" in metrics:
            row["sync_max_abs_diff"] = float(metrics["tinylora/sync_max_abs_diff"])
        row["first_sync_s"] = round(getattr(self, "_first_sync_s", float("nan")), 3)
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        print(f"[tinylora] {text}", flush=True)
        os.makedirs(self.config.trainer.default_local_dir, exist_ok=True)
        with open(os.path.join(self.config.trainer.default_local_dir, METRICS_FILE), "a") as f:
            f.write(json.dumps(row) + "\n")
        return result


@ray.remote(num_cpus=1)
class TinyLoRATaskRunner(TaskRunnerV1.__ray_actor_class__):
    def run(self, config):
        from . import trainer  # noqa: F401  (registers TRAINER_MODE in this process)
        return super().run(config)
