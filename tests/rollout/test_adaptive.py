"""The adaptive cut (verl_ext/rollout/adaptive.py) and the run's token budget (verl_ext/rollout/token_budget.py)."""

from __future__ import annotations

import numpy as np
import pytest

from verl_ext.config import TruncationConfig, load_rpo_config
from verl_ext.rollout.adaptive import adaptive_cut, depth_of, update_depth, within_allowance
from verl_ext.rollout.token_budget import TokenBudget
from verl_ext.rollout.truncation import (
    CUT_POLICIES,
    CachedAnswers,
    GroupOutcome,
    is_budgeted,
    register_cut_policy,
    sample_cuts,
    state_update,
)

ADAPTIVE = TruncationConfig(mode="adaptive", max_new_tokens=8, depth_init=0.25, depth_min=0.02, depth_factor=2.0)


def depth_after(depth, right, size=8, cut_answer_right=True, cfg=ADAPTIVE):
    return float(update_depth(np.array([depth]), GroupOutcome(right, size, cut_answer_right), cfg)[0])


# ---------------------------------------------------------------- the update rule


def test_adaptive_update_keeps_a_mixed_groups_depth():
    for right in range(1, 8):
        assert depth_after(0.3, right) == 0.3
        assert depth_after(0.3, right, cut_answer_right=False) == 0.3


def test_adaptive_update_goes_deeper_after_an_all_right_group():
    assert depth_after(0.25, 8) == 0.5
    assert depth_after(0.25, 8, cut_answer_right=False) == 0.5


def test_adaptive_update_all_wrong_moves_by_the_correctness_of_the_kept_prefix():
    # A right prefix and still every suffix wrong: too much to regenerate, go shallower.
    assert depth_after(0.25, 0, cut_answer_right=True) == 0.125
    # A wrong (or unknown) cached answer: the slip may be in the kept prefix, so regenerate past it.
    assert depth_after(0.25, 0, cut_answer_right=False) == 0.5
    assert depth_after(0.25, 0, cut_answer_right=None) == 0.5


def test_adaptive_update_reads_a_numpy_flag_as_a_plain_one():
    # The flag comes from an object column of the batch and may be a numpy bool.
    assert float(update_depth(np.array([0.25]), GroupOutcome(0, 8, np.True_), ADAPTIVE)[0]) == 0.125
    assert float(update_depth(np.array([0.25]), GroupOutcome(0, 8, np.False_), ADAPTIVE)[0]) == 0.5


def test_adaptive_update_stays_within_depth_min_and_one():
    assert depth_after(0.75, 8) == 1.0
    assert depth_after(0.03, 0, cut_answer_right=True) == ADAPTIVE.depth_min
    # A prompt seen for the first time starts from depth_init.
    assert depth_of(None, ADAPTIVE) == 0.25
    assert float(update_depth(None, GroupOutcome(8, 8, True), ADAPTIVE)[0]) == 0.5


# ---------------------------------------------------------------- the cut


def draw(lengths, states=None, allowance=None, seed=0, cfg=ADAPTIVE):
    lengths = np.asarray(lengths)
    answers = CachedAnswers(lengths, None, tuple(states or [None] * len(lengths)), allowance)
    return adaptive_cut(answers, cfg, np.random.default_rng(seed))


def test_adaptive_cut_regenerates_about_each_prompts_depth():
    lengths = np.full(4000, 200)
    depths = np.repeat([0.05, 0.2, 0.8], [1000, 1000, 2000])
    prefix, budget, _ = draw(lengths, [np.array([d]) for d in depths])
    regenerated = (lengths - prefix) / lengths
    for depth in (0.05, 0.2):
        fractions = regenerated[depths == depth]
        # Jittered within a factor sqrt(2) either side (plus the ceil to whole tokens).
        assert fractions.min() >= depth / 2**0.5 - 1e-9 and fractions.max() <= depth * 2**0.5 + 1 / 200
        assert abs(np.exp(np.log(fractions).mean()) - depth) < 0.05 * depth + 1 / 200
    assert regenerated[depths == 0.8].max() == 1.0  # capped at the whole answer: an empty prefix
    # The suffix may run what was cut plus max_new_tokens.
    np.testing.assert_array_equal(budget, lengths - prefix + ADAPTIVE.max_new_tokens)


