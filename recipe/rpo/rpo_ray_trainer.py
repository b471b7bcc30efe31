"""``RayRPOTrainer``: verl's legacy ``RayPPOTrainer`` with RPO's rollout, one ``fit`` for GRPO and DAPO.

The loop per step (``rpo.enable=false`` skips the RPO parts, giving the full-path baseline through the same code):

1. generation batch(es): seed cold prompts (one full answer each), cut cached answers, generate G suffixes
   (``verl_ext.rollout.PartialRollout``); rewards arrive with the rollout (verl's streaming reward loop) and
   score prefix + suffix;
2. cache update from every generated group, before any filter;
3. DAPO group filter (``algorithm.filter_groups``), drawing more generation batches until the batch is full;
4. rank balancing, old/ref log-probs, advantages, actor update, checkpoint (with the cache), weight sync,
   validation.

With ``rpo.shared_prefix=true`` the balancing keeps each group on one rank where it fits and accepts any group count
(``verl_ext/shared_prefix/rank_balance.py``), and each training pass reports how much it shared
(``rpo/shared_prefix/packed_token_frac/<pass>``). The configuration is checked against its world size at start-up
(``verl_ext/training/topology.py``).

The response mask built by the RPO agent loop is never recomputed from the attention mask (verl-recipe's DAPO
trainer does that, which would silently put the cached prefix back into the loss).
"""

from __future__ import annotations

import uuid
from pprint import pprint
from typing import Any, Iterator, Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm
from verl import DataProto
from verl.trainer.ppo.core_algos import agg_loss
from verl.trainer.ppo.ray_trainer import (
    RayPPOTrainer,
    apply_kl_penalty,
    compute_advantage,
    compute_response_mask,
)
from verl.trainer.ppo.reward import extract_reward
from verl.utils.checkpoint.checkpoint_manager import should_save_ckpt_esi
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.debug import marked_timer
from verl.utils.metric import reduce_metrics
from verl.utils.skip.skip_manager import SkipManager
from verl.utils.tracking import Tracking

from verl_ext.config import check_supported, load_rpo_config, prefix_logprobs_required
from verl_ext.rewards.score import VERIFY_TIMEOUT_FIELD
from verl_ext.rollout.partial import (
    PartialRollout,
    RolloutRows,
    prefix_loss_tokens,
    response_lengths,
    rollout_dump_fields,
    rollout_metrics,
)
from verl_ext.rollout.truncation import needs_current_logprobs
from verl_ext.rollout.verify import CurrentLogprobs
from verl_ext.shared_prefix.batch import (
    add_shared_prefix_columns,
    check_shared_prefix_supported,
    whole_group_packed_frac,
)
from verl_ext.shared_prefix.install_check import check_engine_plugin
from verl_ext.shared_prefix.packing_metrics import (
    IDEAL_METRIC,
)
from verl_ext.shared_prefix.rank_balance import VERL_GROUPS, rank_balancing
from verl_ext.shared_prefix.support import check_model_supported
from verl_ext.training.group_filter import filter_values, group_count, informative_rows, no_signal_group_count
from verl_ext.training.topology import check_topology

from .cache_checkpoints import CacheCheckpointMixin
from .fit_options import StepProfileSchedule, check_fit_options, verl_step_metrics
from .shared_prefix_passes import SharedPrefixPassesMixin
from .step_settings import StepSettings


