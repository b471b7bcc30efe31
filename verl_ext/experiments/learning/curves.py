"""Per-step diagnostics of one RL run, read from verl's file-logger lines (its accuracy curve:
:func:`verl_ext.compare.curves.run_curve`)."""

from __future__ import annotations

import statistics
from typing import Iterable

from verl_ext.compare.file_logger import metrics_by_step

# Per-step metrics that explain a difference between arms (means over a run's training steps).
# ``critic/score/mean`` is the training reward (with the accuracy reward: the accuracy on the training prompts, RPO's
# answers counted with their cached prefixes), ``actor/entropy`` the policy's mean token entropy on its batch.
DIAGNOSTIC_METRICS = ("rpo/no_signal_group_frac", "rpo/mixed_group_frac", "rpo/cut_depth_mean", "rpo/cached_acc_frac",
                      "rpo/cached_len_mean", "response_length/mean", "rpo/suffix_len_mean", "rpo/verify_accept_rate",
                      "rpo/refresh_count", "rpo/counterpart_cut_frac", "critic/score/mean", "actor/entropy")


def diagnostic_steps(metric_lines: Iterable[dict]) -> dict[str, list[list[float]]]:
    """Per :data:`DIAGNOSTIC_METRICS` the run logged: ``[step, value]`` for every training step, for plots of how a
    difference between arms builds up (the cache fills in the first epoch, goes stale in the next ones)."""
    steps = sorted((step, data) for step, data in metrics_by_step(metric_lines).items()
                   if step > 0 and "training/global_step" in data)
    return {metric: [[step, float(data[metric])] for step, data in steps if metric in data]
            for metric in DIAGNOSTIC_METRICS if any(metric in data for _, data in steps)}


def run_diagnostics(metric_lines: Iterable[dict]) -> dict[str, float]:
    """Means over a run's training steps of the :data:`DIAGNOSTIC_METRICS` it logged."""
    return {metric: statistics.fmean(value for _, value in points)
            for metric, points in diagnostic_steps(metric_lines).items()}
