"""The trainer and task runner: verl's synchronous V1 GRPO trainer with the TinyLoRA worker plugged in.

`TinyLoRATrainer` (registered as trainer mode "tinylora_sync"; verl's base sees "sync", so it takes verl's
sync branches) is verl's `PPOTrainerSync` with:
* the actor/rollout role served by `TinyLoRAActorRolloutRefWorker` (worker.py), and, when a tinylora
  block is set, the reference policy computed *in the actor* with the adapter off (`ref_in_actor`), so
  no second model copy is built;
* after each weight sync (`on_init_end`, `on_step_end`), if `tinylora.verify_sync` is true: every weight
  the trainer holds (adapted ones merged) is streamed to the rollout workers, which compare it with the
  weights vLLM computes with (rollout/verify.py); each worker's figures and each actor rank's state
  (factor hash, v, base-weight hashes) go to `<default_local_dir>/sync_check/step_<n>/`, the totals to
  the tracker as `tinylora/verify_tensors` and `tinylora/verify_max_abs_diff`;
* sync diagnostics in verl's tracker every step (`tinylora/*`): the sync's mode, bytes, tensors and
  seconds, ‖v‖, the fraction of ΔW entries below half a bf16 ulp of W, and the probe's rollout_kl /
  effect_kept (sync/probe.py). The trainer↔rollout log-prob gap and the IS weights are verl's own
  metrics (`rollout_corr/*`, `training/rollout_probs_diff_*`), as is the PPO clip fraction
  (`actor/pg_clipfrac`); the summary shows them under short names (SUMMARY_KEYS);
* where verl's old-log-prob pass is exactly redundant (`tinylora.old_log_prob`, old_log_prob.py), no such
  pass: the rollout's log-probs stand in for old_log_probs until the actor's loss computes π_old from its
  own forward; the IS metrics that loss returns keep verl's names (`rollout_corr/*`, `training/rollout_*`);
* one summary line per step (reward, sync seconds and bytes, phase timings, diagnostics) printed and
  appended to `<default_local_dir>/tinylora_metrics.jsonl` (the demo reads it).

`TinyLoRATaskRunner` is verl's `TaskRunnerV1` that imports this module in the TaskRunner process so the
trainer mode is registered before verl looks it up; when a tinylora block is on it also registers our vLLM
replica (rollout/vllm_replica.py: workers that read TinyLoRA streams, and the sync mode's sleep level,
sync/sleep.py), on every platform.
"""

from __future__ import annotations

import json
import os
import time

import ray
import torch
import transfer_queue as tq
from verl.trainer.main_ppo import TaskRunnerV1
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from ..run_config import worker_run_config
from ..sync.probe import probe_batch
from . import old_log_prob
from .trainer_files import METRICS_FILE, VAL_FILE, append_row
from .worker import TinyLoRAActorRolloutRefWorker

TRAINER_MODE = "tinylora_sync"
VERL_MODE = "sync"  # the verl trainer mode whose semantics TinyLoRATrainer has (see `trainer_mode` below)
# seconds between the replay buffer's checks for finished rollouts: verl's fixed 2.0 s left 0-2 s (≈ 1 s on
# average) idle per step after the last rollout finished; one check costs ≈ 3 ms (docs/performance_step.md)
REPLAY_POLL_S = 0.1

