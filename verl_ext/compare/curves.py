"""A run's accuracy curve against its cost, and the mean of several runs' curves: the figures shared by the compare
tool and the learning testbed (``verl_ext/experiments/learning/report.py``)."""

from __future__ import annotations

import statistics
from typing import Mapping, Sequence

from verl_ext.compare.file_logger import val_accuracy

STEP_TIME_METRIC = "timing_s/step"
TOKENS_METRIC = "rpo/generated_tokens"


def run_curve(by_step: Mapping[int, Mapping[str, float]], from_step: int = 1) -> list[dict]:
    """One point per validated step of a run's metrics by step.

    A point is ``{"step", "wall_s", "generated_tokens", "acc"}``, where ``wall_s`` and ``generated_tokens`` add up
    ``timing_s/step`` and ``rpo/generated_tokens`` over the training steps from ``from_step`` up to and including
    ``step`` (0 before) and ``acc`` is the mean of the benchmarks' ``val-core/<source>/acc/mean@<n>``.
    Raises ValueError on a counted training step that lacks either cost metric, or on a run with no validation."""
    points, wall_s, tokens = [], 0.0, 0.0
    for step in sorted(by_step):
        data = by_step[step]
        if step >= max(from_step, 1):
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


def spread(values: Sequence[float]) -> dict[str, float]:
    """mean, sample standard deviation (0 for one value), min and max."""
    values = [float(v) for v in values]
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def mean_curve(curves: Sequence[Sequence[dict]]) -> list[dict]:
    """Per validated step common to all ``curves`` (one per run): the spread of accuracy, wall-clock and tokens."""
    if not curves:
        raise ValueError("no curves to average")
    common = set.intersection(*({p["step"] for p in curve} for curve in curves))
    result = []
    for step in sorted(common):
        at_step = [next(p for p in curve if p["step"] == step) for curve in curves]
        result.append({"step": step, **{
            field: spread([p[field] for p in at_step]) for field in ("acc", "wall_s", "generated_tokens")
        }})
    return result
