"""verl_ext.compare.curves: a run's accuracy curve against its cost from logged metrics, and the mean of several."""

from __future__ import annotations

import pytest

from verl_ext.compare.curves import mean_curve, run_curve, spread
from verl_ext.compare.file_logger import metrics_by_step

VAL_KEY = "val-core/tiny_arith/acc/mean@1"


def _by_step(accs: dict[int, float], step_s: float, tokens: float, steps: int) -> dict[int, dict]:
    """A run's metrics by step: validation before training (step 0) and at the steps in ``accs``."""
    by_step = {0: {VAL_KEY: accs[0], "val-aux/tiny_arith/score/mean@1": 9.0}}
    for step in range(1, steps + 1):
        by_step[step] = {"training/global_step": step, "timing_s/step": step_s, "rpo/generated_tokens": tokens,
                         **({VAL_KEY: accs[step]} if step in accs else {})}
    return by_step


def test_run_curve_accumulates_wall_clock_and_tokens_up_to_each_validation():
    curve = run_curve(_by_step({0: 0.25, 2: 0.5, 4: 0.75}, step_s=3.0, tokens=100.0, steps=4))
    assert curve == [
        {"step": 0, "wall_s": 0.0, "generated_tokens": 0.0, "acc": 0.25},
        {"step": 2, "wall_s": 6.0, "generated_tokens": 200.0, "acc": 0.5},
        {"step": 4, "wall_s": 12.0, "generated_tokens": 400.0, "acc": 0.75},
    ]


def test_run_curve_reads_only_the_core_accuracy_and_averages_sources():
    by_step = {0: {VAL_KEY: 0.2, "val-core/other/acc/mean@4": 0.4, "val-aux/tiny_arith/acc/std@1": 0.9,
                   "val-core/tiny_arith/reward/mean@1": 5.0}}
    assert run_curve(by_step)[0]["acc"] == pytest.approx(0.3)


def test_run_curve_of_file_logger_lines_merges_the_lines_of_one_step():
    lines = [{"step": 1, "data": {"timing_s/step": 2.0, "rpo/generated_tokens": 10}}, {"step": 1, "data": {VAL_KEY: 1}}]
    assert run_curve(metrics_by_step(lines)) == [{"step": 1, "wall_s": 2.0, "generated_tokens": 10.0, "acc": 1.0}]


def test_run_curve_rejects_a_training_step_without_timing_or_tokens():
    by_step = _by_step({0: 0.1, 2: 0.2}, 1.0, 5.0, 2)
    del by_step[1]["rpo/generated_tokens"]
    with pytest.raises(ValueError, match="step 1 logged no rpo/generated_tokens"):
        run_curve(by_step)


def test_run_curve_rejects_a_run_without_validation():
    with pytest.raises(ValueError, match="no validation accuracy"):
        run_curve({step: data for step, data in _by_step({0: 0.1}, 1.0, 5.0, 2).items() if step > 0})


def test_spread_of_one_value_has_zero_std():
    assert spread([0.5]) == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5}
    assert spread([1, 3])["std"] == pytest.approx(2**0.5)


def test_mean_curve_averages_per_step_over_seeds_on_common_steps():
    a = run_curve(_by_step({0: 0.2, 2: 0.4, 4: 0.6}, 1.0, 10.0, 4))
    b = run_curve(_by_step({0: 0.4, 2: 0.6}, 3.0, 30.0, 2))
    mean = mean_curve([a, b])
    assert [p["step"] for p in mean] == [0, 2]
    assert mean[1]["acc"]["mean"] == pytest.approx(0.5)
    assert mean[1]["wall_s"] == {"mean": 4.0, "std": pytest.approx(2 * 2**0.5), "min": 2.0, "max": 6.0}


def test_run_curve_from_step_counts_costs_from_that_step_only():
    by_step = _by_step({0: 0.1, 2: 0.2, 4: 0.3}, 2.0, 10.0, 4)
    del by_step[1]["timing_s/step"]  # a step left out of the costs may lack them
    assert [(p["step"], p["wall_s"], p["generated_tokens"]) for p in run_curve(by_step, from_step=2)] == [
        (0, 0.0, 0.0), (2, 2.0, 10.0), (4, 6.0, 30.0)]