# metric keys (verl's names) shown in the per-step summary
SUMMARY_KEYS = {
    "reward": "critic/score/mean",
    "acc": "critic/rewards/mean",
    "response_len": "response_length/mean",
    "t_step": "timing_s/step",
    "t_gen": "timing_s/gen",
    "t_old_logprob": "timing_s/old_log_prob",
    "t_ref": "timing_s/ref",
    "t_update": "timing_s/update_actor",
    "t_sync": "timing_s/update_weights",
    "pg_clipfrac": "actor/pg_clipfrac",
    "pg_loss": "actor/pg_loss",
    "kl": "actor/kl_loss",
    "sync_bytes": "tinylora/sync_bytes",
    "sync_s": "tinylora/sync_s",
    "v_norm": "tinylora/v_norm",
    "rounded_away": "tinylora/rounded_away_frac",
    # trainer vs rollout log-probs and the truncated IS weights: verl's own (rollout_corr_helper.py,
    # utils/debug/metrics.py), logged when rollout.calculate_log_probs and algorithm.rollout_correction
    "logp_k3_kl": "rollout_corr/k3_kl",
    "log_ppl_abs_diff": "rollout_corr/log_ppl_abs_diff",
    "prob_diff_max": "training/rollout_probs_diff_max",
    "is_mean": "rollout_corr/rollout_is_mean",
    "is_max": "rollout_corr/rollout_is_max",
    "is_trunc": "rollout_corr/rollout_is_ratio_fraction_high",
    "rollout_kl": "tinylora/rollout_kl",
    "effect_kl": "tinylora/effect_kl",
    "effect_kept": "tinylora/effect_kept",
    "probe_s": "tinylora/probe_s",
}


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@register_trainer(TRAINER_MODE)
class TinyLoRATrainer(PPOTrainerSync):
    def __init__(self, config):
        # TinyLoRA's state, in one place, before verl's constructor (which may already read ref_in_actor)
        self.tinylora_run = worker_run_config(config.actor_rollout_ref)  # validated by the driver
        self._verl_ref_in_actor = False  # verl's own choice (LoRA), kept apart from ours
        self._probe_batch: dict | None = None  # the fixed probe (sync/probe.py), taken from the first batch
        self._first_sync: dict = {}  # the first sync's tracker metrics, repeated in every summary row
        self._first_sync_s = float("nan")
        self._last_sync_kind = ""  # full / delta / setup / vector (not a number: kept off the tracker)
        self._pending_sync_metrics: dict = {}  # sync figures for the next step's tracker row
        self._prompt_order: dict[str, int] = {}  # uid -> place in the dataloader's order (reproducible runs)
        self._prompt_order_base = 0  # places already handed out to prompts whose rows were ordered
        # π_old from the update's forward instead of verl's separate pass (old_log_prob.py)
        self.old_from_update = self.tinylora_run.enabled and old_log_prob.takes_old_from_update(
            self.tinylora_run.old_log_prob, config
        )
        if self.tinylora_run.enabled:
            where = "from the update's forward" if self.old_from_update else "verl's separate pass"
            print(
                f"[tinylora] old log-probs: {where} (tinylora.old_log_prob={self.tinylora_run.old_log_prob})"
            )
        super().__init__(config)

    # verl's base reads `self.trainer_mode` to choose between its sync and async behaviour (trainer_base.py:
    # the replay buffer class, gen_batch_size forced to 1, prompts persisted in and checkpointed from
    # TransferQueue); anything but "sync" takes the async branch. We are verl's sync trainer under another
    # registered name, so the base sees "sync" (and reads the `trainer.v1.sync` block); the name the config
    # registered stays in `registered_mode`.
    @property
    def trainer_mode(self) -> str:
        return VERL_MODE

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        self.registered_mode = value

    def _build_replay_buffer(self):
        buffer = super()._build_replay_buffer()
        if not hasattr(buffer, "poll_interval"):  # verl renamed it: fail here, not silently keep 2 s
            raise AttributeError(
                f"{type(buffer).__name__} has no poll_interval (verl changed its replay buffer)"
            )
        buffer.poll_interval = REPLAY_POLL_S
        return buffer

    @property
    def _tinylora_on(self) -> bool:
        return self.tinylora_run.enabled

    # verl sets ref_in_actor from lora_rank; with TinyLoRA the reference is the actor with the adapter off.
    @property
    def ref_in_actor(self) -> bool:
        return self._verl_ref_in_actor or self._tinylora_on

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

    # ---- a canonical row order (tinylora.reproducible) -------------------------------------------
    # verl's TransferQueue agent loop stores each trajectory as it finishes and the replay buffer builds the
    # batch in that order (agent_loop_tq.py, replay_buffer.py), so the update (group means, token-mean loss,
    # micro-batch sums) adds in an order set by timing; and which session of a group gets which sample depends
    # on the order the sessions reach vLLM (verl tokenizes them in a thread pool). With `reproducible`, rows
    # go in the dataloader's prompt order, then by response tokens: the same rollouts give the same v bit for
    # bit. Costs one fetch of the responses from TransferQueue per step.
    def _fetch_one_gen_batch(self):
        batch = super()._fetch_one_gen_batch()
        if self.tinylora_run.reproducible:  # a step may fetch several chunks: places keep counting up
            for uid in batch["uid"]:
                self._prompt_order[str(uid)] = len(self._prompt_order) + self._prompt_order_base
        return batch

    def _balance_batch(self, batch, metrics, *args, **kwargs):
        if self.tinylora_run.reproducible:
            self._canonical_order(batch)
        return super()._balance_batch(batch, metrics, *args, **kwargs)

    def _canonical_order(self, batch) -> None:
        uids = [key.rsplit("_", 2)[0] for key in batch.keys]  # verl's keys: {uid}_{session}_{index}
        missing = sorted({u for u in uids if u not in self._prompt_order})
        if missing:
            raise RuntimeError(
                f"tinylora.reproducible: rows of prompts not in this step's batch ({missing[:3]}); verl's "
                "batch keys or fetch order changed: set tinylora.reproducible=false"
            )
        got = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["responses"])
        responses = got["responses"]
        tokens = (responses.to_padded_tensor(padding=-1) if responses.is_nested else responses).tolist()
        place = [(self._prompt_order[uid], row) for uid, row in zip(uids, tokens, strict=True)]
        batch.reorder(sorted(range(len(place)), key=place.__getitem__))
        for uid in set(uids):  # used: the map holds only prompts still on their way
            del self._prompt_order[uid]
        self._prompt_order_base += len(set(uids))

    # ---- π_old from the update's own forward (tinylora.old_log_prob; old_log_prob.py) ----------------
    def _compute_old_log_prob(self, batch, metrics: dict):
        if not self.old_from_update:
            return super()._compute_old_log_prob(batch, metrics=metrics)
        # no forward: the rollout's log-probs stand in for old_log_probs until the actor's loss replaces them
        data = tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=["rollout_log_probs"]
        )
        data["old_log_probs"] = data.pop("rollout_log_probs")
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=data)
        return batch

    def _update_actor(self, batch, metrics: dict):
        if not self.old_from_update:
            return super()._update_actor(batch, metrics=metrics)
        batch.extra_info[old_log_prob.EXTRA_INFO_KEY] = old_log_prob.is_settings(self.config)
        actor_metrics: dict = {}
        batch = super()._update_actor(batch, metrics=actor_metrics)
        # the loss's IS and mismatch metrics under the names the recompute path gives them
        for key, value in actor_metrics.items():
            plain = key.removeprefix("actor/")
            metrics[plain if plain.startswith(("rollout_corr/", "training/rollout_")) else key] = value
        return batch

    # ---- weight sync and its verification -------------------------------------------------------
    def on_init_end(self):
        start = time.perf_counter()
        super().on_init_end()
        self._first_sync_s = time.perf_counter() - start
        stats = self._sync_stats(self._first_sync_s)
        self._first_sync = stats
        print(
            f"[tinylora] first weight sync ({self._last_sync_kind}): "
            f"{self._first_sync_s:.2f} s, {stats.get('tinylora/sync_bytes', float('nan')):.0f} bytes",
            flush=True,
        )
        self._pending_sync_metrics = {}
        self._verify_sync(self.global_steps)

    def on_step_end(self):
        start = time.perf_counter()
        super().on_step_end()
        stats = self._sync_stats(time.perf_counter() - start)
        self._pending_sync_metrics = {**self._pending_sync_metrics, **stats}
        if self._probe_batch is not None:  # what the weights just synced do to the policy
            self._pending_sync_metrics.update(self.actor_rollout_wg.tinylora_probe(self._probe_batch)[0])
        self._verify_sync(self.global_steps)

    def _sync_stats(self, seconds: float) -> dict:
        """The sync just done (from actor rank 0) and the adapter diagnostics, as tracker metrics."""
        if not self._tinylora_on:
            return {}
        raw = self.actor_rollout_wg.tinylora_sync_stats()[0]
        out = {
            "tinylora/sync_s": seconds,
            "tinylora/sync_bytes": float(raw.get("bytes", 0)),
            "tinylora/sync_tensors": float(raw.get("tensors", 0)),
            "tinylora/v_norm": raw["v_norm"],
            "tinylora/rounded_away_frac": raw["rounded_away_frac"],
        }
        self._last_sync_kind = raw.get("kind", "")
        return out

    # ---- the fixed probe -------------------------------------------------------------------------
    def _capture_probe(self, batch) -> None:
        """Keep the first batch's first rows as the fixed probe of `tinylora_probe` (0 sequences: off)."""
        if self._probe_batch is not None:
            return
        run = self.tinylora_run
        sequences = run.probe_sequences
        if sequences <= 0:
            return
        # input_ids is jagged in TransferQueue (prompt + response, no padding): one row per sample
        data = tq.kv_batch_get(
            keys=batch.keys[:sequences], partition_id=batch.partition_id, select_fields=["input_ids"]
        )
        self._probe_batch = probe_batch(data["input_ids"].unbind(), sequences, run.probe_tokens)

    def _compute_advantage(self, batch, metrics: dict):
        before = set(metrics)
        batch = super()._compute_advantage(batch, metrics)
        if (
            self.old_from_update
        ):  # computed from the placeholder (rollout vs itself): the actor's replace them
            for key in set(metrics) - before:
                if key.startswith("rollout_corr/"):
                    del metrics[key]
        if self._tinylora_on:
            self._capture_probe(batch)
        return batch

    def _verify_sync(self, step: int) -> None:
        """Every vLLM weight vs the trainer's (adapted ones merged), streamed and compared in the rollout
        workers; per-rank state and each worker's figures go to `<default_local_dir>/sync_check/step_<n>/`,
        the totals to the tracker (`tinylora/verify_tensors`, `tinylora/verify_max_abs_diff`)."""
        if not self._tinylora_on or not self.tinylora_run.verify_sync:
            return
        out = os.path.join(self.config.trainer.default_local_dir, "sync_check", f"step_{step}")
        os.makedirs(out, exist_ok=True)
        ray.get(self.actor_rollout_wg.tinylora_verify_sync())
        ranks = [{**s, "v": [v.tolist() for v in s["v"]]} for s in self.actor_rollout_wg.tinylora_state()]
        with open(os.path.join(out, "ranks.json"), "w") as f:
            json.dump(ranks, f)
        states = []
        for r, replica in enumerate(self.checkpoint_manager.replicas):
            for s, server in enumerate(replica.servers):
                path = os.path.join(out, f"receiver_{r}_{s}.json")
                ray.get(server.collective_rpc.remote("tinylora_receiver_state", kwargs={"path": path}))
        for name in sorted(os.listdir(out)):
            if name.startswith("receiver_"):
                with open(os.path.join(out, name)) as f:
                    states.append(json.load(f).get("verified") or {})
        tensors = sum(int(v.get("verify_tensors", 0)) for v in states)
        worst = max((float(v.get("verify_max_abs_diff", float("inf"))) for v in states), default=float("inf"))
        gaps = sum(int(v.get("verify_n_missing", 0)) + int(v.get("verify_n_uncovered", 0)) for v in states)
        if gaps:
            worst = float("inf")  # a weight that was not compared counts as wrong
        pending = self._pending_sync_metrics
        pending.update({"tinylora/verify_tensors": float(tensors), "tinylora/verify_max_abs_diff": worst})
        print(
            f"[tinylora] step {step}: verified {tensors} vLLM tensors over {len(states)} worker(s), "
            f"max |diff| = {worst:.3g}" + (f", {gaps} not compared" if gaps else ""),
            flush=True,
        )

    # ---- held-out validation ---------------------------------------------------------------------
    def _validate(self):
        """verl's validation; its headline metrics (val-core/...) also go to tinylora_val.jsonl with the step."""
        metrics = super()._validate()
        row = {
            "step": self.global_steps,
            **{k: float(v) for k, v in metrics.items() if k.startswith("val-core/") and _is_number(v)},
        }
        text = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "step")
        print(f"[tinylora] validation step={row['step']} {text}", flush=True)
        append_row(self.config.trainer.default_local_dir, VAL_FILE, row)
        return metrics

    # ---- per-step summary -----------------------------------------------------------------------
    def _compute_metrics(self, batch, metrics, timing_raw, **kwargs):
        result = super()._compute_metrics(batch, metrics, timing_raw, **kwargs)
        row = {"step": kwargs.get("global_steps", self.global_steps)}
        for short, key in SUMMARY_KEYS.items():
            if key in metrics:
                value = metrics[key]
                row[short] = float(value.item() if isinstance(value, torch.Tensor) else value)
        for key in ("verify_tensors", "verify_max_abs_diff"):
            if f"tinylora/{key}" in metrics:
                row[key] = float(metrics[f"tinylora/{key}"])
        if self._tinylora_on:
            row["sync_kind"] = self._last_sync_kind
        row["first_sync_s"] = round(self._first_sync_s, 3)
        if "tinylora/sync_bytes" in self._first_sync:
            row["first_sync_bytes"] = self._first_sync["tinylora/sync_bytes"]
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        print(f"[tinylora] {text}", flush=True)
        append_row(self.config.trainer.default_local_dir, METRICS_FILE, row)
        return result


@ray.remote(num_cpus=1)
class TinyLoRATaskRunner(TaskRunnerV1.__ray_actor_class__):
    def run(self, config):
        from . import trainer  # noqa: F401  (registers TRAINER_MODE in this process)

        run = worker_run_config(config.actor_rollout_ref)
        if run.enabled:
            from ..rollout.vllm_replica import register_tinylora_vllm_replica
            from ..sync.sleep import sleep_level

            register_tinylora_vllm_replica(sleep_level(run.sync_mode), seeded=run.reproducible)
        return super().run(config)
