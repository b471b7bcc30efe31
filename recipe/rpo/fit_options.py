"""Parity of ``RayRPOTrainer.fit`` with verl 0.9.1's ``RayPPOTrainer.fit``: what verl's loop reads from the config,
and for each option whether the RPO loop honours it (and in which method) or refuses it at start-up.

``RayRPOTrainer`` replaces verl's ``fit`` (RPO's rollout, the DAPO filter and the cache update sit inside the step),
so whatever verl's loop does beyond that must be carried over or refused out loud: a user who sets an option must
never get nothing with no word about it. :data:`VERL_FIT_OPTIONS` is the list; ``tests/recipe/test_fit_options.py``
reads verl's ``fit`` source and fails when verl reads an option the list does not name.

The helpers below are the pieces of verl's loop that the RPO loop shares: the profiler's step schedule, the per-step
metrics verl logs and GDPO's per-component reward metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
from verl import DataProto
from verl.trainer.ppo.core_algos import AdvantageEstimator
from verl.trainer.ppo.metric_utils import (
    compute_data_metrics,
    compute_throughout_metrics,
    compute_timing_metrics,
    compute_variance_proxy_metrics,
)
from verl.trainer.ppo.ray_trainer import compute_spec_decode_metrics

from verl_ext.config import RPOConfig

Refusal = Callable[[Any, RPOConfig], Optional[str]]
"""Given the trainer config and the rpo block, the reason a setting cannot run, or None when it can."""


@dataclass(frozen=True)
class FitOption:
    """One config option verl's ``fit`` reads. ``honoured_in``: the ``RayRPOTrainer`` method (or the helper of this
    module) that reads it, None when no setting of it is supported; ``evidence``: what that code contains when it
    reads it (default: the option's last key); ``refuse``: the settings refused at start-up."""

    honoured_in: Optional[str]
    refuse: Optional[Refusal] = None
    evidence: Optional[str] = None


def _refuse_remax(config: Any, rpo: RPOConfig) -> Optional[str]:
    if str(config.algorithm.adv_estimator) == "remax":
        return ("algorithm.adv_estimator=remax needs a greedy baseline rollout per prompt, which RayRPOTrainer.fit "
                "does not generate (with rpo.enable=true or false); use verl's main_ppo for REMAX")
    return None


def _refuse_colocated_reward_model(config: Any, rpo: RPOConfig) -> Optional[str]:
    reward_model = config.reward.reward_model
    if reward_model.get("enable", False) and not reward_model.get("enable_resource_pool", False):
        return ("reward.reward_model.enable=true without reward.reward_model.enable_resource_pool=true is a "
                "colocated reward model, which RayRPOTrainer.fit does not call (it scores inside the rollout, "
                "where the cache update needs the rewards); give the reward model its own resource pool")
    return None


def _refuse_rollout_skip(config: Any, rpo: RPOConfig) -> Optional[str]:
    skip = config.get("skip", None) or {}
    enabled = [name for name in ("rollout", "async_rollout", "rollout_tq")
               if (skip.get(name, None) or {}).get("enable", False)]
    if rpo.enable and enabled:
        return (f"skip.{enabled[0]}.enable=true replays dumped rollouts per step, but an RPO step calls the rollout "
                "several times (seeds, then suffixes of the current cache); set it to false or rpo.enable=false")
    return None


VERL_FIT_OPTIONS: dict[str, FitOption] = {
    "trainer.project_name": FitOption("fit"),
    "trainer.experiment_name": FitOption("fit"),
    "trainer.logger": FitOption("fit"),
    "trainer.val_before_train": FitOption("fit"),
    "trainer.val_only": FitOption("fit"),
    "trainer.test_freq": FitOption("fit"),
    "trainer.total_epochs": FitOption("_training_batches"),
    "trainer.balance_batch": FitOption("_update_policy"),
    "trainer.critic_warmup": FitOption("_update_policy"),
    "trainer.save_freq": FitOption("_update_policy"),
    "trainer.esi_redundant_time": FitOption("_update_policy"),
    "trainer.rollout_data_dir": FitOption("_dump_rollout"),
    "global_profiler.steps": FitOption("StepProfileSchedule"),
    "global_profiler.profile_continuous_steps": FitOption("StepProfileSchedule"),
    "skip": FitOption("fit", refuse=_refuse_rollout_skip, evidence="SkipManager.init(self.config)"),
    "reward.reward_model": FitOption(None, refuse=_refuse_colocated_reward_model),
    "actor_rollout_ref.rollout.temperature": FitOption("_generate_and_score"),
    "actor_rollout_ref.rollout.n": FitOption("_generate_and_score"),
    "actor_rollout_ref.actor.loss_agg_mode": FitOption("_update_policy"),
    "actor_rollout_ref.actor.loss_scale_factor": FitOption("_update_policy"),
    "actor_rollout_ref.actor.policy_loss": FitOption("_update_policy"),
    "algorithm.adv_estimator": FitOption("_update_policy", refuse=_refuse_remax),
    "algorithm.rollout_correction": FitOption("_update_policy"),
    "algorithm.use_kl_in_reward": FitOption("_update_policy"),
    "algorithm.kl_penalty": FitOption("_update_policy"),
    "algorithm.gamma": FitOption("_update_policy"),
    "algorithm.lam": FitOption("_update_policy"),
    "algorithm.norm_adv_by_std_in_grpo": FitOption("_update_policy"),
    "algorithm.gdpo_reward_keys": FitOption("verl_step_metrics"),
}
"""Every option verl 0.9.1's ``RayPPOTrainer.fit`` reads (``self.use_rm`` stands for ``reward.reward_model``,
``SkipManager.init(self.config)`` for ``skip``)."""


def check_fit_options(config: Any, rpo: RPOConfig) -> None:
    """Raise ``ValueError`` naming the option for any setting of verl's loop that ``RayRPOTrainer.fit`` cannot run."""
    for option in VERL_FIT_OPTIONS.values():
        reason = option.refuse(config, rpo) if option.refuse is not None else None
        if reason:
            raise ValueError(reason)


class StepProfileSchedule:
    """``global_profiler.steps`` / ``profile_continuous_steps`` as verl's loop reads them: which step starts and
    which stops the profiler, and on which one the finish command (e.g. a trace upload) runs once."""

    def __init__(self, profiler_config: Any, first_step: int) -> None:
        self.steps = set(profiler_config.steps or [])
        self.last = max(self.steps) if self.steps else None
        self.continuous = bool(profiler_config.profile_continuous_steps)
        self.first_step = first_step

    def profiling(self, step: int) -> bool:
        return step in self.steps

    def start(self, step: int) -> bool:
        """Start at a profiled step; in continuous mode only at the first of a run of profiled steps (the first
        step after a resume counts as the start of a run)."""
        if not self.continuous:
            return self.profiling(step)
        return self.profiling(step) and (step == self.first_step or not self.profiling(step - 1))

    def stop(self, step: int, is_last_step: bool) -> tuple[bool, bool]:
        """(stop the profiler now, run the finish command now)."""
        if not self.profiling(step):
            return False, False
        stop = not self.continuous or is_last_step or not self.profiling(step + 1)
        return stop, stop and (step == self.last or is_last_step)


def component_reward_metrics(columns: Mapping[str, Any], keys: Iterable[str], prefix: str) -> dict[str, float]:
    """Mean, std, max and min of each per-answer reward component present in ``columns`` (GDPO's metrics)."""
    result: dict[str, float] = {}
    for key in keys:
        if key not in columns:
            continue
        values = np.asarray(columns[key], dtype=np.float32)
        result.update({f"{prefix}/{key}/mean": float(values.mean()), f"{prefix}/{key}/std": float(values.std()),
                       f"{prefix}/{key}/max": float(values.max()), f"{prefix}/{key}/min": float(values.min())})
    return result


def verl_step_metrics(trainer: Any, batch: DataProto, metrics: dict, timing_raw: dict) -> dict[str, float]:
    """The per-step metrics verl's fit logs: data, timing, throughput, variance proxies, speculative decoding,
    and GDPO's per-component rewards (``algorithm.gdpo_reward_keys``)."""
    result = compute_data_metrics(batch=batch, use_critic=trainer.use_critic)
    result.update(compute_timing_metrics(batch=batch, timing_raw=timing_raw))
    result.update(
        compute_throughout_metrics(
            batch=batch, timing_raw=timing_raw, n_gpus=trainer.resource_pool_manager.get_n_gpus()
        )
    )
    result.update(compute_variance_proxy_metrics(batch=batch, gradient_norm=metrics.get("actor/grad_norm")))
    ntb = batch.non_tensor_batch
    result.update(compute_spec_decode_metrics(
        ntb.get("spec_num_draft_tokens"), ntb.get("spec_num_accepted_tokens"), ntb.get("spec_num_verify_steps")
    ))
    gdpo_keys = trainer.config.algorithm.get("gdpo_reward_keys", None)
    if gdpo_keys and trainer.config.algorithm.adv_estimator in ("gdpo", AdvantageEstimator.GDPO):
        result.update(component_reward_metrics(ntb, gdpo_keys, prefix="gdpo"))
    return result