def test_adaptive_cut_keeps_the_cut_contract_for_any_length():
    lengths = np.array([0, 1, 2, 3, 50, 224, 500])
    cuts = sample_cuts(lengths, 224, ADAPTIVE, np.random.default_rng(1), states=[np.array([1.0])] * len(lengths))
    for length, cut in zip(np.minimum(lengths, 224), cuts, strict=True):
        assert 0 <= cut.prefix_len <= max(length - 1, 0) and cut.max_new_tokens >= 1
        assert cut.prefix_len + cut.max_new_tokens <= 224
        assert cut.prefix_len <= (1 - 2**-0.5) * length  # depth 1: at least 1/sqrt(2) of the answer regenerated


def test_adaptive_cut_scales_every_prompt_down_to_the_allowance():
    lengths = np.full(10, 100)
    prefix, _, _ = draw(lengths, [np.array([0.5])] * 10, allowance=100)
    regenerated = lengths - prefix
    assert regenerated.sum() <= 100 and (regenerated >= 1).all()
    unscaled, _, _ = draw(lengths, [np.array([0.5])] * 10)
    # The same draws, every one scaled by one common factor.
    wanted = lengths - unscaled
    np.testing.assert_array_equal(regenerated, np.maximum(np.floor(wanted * 100 / wanted.sum()), 1))
    assert within_allowance(np.array([3, 4]), None).tolist() == [3, 4]
    assert within_allowance(np.array([3, 4]), 10.0).tolist() == [3, 4]
    assert within_allowance(np.array([30, 40, 0]), 7.0).tolist() == [3, 4, 0]
    assert within_allowance(np.array([30, 40]), 0.0).tolist() == [1, 1]  # never below one token


@pytest.fixture
def probe_policy():
    """A stateful, budgeted user policy that records what it was given; unregistered afterwards."""
    seen = {}

    @register_cut_policy("test_adaptive_probe", update=lambda state, outcome, cfg: np.array([1.0]), budgeted=True)
    def probe(answers, cfg, rng):
        seen["states"], seen["allowance"] = answers.states, answers.allowance
        return np.zeros_like(answers.lengths), np.ones_like(answers.lengths)

    yield seen
    CUT_POLICIES.pop("test_adaptive_probe")


def test_adaptive_state_and_allowance_reach_the_policy_through_sample_cuts(probe_policy):
    seen = probe_policy
    cfg = TruncationConfig(mode="test_adaptive_probe")
    sample_cuts([5, 6], 64, cfg, np.random.default_rng(0), states=[None, np.array([0.5])], allowance=7.0)
    assert seen["states"][0] is None and seen["states"][1].tolist() == [0.5] and seen["allowance"] == 7.0
    assert state_update("test_adaptive_probe") is not None and is_budgeted("test_adaptive_probe")
    # A stateless, unbudgeted policy sees no allowance.
    assert state_update("tail") is None and not is_budgeted("tail")
    with pytest.raises(ValueError, match="2 states for 1 answers"):
        sample_cuts([5], 64, cfg, np.random.default_rng(0), states=[None, None])


def test_adaptive_config_is_checked_at_start_up():
    assert load_rpo_config({"truncation": {"mode": "adaptive", "token_share": 0.3}}).truncation.token_share == 0.3
    with pytest.raises(ValueError, match="token_share=0.3 has no effect in mode 'tail'"):
        load_rpo_config({"truncation": {"mode": "tail", "token_share": 0.3}})
    with pytest.raises(ValueError, match=r"token_share must be a number in \(0, 1\]"):
        load_rpo_config({"truncation": {"mode": "adaptive", "token_share": 1.5}})
    with pytest.raises(ValueError, match="depth_min <= depth_init"):
        load_rpo_config({"truncation": {"mode": "adaptive", "depth_init": 0.01}})
    with pytest.raises(ValueError, match="depth_factor > 1"):
        load_rpo_config({"truncation": {"mode": "adaptive", "depth_factor": 1.0}})
    with pytest.raises(ValueError, match="depth_factor has no effect in mode 'uniform'"):
        load_rpo_config({"truncation": {"mode": "uniform", "depth_factor": 3.0}})


# ---------------------------------------------------------------- the token budget


