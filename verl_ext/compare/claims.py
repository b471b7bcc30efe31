"""The paper's claims checked on runs grouped by label: generated tokens, rollout time and step time as ratios to the
baseline label over the training steps every run has, validation accuracy per benchmark at the last common
validation and over the run with the difference and its interval, response length, and RPO's own diagnostics.

Pure: no logger, no plotting. A run that lacks what a claim needs is an error naming the run and the metric, never a
silent zero; a metric only RPO logs (its diagnostics) is shown for the runs that have it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from verl_ext.compare.curves import STEP_TIME_METRIC, TOKENS_METRIC
from verl_ext.compare.file_logger import VAL_ACC_KEY
from verl_ext.compare.sources import RunHistory

TOKENS = TOKENS_METRIC
ROLLOUT_TIME = "timing_s/gen"
STEP_TIME = STEP_TIME_METRIC
# Metrics every compared run must log at each common training step, with what the report calls them.
COST_METRICS = {TOKENS: "generated tokens", ROLLOUT_TIME: "rollout time (s)", STEP_TIME: "step time (s)"}
RESPONSE_LENGTH = "response_length/mean"
RPO_DIAGNOSTICS = ("rpo/cache_hit_rate", "rpo/no_signal_group_frac", "rpo/mixed_group_frac", "rpo/cut_depth_mean",
                   "rpo/suffix_len_mean")
TRAINING_STEP = "training/global_step"


class ComparisonError(ValueError):
    """Runs that cannot be compared: the message names the runs and what is missing or differs."""


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str


def training_steps(run: RunHistory) -> list[int]:
    """Steps of ``run`` that trained (verl logs ``training/global_step`` or ``timing_s/step`` with each)."""
    return [step for step, data in run.by_step.items() if step > 0 and (TRAINING_STEP in data or STEP_TIME in data)]


def validation_keys(run: RunHistory) -> set[str]:
    """The ``val-core/<source>/acc/mean@<n>`` keys ``run`` ever logged: its benchmarks and samples per problem."""
    return {key for data in run.by_step.values() for key in data if VAL_ACC_KEY.match(key)}


def _steps_text(steps: Sequence[int]) -> str:
    return f"{min(steps)}-{max(steps)}" if steps else "none"


def common_training_steps(runs: Sequence[RunHistory]) -> list[int]:
    common = sorted(set.intersection(*(set(training_steps(run)) for run in runs)))
    if not common:
        ranges = "; ".join(f"{run.location} trains steps {_steps_text(training_steps(run))}" for run in runs)
        raise ComparisonError(f"the runs share no training step: {ranges}")
    return common


def require_metrics(runs: Sequence[RunHistory], metrics: Sequence[str], steps: Sequence[int]) -> None:
    """Every run logs every metric at every step in ``steps``; else one error listing each gap by run."""
    problems = []
    for run in runs:
        for metric in metrics:
            missing = [step for step in steps if metric not in run.by_step[step]]
            if len(missing) == len(steps):
                problems.append(f"{run.location} never logged {metric}")
            elif missing:
                problems.append(f"{run.location} logged no {metric} at steps {', '.join(map(str, missing))}")
    if problems:
        raise ComparisonError("cannot compare: " + "; ".join(problems))


def _mean_over_steps(run: RunHistory, metric: str, steps: Sequence[int]) -> Optional[float]:
    values = [run.by_step[step][metric] for step in steps if metric in run.by_step[step]]
    return statistics.fmean(values) if len(values) == len(steps) else None


def difference_interval(values: Sequence[float], baseline: Sequence[float], confidence: float = 0.95,
                        sampling_variance: Optional[float] = None) -> Optional[Interval]:
    """Interval of ``mean(values) - mean(baseline)``.

    With three runs or more in the two labels: Student's t with the variance pooled over both labels (run-to-run
    noise, validation sampling included; n1 + n2 - 2 degrees of freedom). With one run each: the normal interval of
    ``sampling_variance`` (the validation's own sampling noise) when given, else None: one run per label gives no
    estimate of the noise."""
    from scipy import stats

    mean, base = statistics.fmean(values), statistics.fmean(baseline)
    diff = mean - base
    n1, n2 = len(values), len(baseline)
    if n1 + n2 >= 3:
        squares = sum((v - mean) ** 2 for v in values) + sum((v - base) ** 2 for v in baseline)
        dof = n1 + n2 - 2
        half = stats.t.ppf((1 + confidence) / 2, dof) * math.sqrt(squares / dof * (1 / n1 + 1 / n2))
        return Interval(diff - half, diff + half, f"t, variance pooled over {n1 + n2} runs")
    if sampling_variance is not None:
        half = stats.norm.ppf((1 + confidence) / 2) * math.sqrt(sampling_variance)
        return Interval(diff - half, diff + half, "validation sampling bound")
    return None


def sampling_variance_bound(accuracies: Sequence[float], samples: int, problems: int) -> float:
    """An upper bound on the variance of a label's mean accuracy from validation sampling alone: a score in [0, 1]
    with mean a has variance at most a(1 - a), so a mean over ``problems`` x ``samples`` answers has at most
    a(1 - a) / (problems x samples); the mean of k runs divides that by k."""
    k = len(accuracies)
    return sum(a * (1 - a) for a in accuracies) / (samples * problems * k * k)


def compare_runs(groups: Mapping[str, Sequence[RunHistory]], baseline: str,
                 val_problems: Optional[Mapping[str, int]] = None, confidence: float = 0.95,
                 from_step: int = 1) -> dict[str, Any]:
    """Every label's figures and their ratios or differences to ``baseline``'s (see the module docstring).

    ``val_problems`` maps a benchmark (the ``<source>`` of its accuracy key) to its number of problems, which
    bounds the validation's sampling noise for labels with a single run. Costs count the training steps from
    ``from_step`` on: a run's first step pays one-off start-up work (the rollout engine's compilation, which a
    second run on the same machine may find cached), which is not a cost of either method."""
    if baseline not in groups:
        raise ComparisonError(f"the baseline label {baseline!r} names no run (labels: {', '.join(groups)})")
    if len(groups) < 2:
        raise ComparisonError("give at least two labels: RPO runs and their baseline")
    runs = [run for label_runs in groups.values() for run in label_runs]
    steps = [step for step in common_training_steps(runs) if step >= from_step]
    if not steps:
        raise ComparisonError(f"the runs share no training step from step {from_step} on")
    require_metrics(runs, list(COST_METRICS), steps)

    def per_label(value_of) -> dict[str, list[Optional[float]]]:
        return {label: [value_of(run) for run in label_runs] for label, label_runs in groups.items()}

    def own_steps(run: RunHistory) -> list[int]:
        return [step for step in training_steps(run) if step >= from_step]

    costs = {metric: per_label(lambda run, m=metric: sum(run.by_step[s][m] for s in steps)) for metric in COST_METRICS}
    for run in runs:
        require_metrics([run], [STEP_TIME], own_steps(run))
    whole_run_time = per_label(lambda run: sum(run.by_step[s][STEP_TIME] for s in own_steps(run)))
    response = per_label(lambda run: _mean_over_steps(run, RESPONSE_LENGTH, steps))
    diagnostics = {metric: per_label(lambda run, m=metric: _mean_over_steps(run, m, steps))
                   for metric in RPO_DIAGNOSTICS if any(_mean_over_steps(r, metric, steps) is not None for r in runs)}
    return {
        "labels": list(groups),
        "baseline": baseline,
        "runs": {label: [run.location for run in label_runs] for label, label_runs in groups.items()},
        "steps": steps,
        "costs": {metric: _with_ratios(values, baseline) for metric, values in costs.items()},
        "training_time": {**_with_ratios(whole_run_time, baseline),
                          "steps": per_label(lambda run: len(own_steps(run)))},
        "response_length": _with_ratios(response, baseline),
        "diagnostics": {metric: {"values": values} for metric, values in diagnostics.items()},
        "validation": compare_validation(groups, baseline, dict(val_problems or {}), confidence),
    }


def label_mean(values: Sequence[Optional[float]]) -> Optional[float]:
    """The mean of a label's runs, None unless every run has a value."""
    return statistics.fmean(values) if values and all(v is not None for v in values) else None


