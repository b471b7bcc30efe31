"""Tests for verl_ext.cache.replacement: which group member replaces the cache entry."""

from __future__ import annotations

import numpy as np
import pytest

from verl_ext.cache.replacement import choose_replacement
from verl_ext.config import ReplacementConfig


def draws(scores, accs, cfg, count=4000, seed=0) -> np.ndarray:
    """How often each member is chosen over ``count`` draws (index -1 counts None)."""
    rng = np.random.default_rng(seed)
    picks = [choose_replacement(scores, accs, cfg, rng) for _ in range(count)]
    return np.bincount([len(scores) if pick is None else pick for pick in picks], minlength=len(scores) + 1)


def test_last_member_can_be_chosen():
    """The authors' randint(0, G-1) never picks the last member; here it has 1/G in the random branch."""
    counts = draws([0.0] * 4 + [-1.0], None, ReplacementConfig(p_best=0.0), count=5000)
    assert counts[4] > 0
    assert abs(counts[4] / 5000 - 0.2) < 0.03


def test_p_best_zero_is_uniform_over_all_members():
    counts = draws([3.0, 1.0, 2.0, 0.0, 5.0, 4.0], None, ReplacementConfig(p_best=0.0), count=12_000)
    assert np.all(np.abs(counts[:6] / 12_000 - 1 / 6) < 0.02) and counts[6] == 0


def test_p_best_one_always_picks_a_best():
    counts = draws([0.1, 0.9, 0.3], None, ReplacementConfig(p_best=1.0), count=500)
    assert counts[1] == 500


def test_default_mixes_best_and_uniform():
    counts = draws([0.0, 1.0, 0.0, 0.0], None, ReplacementConfig(), count=20_000)
    # best w.p. 0.5, plus 1/4 of the uniform half: 0.625 for the best, 0.125 for each other member
    assert abs(counts[1] / 20_000 - 0.625) < 0.02
    assert np.all(np.abs(counts[[0, 2, 3]] / 20_000 - 0.125) < 0.015)


def test_ties_are_broken_at_random():
    counts = draws([1.0, 0.0, 1.0, 1.0, 0.0], None, ReplacementConfig(p_best=1.0), count=6000)
    assert counts[1] == counts[4] == 0
    assert np.all(np.abs(counts[[0, 2, 3]] / 6000 - 1 / 3) < 0.03)


def test_correct_only_without_a_correct_member_keeps_the_old_entry():
    rng = np.random.default_rng(0)
    cfg = ReplacementConfig(correct_only=True)
    assert choose_replacement([0.5, 0.2], [False, None], cfg, rng) is None
    assert choose_replacement([0.5, 0.2], [False, False], ReplacementConfig(p_best=1.0, correct_only=True), rng) is None


def test_correct_only_draws_among_correct_members():
    scores, accs = [0.9, 0.2, 0.5, 0.1], [False, True, None, True]
    uniform = draws(scores, accs, ReplacementConfig(p_best=0.0, correct_only=True), count=4000)
    assert uniform[0] == uniform[2] == uniform[4] == 0 and abs(uniform[1] / 4000 - 0.5) < 0.04
    best = draws(scores, accs, ReplacementConfig(p_best=1.0, correct_only=True), count=200)
    assert best[1] == 200  # the best score among the correct members, not the overall best


def test_accuracy_metric_prefers_any_correct_member():
    by_acc = ReplacementConfig(p_best=1.0, select_metric="acc")
    counts = draws([0.9, 0.2, 0.5], [False, True, np.True_], by_acc, count=4000)
    assert counts[0] == 0 and abs(counts[1] / 4000 - 0.5) < 0.04


def test_single_member_group():
    assert choose_replacement([0.3], None, ReplacementConfig(), np.random.default_rng(0)) == 0


def test_same_seed_same_choice():
    scores = list(np.linspace(0, 1, 16))
    choices = [choose_replacement(scores, None, ReplacementConfig(), np.random.default_rng(seed)) for seed in range(50)]
    again = [choose_replacement(scores, None, ReplacementConfig(), np.random.default_rng(seed)) for seed in range(50)]
    assert choices == again and len(set(choices)) > 1


@pytest.mark.parametrize(("scores", "accs", "cfg", "message"), [
    ([], None, ReplacementConfig(), "empty group"),
    ([0.1, float("nan")], None, ReplacementConfig(), "NaN"),
    ([0.1, 0.2], [True], ReplacementConfig(), "1 accuracies for a group of 2"),
    ([0.1, 0.2], None, ReplacementConfig(correct_only=True), "needs per-answer accuracies"),
    ([0.1, 0.2], None, ReplacementConfig(select_metric="acc"), "needs per-answer accuracies"),
])
def test_bad_inputs(scores, accs, cfg, message):
    with pytest.raises(ValueError, match=message):
        choose_replacement(scores, accs, cfg, np.random.default_rng(0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"p_best": 1.5}, "p_best"), ({"p_best": -0.1}, "p_best"), ({"p_best": True}, "p_best"),
    ({"select_metric": "reward"}, "select_metric"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=f"rpo.cache.{message}"):
        ReplacementConfig(**kwargs)
