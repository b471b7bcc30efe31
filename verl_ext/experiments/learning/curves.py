"""Accuracy curves and per-step diagnostics of one RL run, read from verl's file-logger lines."""

from __future__ import annotations

import statistics
from typing import Iterable

from verl_ext.experiments.run_metrics import metrics_by_step, val_accuracy

# Per-step metrics that explain a difference between arms (means over a run's training steps).
# ``critic/score/mean`` is the training reward (with the accuracy reward: the accuracy on the training prompts, RPO's
# answers counted with their cached prefixes), ``actor/entropy`` the policy's mean token entropy on its batch.
DIAGNOSTIC_METRICS = ("rpo/no_signal_group_frac", "rpo/cached_acc_frac", "rpo/cached_len_mean",
                      "rpo/cache_staleness_mean", "response_length/mean", "rpo/suffix_len_mean",
                      "rpo/verify_accept_rate", "critic/score/mean", "actor/entropy")
STEP_TIME_METRIC = "timing_s/step"
TOKENS_METRIC = "rpo/generated_tokens"


def run_curve(metric_lines: Iterable[dict]) -> list[dict]:
    """One point per validated step, from verl's file-logger lines (``{"step": n, "data": {...}}``).

    A point is ``{"step", "wall_s", "generated_tokens", "acc"}``, where ``wall_s`` and ``generated_tokens`` add up
    ``timing_s/step`` and ``rpo/generated_tokens`` over the training steps up to and including ``step`` (0 for the
    validation before training). Raises ValueError on a training step that lacks either metric, or on a run with no
    validation at all: both mean the run is not the one this experiment configures."""
    by_step = metrics_by_step(metric_lines)
    points, wall_s, tokens = [], 0.0, 0.0
    for step in sorted(by_step):
        data = by_step[step]
        if step > 0:
            missing = [m for m in (STEP_TIME_METRIC, TOKENS_METRIC) if m not in data]
            if missing:
                raise ValueError(f"training step {step} logged no {', '.join(missing)}")
            wall_s += float(data[STEP_TIME_METRIC])
            tokens += float(data[TOKENS_METRIC])
        acc = val_accuracy(data)
        if acc is not None:
            points.append({"step": step, "wall_s": wall_s, "generated_tokens": tokens, "acc": acc})
    if not points:
        raise ValueError("no validation accuracy in the metrics (val-core/<source>/acc/mean@<n>)")
    return points


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