class RayRPOTrainer(SharedPrefixPassesMixin, CacheCheckpointMixin, RayPPOTrainer):
    """RPO for GRPO and DAPO on verl's hybrid engine (FSDP actor + vLLM/SGLang rollout server)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rpo = load_rpo_config(self.config.get("rpo"))
        check_fit_options(self.config, self.rpo)
        check_supported(self.config, self.rpo)
        for warning in check_topology(self.config, source="this run's configuration"):
            print(f"rpo: topology: {warning}")
        self.use_prefix_grouper = rank_balancing(self.config) == VERL_GROUPS
        model = self.config.actor_rollout_ref.model
        self.hf_config = omega_conf_to_dataclass(model).hf_config
        if self.rpo.shared_prefix:
            check_shared_prefix_supported(self.config)
            check_model_supported(self.hf_config, source=str(model.path))
            check_engine_plugin()
        self.partial_rollout: Optional[PartialRollout] = None
        if self.rpo.enable:
            eos = self.tokenizer.eos_token_id
            self.partial_rollout = PartialRollout(
                self.rpo,
                self._initial_cache(),
                response_length=int(self.config.data.max_response_length),
                group_size=int(self.config.actor_rollout_ref.rollout.n),
                num_workers=int(self.config.actor_rollout_ref.rollout.agent.num_workers),
                eos_token_ids=eos if isinstance(eos, list) else [eos],
                require_prefix_logprobs=prefix_logprobs_required(self.config, self.rpo),
                current_logprobs=self._current_logprobs(),
            )
        self._resume_state = self._read_resume_state()
        self._step = StepSettings(rpo=self.rpo, partial_rollout=self.partial_rollout is not None)

    # ------------------------------------------------------------------ per-step hooks

    def step_settings(self, step: int) -> StepSettings:
        """What training step ``step`` runs; the run's own settings every step unless a subclass says otherwise
        (``verl_ext/experiments/bench/trainer.py`` alternates RPO and full-path steps in one run with it)."""
        return StepSettings(rpo=self.rpo, partial_rollout=self.partial_rollout is not None)

    def on_rollout_end(self, batch: Optional[DataProto], metrics: dict, timing_raw: dict) -> None:
        """Called after each step's rollout (and DAPO filter) with the training batch (None: the data ran out) and
        the step's metrics, which it may extend. Does nothing here."""

    @property
    def _step_rollout(self) -> Optional[PartialRollout]:
        """The partial rollout when the current step runs RPO, else None (the full path)."""
        return self.partial_rollout if self._step.partial_rollout else None

    def _begin_step(self, step: int) -> None:
        settings = self.step_settings(step)
        if settings.partial_rollout and self.partial_rollout is None:
            raise ValueError(f"step {step}: step_settings asks for the partial rollout but rpo.enable=false")
        self._step = settings
        if self.partial_rollout is not None:
            self.partial_rollout.config = settings.rpo

    def _current_logprobs(self) -> CurrentLogprobs:
        """The actor's pass over cached answers that verifying cut policies read; it runs only when one does."""
        rollout = self.config.actor_rollout_ref.rollout
        return CurrentLogprobs(
            self.tokenizer,
            hf_model_type=getattr(self.hf_config, "model_type", None),
            chat_template_kwargs=dict(self.config.data.get("apply_chat_template_kwargs") or {}),
            temperature=float(rollout.temperature),
            log_prob_pass=lambda batch: self._compute_old_log_prob(batch)[0],
            world_size=lambda: self.actor_rollout_wg.world_size,
            micro_batch_size=None if rollout.get("log_prob_use_dynamic_bsz", False) else int(
                rollout.get("log_prob_micro_batch_size_per_gpu") or 1),
            shared_prefix=lambda: self._step.rpo.shared_prefix,
        )

    # ------------------------------------------------------------------ training loop

    def fit(self) -> None:
        """verl's ``RayPPOTrainer.fit`` with RPO's rollout: every option verl's loop reads is honoured here or
        refused at start-up (``recipe/rpo/fit_options.py`` lists them; a test checks the list against verl's code)."""
        if self._dump_executor._shutdown:
            self._init_dump_executor()
        logger = Tracking(
            project_name=self.config.trainer.project_name,
            experiment_name=self.config.trainer.experiment_name,
            default_backend=self.config.trainer.logger,
            config=OmegaConf.to_container(self.config, resolve=True),
        )
        self.global_steps = 0
        self._load_checkpoint()
        self.checkpoint_manager.update_weights(self.global_steps)
        SkipManager.init(self.config)

        if self.config.trainer.get("val_before_train", True):
            val_metrics = self._validate()
            pprint(f"Initial validation metrics: {val_metrics}")
            logger.log(data=val_metrics, step=self.global_steps)
            if self.config.trainer.get("val_only", False):
                self._shutdown_dump_executor()
                return

        progress = tqdm(total=self.total_training_steps, initial=self.global_steps, desc="Training Progress")
        self.global_steps += 1
        SkipManager.set_step(self.global_steps)
        self.max_steps_duration = 0.0
        profiler = StepProfileSchedule(self.config.global_profiler, self.global_steps)
        last_val_metrics: Optional[dict] = None
        batches = self._training_batches(start_epoch=(self.global_steps - 1) // len(self.train_dataloader))
        while self.global_steps <= self.total_training_steps:
            self._finalize_async_calls(blocking=False)
            metrics: dict[str, Any] = {}
            timing_raw: dict[str, float] = {}
            is_last_step = self.global_steps >= self.total_training_steps
            with marked_timer("start_profile", timing_raw):
                self._start_profiling(profiler.start(self.global_steps))
            self._begin_step(self.global_steps)
            with marked_timer("step", timing_raw):
                batch = self._collect_batch(batches, metrics, timing_raw, profiler.profiling(self.global_steps))
                self.on_rollout_end(batch, metrics, timing_raw)
                if batch is None:
                    break
                batch = self._update_policy(batch, metrics, timing_raw, is_last_step)
                self._dump_rollout(batch, timing_raw)
            if self.config.trainer.test_freq > 0 and (
                is_last_step or self.global_steps % self.config.trainer.test_freq == 0
            ):
                with marked_timer("testing", timing_raw):
                    val_metrics = self._validate()
                metrics.update(val_metrics)
                last_val_metrics = val_metrics if is_last_step else last_val_metrics
            with marked_timer("stop_profile", timing_raw):
                self._stop_profiling(*profiler.stop(self.global_steps, is_last_step))
            self.max_steps_duration = max(self.max_steps_duration, timing_raw["step"])
            metrics.update({"training/global_step": self.global_steps, "training/epoch": self._epoch})
            metrics.update(verl_step_metrics(self, batch, metrics, timing_raw))
            logger.log(data=metrics, step=self.global_steps)
            progress.update(1)
            self.global_steps += 1
            SkipManager.set_step(self.global_steps)
            if hasattr(self.train_dataset, "on_batch_end"):
                self.train_dataset.on_batch_end(batch=batch)
        progress.close()
        self._finalize_async_calls(blocking=True)
        self._shutdown_dump_executor()
        pprint(f"Final validation metrics: {last_val_metrics}")

    def _finalize_async_calls(self, blocking: bool) -> None:
        """verl's asynchronous checkpoint saves: finish what is done (and, at the end, wait for the rest)."""
        if hasattr(self.actor_rollout_wg, "async_calls_finalize_fn_exec"):
            self.actor_rollout_wg.async_calls_finalize_fn_exec(blocking=blocking)

    def _dump_rollout(self, batch: DataProto, timing_raw: dict) -> None:
        """``trainer.rollout_data_dir``: verl's JSONL dump of the step's generations, plus, for RPO rows, which part
        of each answer was regenerated (prefix length, the suffix text, generated tokens, cache hit, staleness)."""
        rollout_data_dir = self.config.trainer.get("rollout_data_dir", None)
        if not rollout_data_dir:
            return
        _, extras = extract_reward(batch)
        extras = dict(extras)
        if self._step_rollout is not None:
            extras.update(rollout_dump_fields(batch, self.tokenizer))
        self._log_rollout_data(batch, extras, timing_raw, rollout_data_dir)

    def _training_batches(self, start_epoch: int) -> Iterator[dict]:
        for epoch in range(start_epoch, self.config.trainer.total_epochs):
            self._epoch = epoch
            yield from self.train_dataloader

    # ------------------------------------------------------------------ rollout part of a step

    def _collect_batch(self, batches: Iterator[dict], metrics: dict, timing_raw: dict,
                       profile_rollout: bool = False) -> Optional[DataProto]:
        """Generate (and, for DAPO, filter) until one training batch is full; None when the data runs out.
        ``profile_rollout``: the step is profiled (``global_profiler.steps``), so the rollout servers are too."""
        filter_cfg = self.config.algorithm.filter_groups
        group_size = int(self.config.actor_rollout_ref.rollout.n)
        target_groups = int(self.config.data.train_batch_size)
        rows = RolloutRows()
        kept: Optional[DataProto] = None
        num_gen_batches = 0
        generated_groups = 0
        no_signal_groups = 0
        with marked_timer("gen", timing_raw, color="red"):
            if profile_rollout:
                self.llm_server_manager.start_profile()
            while True:
                batch_dict = next(batches, None)
                if batch_dict is None:
                    return None
                batch = self._generate_and_score(DataProto.from_single_dict(batch_dict), rows, metrics, timing_raw)
                num_gen_batches += 1
                generated_groups += group_count(batch.non_tensor_batch["uid"])
                no_signal_groups += no_signal_group_count(
                    batch.non_tensor_batch["uid"], filter_values(batch, None)
                )
                if not filter_cfg.enable:
                    kept = batch
                    break
                values = filter_values(batch, filter_cfg.metric)
                batch = batch.select_idxs(informative_rows(batch.non_tensor_batch["uid"], values))
                kept = batch if kept is None else DataProto.concat([kept, batch])
                if group_count(kept.non_tensor_batch["uid"]) >= target_groups:
                    kept = kept[: target_groups * group_size]
                    break
                max_batches = int(filter_cfg.max_num_gen_batches)
                if 0 < max_batches <= num_gen_batches:
                    raise RuntimeError(
                        f"DAPO filter kept {group_count(kept.non_tensor_batch['uid'])} of {target_groups} groups "
                        f"after {num_gen_batches} generation batches (algorithm.filter_groups.max_num_gen_batches); "
                        "the data may be too easy or too hard for the model"
                    )
            self.checkpoint_manager.sleep_replicas()
            if profile_rollout:
                self.llm_server_manager.stop_profile()
        # Groups whose G answers all scored the same have zero advantage: no gradient (before any DAPO filter).
        metrics["rpo/no_signal_group_frac"] = no_signal_groups / max(generated_groups, 1)
        if filter_cfg.enable:
            metrics["train/num_gen_batches"] = num_gen_batches
            metrics["train/kept_group_frac"] = target_groups / max(generated_groups, 1)
        metrics.update(self._rollout_metrics(rows))
        return kept

    def _generate_and_score(self, batch: DataProto, rows: RolloutRows, metrics: dict, timing_raw: dict) -> DataProto:
        batch.meta_info["temperature"] = self.config.actor_rollout_ref.rollout.temperature
        batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))], dtype=object)
        gen_batch = self._get_gen_batch(batch)
        gen_batch.meta_info["global_steps"] = self.global_steps
        group_size = int(self.config.actor_rollout_ref.rollout.n)
        if self._step_rollout is not None:
            output = self._step_rollout.generate(self.async_rollout_manager, batch, gen_batch, self.global_steps, rows)
        else:
            output = self.async_rollout_manager.generate_sequences(gen_batch.repeat(group_size, interleave=True))
            rows.suffix_lens.append(response_lengths(output))
        timing_raw.update(output.meta_info.pop("timing", {}))
        batch = batch.repeat(repeat_times=group_size, interleave=True).union(output)
        if "response_mask" not in batch.batch.keys():
            batch.batch["response_mask"] = compute_response_mask(batch)
        reward_tensor, reward_extra_infos = extract_reward(batch)
        batch.batch["token_level_scores"] = reward_tensor
        if reward_extra_infos:
            batch.non_tensor_batch.update({k: np.array(v) for k, v in reward_extra_infos.items()})
        if VERIFY_TIMEOUT_FIELD in reward_extra_infos:
            timeouts = float(np.sum(np.asarray(reward_extra_infos[VERIFY_TIMEOUT_FIELD], dtype=np.float64)))
            metrics["reward/verify_timeouts"] = metrics.get("reward/verify_timeouts", 0.0) + timeouts
        if self._step_rollout is not None:
            metrics["rpo/cache_writes"] = metrics.get("rpo/cache_writes", 0) + self._step_rollout.update_cache(
                batch, self.global_steps, rows
            )
        return batch

    def _rollout_metrics(self, rows: RolloutRows) -> dict[str, float]:
        if self._step_rollout is None:
            return {"rpo/generated_tokens": float(rows.concat("suffix_lens").sum())}
        return rollout_metrics(rows, cache=self._step_rollout.cache, token_budget=self._step_rollout.token_budget,
                               response_budget=int(self.config.data.max_response_length),
                               group_size=int(self.config.actor_rollout_ref.rollout.n),
                               verifying=needs_current_logprobs(self._step.rpo.truncation.mode))

    # ------------------------------------------------------------------ update part of a step

    def _update_policy(self, batch: DataProto, metrics: dict, timing_raw: dict, is_last_step: bool) -> DataProto:
        """verl's PPO update path (old/ref log-probs, KL, rollout correction, advantages, actor, checkpoint, sync)."""
        if self.config.trainer.balance_batch:
            self._balance_batch(batch, metrics=metrics)
        batch.meta_info.update(self._step.training_meta_info)
        if self._step.rpo.shared_prefix:
            add_shared_prefix_columns(batch, whole_rows=self._step.whole_row_groups)
            metrics[IDEAL_METRIC] = whole_group_packed_frac(batch)
        batch.meta_info["global_token_num"] = torch.sum(batch.batch["attention_mask"], dim=-1).tolist()
        batch.meta_info["images_seqlens"] = [
            seqlen
            for mm in batch.non_tensor_batch.get("multi_modal_inputs", [])
            if "image_grid_thw" in mm
            for seqlen in mm["images_seqlens"].tolist()
        ]
        rollout_corr = self.config.algorithm.get("rollout_correction", None)
        bypass = bool(rollout_corr and rollout_corr.get("bypass_mode", False))
        if bypass:
            from verl.trainer.ppo.rollout_corr_helper import apply_bypass_mode

            apply_bypass_mode(
                batch=batch,
                rollout_corr_config=rollout_corr,
                policy_loss_config=self.config.actor_rollout_ref.actor.policy_loss,
            )
        else:
            with marked_timer("old_log_prob", timing_raw, color="blue"):
                old_log_prob, mfu = self._compute_old_log_prob(batch)
                self._log_packing(metrics, "old_log_prob", self._pass_metrics.take())
                actor_cfg = self.config.actor_rollout_ref.actor
                entropy = agg_loss(
                    loss_mat=old_log_prob.batch.pop("entropys"),
                    loss_mask=batch.batch["response_mask"],
                    loss_agg_mode=actor_cfg.loss_agg_mode,
                    loss_scale_factor=actor_cfg.loss_scale_factor,
                )
                metrics.update({"actor/entropy": entropy.detach().item(), "perf/mfu/actor_infer": mfu})
                if "routed_experts" in batch.batch.keys() and "routed_experts" in old_log_prob.batch.keys():
                    raise ValueError(
                        "router_replay.mode='R2' and enable_rollout_routing_replay=True both record routed experts; "
                        "enable_rollout_routing_replay is for R3 mode only"
                    )
                batch = batch.union(old_log_prob)
                if "rollout_log_probs" in batch.batch.keys():
                    from verl.utils.debug.metrics import calculate_debug_metrics

                    metrics.update(calculate_debug_metrics(batch))
        if self.use_reference_policy:
            with marked_timer("ref", timing_raw, color="olive"):
                batch = batch.union(self._compute_ref_log_prob(batch))
                self._log_packing(metrics, "ref", self._pass_metrics.take())
        if self.use_critic:
            with marked_timer("values", timing_raw, color="cyan"):
                batch = batch.union(self._compute_values(batch))

        with marked_timer("adv", timing_raw, color="brown"):
            if self.config.algorithm.use_kl_in_reward:
                batch, kl_metrics = apply_kl_penalty(
                    batch, kl_ctrl=self.kl_ctrl_in_reward, kl_penalty=self.config.algorithm.kl_penalty
                )
                metrics.update(kl_metrics)
            else:
                batch.batch["token_level_rewards"] = batch.batch["token_level_scores"]
            if rollout_corr is not None and "rollout_log_probs" in batch.batch.keys() and not bypass:
                from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch

                batch, is_metrics = compute_rollout_correction_and_add_to_batch(batch, rollout_corr)
                metrics.update(is_metrics)
            batch = compute_advantage(
                batch,
                adv_estimator=self.config.algorithm.adv_estimator,
                gamma=self.config.algorithm.gamma,
                lam=self.config.algorithm.lam,
                num_repeat=self.config.actor_rollout_ref.rollout.n,
                norm_adv_by_std_in_grpo=self.config.algorithm.get("norm_adv_by_std_in_grpo", True),
                config=self.config.algorithm,
            )
        if self.use_critic:
            with marked_timer("update_critic", timing_raw, color="pink"):
                metrics.update(reduce_metrics(self._update_critic(batch).meta_info["metrics"]))
        if self.config.trainer.critic_warmup > self.global_steps:
            self.checkpoint_manager.update_weights(self.global_steps)
            return batch
        if self._step_rollout is not None:
            metrics.update(prefix_loss_tokens(batch))
        with marked_timer("update_actor", timing_raw, color="red"):
            actor_output = self._update_actor(batch)
        self._log_packing(metrics, "update", actor_output.meta_info["metrics"], prefix="actor/")
        metrics.update(reduce_metrics(actor_output.meta_info["metrics"]))
        save_freq = self.config.trainer.save_freq
        # trainer.esi_redundant_time: save before an elastic instance / training plan expires.
        esi_close_to_expiration = should_save_ckpt_esi(
            max_steps_duration=self.max_steps_duration, redundant_time=self.config.trainer.esi_redundant_time
        )
        if save_freq > 0 and (is_last_step or self.global_steps % save_freq == 0 or esi_close_to_expiration):
            if esi_close_to_expiration:
                print("rpo: saving a checkpoint before the ESI instance expires")
            with marked_timer("save_checkpoint", timing_raw, color="green"):
                self._save_checkpoint()
        with marked_timer("update_weights", timing_raw, color="red"):
            self.checkpoint_manager.update_weights(self.global_steps)
        return batch
