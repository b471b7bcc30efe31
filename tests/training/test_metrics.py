"""Tests for verl_ext.training.metrics, with hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from verl_ext.training.metrics import compute_rpo_metrics


def step_inputs(**overrides):
    """Two prompts, G=3. Prompt "a" hit the cache (entry 4 steps old), prompt "b" was seeded this step with a
    100-token answer (so its rows are cut from that seed and count as misses)."""
    inputs = dict(
        prefix_lens=np.array([90, 90, 90, 40, 40, 40]),
        suffix_lens=np.array([10, 20, 30, 60, 50, 0]),
        group_ids=np.array(["uid-a", "uid-a", "uid-a", "uid-b", "uid-b", "uid-b"], dtype=object),
        cache_hit=np.array([True, True, True, False, False, False]),
        staleness=np.array([4, 4, 4, 0, 0, 0]),
        cache_size=50,
        seed_count=1,
        seed_tokens=100,
        response_budget=128,
        group_size=3,
    )
    inputs.update(overrides)
    return inputs


def test_hand_computed_step():
    metrics = compute_rpo_metrics(**step_inputs())
    # suffixes 10+20+30+60+50+0 = 170; generated = 170 + 100 seed tokens = 270
    # full answers 100, 110, 120, 100, 90, 40: mean 560/6; estimate = 2 prompts * 3 * 560/6 = 560
    assert metrics == pytest.approx({
        "rpo/generated_tokens": 270.0,
        "rpo/suffix_tokens": 170.0,
        "rpo/prefix_tokens": 390.0,
        "rpo/suffix_len_mean": 170 / 6,
        "rpo/suffix_len_max": 60.0,
        "rpo/prefix_len_mean": 65.0,
        "rpo/prefix_len_max": 90.0,
        "rpo/cache_size": 50.0,
        "rpo/cache_hit_rate": 0.5,
        "rpo/seed_count": 1.0,
        "rpo/seed_tokens": 100.0,
        "rpo/cache_staleness_mean": 4.0,
        "rpo/cache_staleness_max": 4.0,
        "rpo/full_rollout_tokens_est": 560.0,
        "rpo/gen_tokens_saved_frac": 1 - 270 / 560,
    })
    assert all(type(value) is float for value in metrics.values())


def test_staleness_is_averaged_over_cache_hits_per_prompt():
    metrics = compute_rpo_metrics(**step_inputs(
        group_ids=np.array([1, 1, 2, 2, 3, 3]), cache_hit=np.array([True, True, True, True, False, False]),
        staleness=np.array([2, 2, 7, 7, 0, 0]), group_size=2, seed_tokens=0, seed_count=0))
    assert metrics["rpo/cache_staleness_mean"] == 4.5 and metrics["rpo/cache_staleness_max"] == 7.0
    assert metrics["rpo/cache_hit_rate"] == pytest.approx(2 / 3)
    # full answers 100, 110, 120, 100, 90, 40: 3 prompts * 2 * 560/6 = 560; generated = 170
    assert metrics["rpo/gen_tokens_saved_frac"] == pytest.approx(1 - 170 / 560)


def test_no_cache_hit_reports_zero_staleness():
    metrics = compute_rpo_metrics(**step_inputs(cache_hit=np.zeros(6, dtype=bool)))
    assert metrics["rpo/cache_hit_rate"] == 0.0
    assert metrics["rpo/cache_staleness_mean"] == metrics["rpo/cache_staleness_max"] == 0.0


def test_seeding_can_cost_more_than_it_saves():
    metrics = compute_rpo_metrics(**step_inputs(seed_count=2, seed_tokens=500))
    assert metrics["rpo/gen_tokens_saved_frac"] == pytest.approx(1 - 670 / 560)


def test_all_empty_answers_give_a_zero_estimate():
    metrics = compute_rpo_metrics(**step_inputs(prefix_lens=np.zeros(6, dtype=int), suffix_lens=np.zeros(6, dtype=int),
                                                seed_tokens=0))
    assert metrics["rpo/full_rollout_tokens_est"] == 0.0 and metrics["rpo/gen_tokens_saved_frac"] == 0.0


@pytest.mark.parametrize(("overrides", "message"), [
    ({"prefix_lens": np.array([], dtype=int), "suffix_lens": np.array([], dtype=int),
      "group_ids": np.array([]), "cache_hit": np.array([], dtype=bool), "staleness": np.array([], dtype=int)},
     "no rows"),
    ({"suffix_lens": np.array([1, 2])}, "suffix_lens has shape"),
    ({"prefix_lens": np.array([1.5] * 6)}, "prefix_lens must hold integers"),
    ({"suffix_lens": np.array([-1, 0, 0, 0, 0, 0])}, "suffix_lens must be >= 0"),
    ({"seed_tokens": -3}, "seed_tokens must be >= 0"),
    ({"group_size": 0}, "group_size"),
    ({"response_budget": 105}, "2 rows exceed response_budget=105, e.g. row 1: prefix 90 \\+ suffix 20"),
    ({"cache_hit": np.array([True, False, True, False, False, False])}, "group 'uid-a' disagree on cache_hit"),
    ({"staleness": np.array([4, 5, 4, 0, 0, 0])}, "group 'uid-a' disagree on staleness"),
])
def test_inconsistent_inputs(overrides, message):
    with pytest.raises(ValueError, match=message):
        compute_rpo_metrics(**step_inputs(**overrides))
