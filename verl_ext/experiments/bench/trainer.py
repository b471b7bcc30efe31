"""The benchmark's trainer: ``RayRPOTrainer`` whose steps follow :func:`~verl_ext.experiments.bench.arms.step_plan`,
through the trainer's public per-step hooks (``step_settings``, ``on_rollout_end``; ``recipe/rpo/step_settings.py``).

A full-path step runs the trainer's ``rpo.enable=false`` branch and leaves the cache untouched; the arm's
``shared_prefix`` (and with it the rank balancing) and cut policy hold for the step's rollout and training passes; a
``*_static`` arm trains with fixed micro-batches. Imports verl: import it after the platform is selected.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

from verl import DataProto

from recipe.rpo.main_rpo import RPOTaskRunner
from recipe.rpo.rpo_ray_trainer import RayRPOTrainer
from recipe.rpo.step_settings import StepSettings
from verl_ext.experiments.bench.arms import ARMS, static_batching, step_plan
from verl_ext.experiments.bench.records import (
    ARM_METRIC,
    CACHED_METRIC,
    CONTEXT_METRIC,
    ENGINE_CALL_METRIC,
    TOKENS_METRIC,
    WARMUP_METRIC,
)


def prefix_cache_metrics(batch: Any) -> dict[str, float]:
    """Context tokens the engine was sent (prompt + cached prefix, summed over the rows of the batch's last
    generation call) and how many of them vLLM's prefix cache served (verl's ``num_cached_tokens`` per request)."""
    import numpy as np

    prompt_width = batch.batch["prompts"].shape[-1]
    prompt_lens = batch.batch["attention_mask"][:, :prompt_width].sum(-1).cpu().numpy().astype(np.int64)
    prefix_lens = np.asarray(batch.non_tensor_batch.get("rpo_prefix_len", np.zeros(len(batch))), dtype=np.int64)
    context = int((prompt_lens + prefix_lens).sum())
    result = {CONTEXT_METRIC: float(context)}
    cached = batch.non_tensor_batch.get("num_cached_tokens")
    if cached is not None and all(value is not None for value in cached):
        result[CACHED_METRIC] = float(np.sum(np.asarray(cached, dtype=np.int64)))
        result["bench/prefix_cache_hit_rate"] = result[CACHED_METRIC] / context if context else 0.0
    return result


class TimedManager:
    """The agent-loop manager with the wall time of each ``generate_sequences`` round trip recorded."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[float] = []

    def generate_sequences(self, prompts: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._inner.generate_sequences(prompts)
        finally:
            self.calls.append(time.perf_counter() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class BenchRPOTrainer(RayRPOTrainer):
    """RayRPOTrainer running RPO while warming up, then the arms of ``config.bench.arms`` in turn."""

    def init_workers(self) -> None:
        super().init_workers()
        self.async_rollout_manager = TimedManager(self.async_rollout_manager)

    def step_plan(self, step: int) -> tuple[str, str]:
        bench = self.config.bench
        return step_plan(step, int(bench.warmup_steps), list(bench.arms))

    def step_settings(self, step: int) -> StepSettings:
        arm = ARMS[self.step_plan(step)[1]]
        truncation = dataclasses.replace(self.rpo.truncation, mode="verified") if arm.verified else self.rpo.truncation
        meta_info = {} if arm.dynamic_bsz else static_batching(int(self.config.bench.micro_batch_size))
        return StepSettings(rpo=dataclasses.replace(self.rpo, shared_prefix=arm.shared_prefix, truncation=truncation),
                            partial_rollout=arm.rpo, training_meta_info=meta_info, whole_row_groups=arm.whole_rows)

    def on_rollout_end(self, batch: Optional[DataProto], metrics: dict, timing_raw: dict) -> None:
        phase, arm_name = self.step_plan(self.global_steps)
        manager = self.async_rollout_manager
        metrics[ARM_METRIC] = list(ARMS).index(arm_name)
        metrics[WARMUP_METRIC] = int(phase == "warmup")
        metrics[ENGINE_CALL_METRIC] = float(sum(manager.calls))
        metrics["bench/engine_calls"] = len(manager.calls)
        manager.calls.clear()
        if batch is not None:
            metrics.update(prefix_cache_metrics(batch))
        print(f"bench: step {self.global_steps} {phase} {arm_name}: "
              f"{metrics.get(TOKENS_METRIC)} generated tokens, gen {timing_raw.get('gen', float('nan')):.2f} s")


class BenchTaskRunner(RPOTaskRunner):
    trainer_cls = BenchRPOTrainer