def _with_ratios(values: dict[str, list[Optional[float]]], baseline: str) -> dict[str, Any]:
    means = {label: label_mean(label_values) for label, label_values in values.items()}
    base = means[baseline]
    ratios = {label: (mean / base if mean is not None and base else None) for label, mean in means.items()
              if label != baseline}
    return {"values": values, "mean": means, "ratio": ratios}


def compare_validation(groups: Mapping[str, Sequence[RunHistory]], baseline: str, val_problems: dict[str, int],
                       confidence: float) -> dict[str, Any]:
    """Per benchmark: each label's accuracy at the last validation every run has and its mean over the validations
    after training began, with the difference to the baseline and an interval (:func:`difference_interval`)."""
    runs = [run for label_runs in groups.values() for run in label_runs]
    keys = {run.location: validation_keys(run) for run in runs}
    if not any(keys.values()):
        raise ComparisonError("no run logged validation accuracy (val-core/<source>/acc/mean@<n>)")
    reference = keys[runs[0].location]
    if any(run_keys != reference for run_keys in keys.values()):
        listing = "; ".join(f"{location}: {', '.join(sorted(run_keys)) or 'none'}"
                            for location, run_keys in keys.items())
        raise ComparisonError(f"the runs validate on different sets (benchmark and samples per problem): {listing}")
    validated = [{step for step, data in run.by_step.items() if reference <= data.keys()} for run in runs]
    common = sorted(set.intersection(*validated))
    if not common:
        ranges = "; ".join(f"{run.location} at steps {', '.join(map(str, sorted(v))) or 'none'}"
                           for run, v in zip(runs, validated, strict=True))
        raise ComparisonError(f"the runs share no validation step: {ranges}")
    trained = [step for step in common if step > 0]
    benchmarks = {}
    for key in sorted(reference):
        match = VAL_ACC_KEY.match(key)
        source, samples = match["source"], int(match["n"])
        last = {label: [run.by_step[common[-1]][key] for run in label_runs] for label, label_runs in groups.items()}
        over = ({label: [statistics.fmean(run.by_step[s][key] for s in trained) for run in label_runs]
                 for label, label_runs in groups.items()} if trained else None)
        benchmarks[source] = {
            "key": key,
            "samples": samples,
            "last": _differences(last, baseline, samples, val_problems.get(source), confidence),
            "over_run": None if over is None else _differences(over, baseline, samples, None, confidence),
        }
    return {"steps": common, "last_step": common[-1], "trained_steps": trained, "benchmarks": benchmarks}


def _differences(values: dict[str, list[float]], baseline: str, samples: int, problems: Optional[int],
                 confidence: float) -> dict[str, Any]:
    means = {label: statistics.fmean(label_values) for label, label_values in values.items()}
    differences = {}
    for label, label_values in values.items():
        if label == baseline:
            continue
        sampling = None
        if problems:
            sampling = (sampling_variance_bound(label_values, samples, problems)
                        + sampling_variance_bound(values[baseline], samples, problems))
        interval = difference_interval(label_values, values[baseline], confidence, sampling)
        differences[label] = {"diff": means[label] - means[baseline], "interval": interval}
    return {"values": values, "mean": means, "difference": differences}
