"""What one training step of :class:`~recipe.rpo.rpo_ray_trainer.RayRPOTrainer` runs.

The trainer asks its ``step_settings(step)`` hook at the start of every step; by default each step runs the run's
own ``rpo`` block. A subclass can vary it per step without touching the trainer's internals: the rollout benchmark
(``verl_ext/experiments/bench/trainer.py``) alternates RPO and full-path steps, shared and unshared passes, dynamic
and fixed micro-batches within one run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from verl_ext.config import RPOConfig


@dataclass(frozen=True)
class StepSettings:
    rpo: RPOConfig
    """The ``rpo`` block this step runs with (its ``shared_prefix`` and ``truncation`` may differ from the run's; the
    cache options may not: the cache is the run's)."""
    partial_rollout: bool
    """True: RPO's partial rollout and cache update; False: the full path (the cache untouched)."""
    training_meta_info: Mapping[str, Any] = field(default_factory=dict)
    """Merged into the batch's meta-info before the training passes; verl's workers take e.g. ``use_dynamic_bsz``
    and ``micro_batch_size_per_gpu`` from it when present."""
    whole_row_groups: bool = False
    """With ``rpo.shared_prefix``: each row its own group, nothing shared (one causal attention per row; the
    benchmark's fastest exact full-path denominator, ``verl_ext/shared_prefix/batch.py``)."""