def test_adaptive_budget_allows_what_keeps_the_run_within_its_share():
    budget = TokenBudget(0.25)
    # First step: 4 prompts of 100 tokens, G = 8, the full path would generate 3200; no seeding.
    assert budget.allowance(step_full_estimate=3200, step_generated=0, group_size=8) == pytest.approx(100)
    # Seeding already spent 400 tokens of this step's 800.
    assert budget.allowance(step_full_estimate=3200, step_generated=400, group_size=8) == pytest.approx(50)
    budget.record(generated=800, full_estimate=3200, planned=800, suffix=800)
    assert budget.spent_share == 0.25 and budget.overrun == 1.0
    # Suffixes that ran twice as long as planned: the run's overrun becomes 1.5, shrinking the next allowance.
    budget.record(generated=1600, full_estimate=3200, planned=800, suffix=1600)
    assert budget.overrun == 1.5
    assert budget.allowance(step_full_estimate=3200, step_generated=0, group_size=8) == pytest.approx(
        (0.25 * 9600 - 2400) / (8 * 1.5))
    # Over budget: nothing more is allowed (the policy still regenerates one token per answer).
    budget.record(generated=5000, full_estimate=0, planned=100, suffix=100)
    assert budget.allowance(step_full_estimate=3200, step_generated=0, group_size=8) == 0.0


def test_adaptive_budget_holds_the_share_over_a_simulated_run():
    """Prompts that ask for much more than the share: the cumulative share converges to the target from below."""
    rng = np.random.default_rng(0)
    budget, group = TokenBudget(0.3), 8
    for _ in range(30):
        lengths = rng.integers(150, 220, size=16)
        allowance = budget.allowance(step_full_estimate=group * lengths.sum(), step_generated=0, group_size=group)
        regenerated = within_allowance(np.ceil(0.9 * lengths).astype(np.int64), allowance)
        suffix = (regenerated[:, None] * rng.uniform(0.8, 1.3, size=(16, group))).round().sum()
        budget.record(generated=suffix, full_estimate=group * lengths.sum(), planned=group * regenerated.sum(),
                      suffix=suffix)
    assert 0.27 < budget.spent_share < 0.32


def test_adaptive_budget_state_round_trip_takes_the_configured_share():
    budget = TokenBudget(0.3, generated=10, full_estimate=100, planned=8, suffix=9)
    restored = TokenBudget.from_state_dict(budget.state_dict(), 0.5)
    assert restored.state_dict() == budget.state_dict() and restored.share == 0.5
    with pytest.raises(ValueError, match="expected"):
        TokenBudget.from_state_dict({"generated": 1.0}, 0.3)
    with pytest.raises(ValueError, match="token_share"):
        TokenBudget(0.0)


def test_adaptive_budget_counts_a_calls_cuts_and_its_uncut_prompts():
    budget = TokenBudget(0.25)
    # Two answers of 100 tokens to cut and one prompt without an answer (a full_group cold start, G full rollouts
    # expected at R = 200 tokens each, generated and estimated alike), G = 4, 50 tokens already seeded this call.
    allowance = budget.call_allowance(cut_lengths=[100, 100], uncut_prompts=1, group_size=4, response_length=200,
                                      step_generated=50)
    # Room: 0.25 x (800 full-path tokens for the cuts + 800 for the uncut rows) - 50 seeded - 800 uncut < 0.
    assert allowance == 0.0
    assert budget.call_allowance(cut_lengths=[100, 100], uncut_prompts=0, group_size=4, response_length=200,
                                 step_generated=0) == pytest.approx(50)
    budget.record_call(cut_lengths=[100, 100], regenerated=[10, 30], cut_suffix_tokens=150, uncut_tokens=700,
                       step_generated=50, group_size=4)
    assert budget.state_dict() == {"generated": 900, "full_estimate": 1500, "planned": 160, "suffix": 150}


def test_adaptive_budget_overrun_has_a_floor():
    """Suffixes that all stopped at once (0 tokens for a planned 100) cannot make the allowance infinite."""
    budget = TokenBudget(0.5, generated=0, full_estimate=1000, planned=100, suffix=0)
    assert budget.overrun == pytest.approx(0.05)
    assert budget.allowance(step_full_estimate=1000, step_generated=0, group_size=2) == pytest.approx(1000 / 2 / 0.05)
