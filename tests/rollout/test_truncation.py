"""Tests for verl_ext.rollout.truncation: the cut invariants, both modes' distributions, edge cases and config
errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from verl_ext.config import TruncationConfig, load_rpo_config
from verl_ext.rollout import truncation as tr
from verl_ext.rollout.truncation import (
    CUT_POLICIES,
    Cut,
    get_cut_policy,
    register_cut_policy,
    sample_cut,
    sample_cuts,
    tail_cut,
    uniform_cut,
)

CONFIGS = [TruncationConfig(mode=mode, max_new_tokens=k) for mode in ("tail", "uniform") for k in (1, 5, 300)] + [
    TruncationConfig(mode="uniform", max_new_tokens=4, min_prefix=3),
    TruncationConfig(mode="uniform", max_new_tokens=300, min_prefix=1000),
    TruncationConfig(mode="tail", max_new_tokens=5, slack=7),
    TruncationConfig(mode="uniform", max_new_tokens=5, slack=7),
]


def assert_invariants(cut: Cut, cached_len: int, budget: int) -> None:
    assert cut.prefix_len >= 0
    assert cut.prefix_len < max(min(cached_len, budget), 1)  # at least one token cut; the EOS never stays
    assert cut.max_new_tokens >= 1
    assert cut.prefix_len + cut.max_new_tokens <= budget


@pytest.mark.parametrize("cfg", CONFIGS, ids=repr)
def test_invariants_over_many_draws(cfg):
    lengths = [0, 1, 2, 3, 5, 17, 299, 300, 301, 1000, 4096, 9000]
    for budget, seed in itertools.product([1, 2, 8, 300, 301, 4096], range(25)):
        cuts = sample_cuts(lengths, budget, cfg, np.random.default_rng(seed))
        for cached_len, cut in zip(lengths, cuts, strict=True):
            assert_invariants(cut, cached_len, budget)


def test_cached_eos_never_stays_in_the_prefix():
    eos = 2
    answer = np.array([11, 12, 13, 14, eos], dtype=np.int32)
    for cfg, seed in itertools.product(CONFIGS, range(200)):
        cut = sample_cut(len(answer), 4096, cfg, np.random.default_rng(seed))
        assert eos not in answer[: cut.prefix_len]


def test_same_seed_same_cuts():
    lengths = np.arange(0, 2000, 7)
    for cfg in CONFIGS:
        first = sample_cuts(lengths, 1024, cfg, np.random.default_rng(123))
        assert first == sample_cuts(lengths, 1024, cfg, np.random.default_rng(123))
        assert first != sample_cuts(lengths, 1024, cfg, np.random.default_rng(124)) or cfg.max_new_tokens == 1


def test_single_cut_equals_the_batch_of_one():
    for cfg in CONFIGS:
        assert (
            sample_cut(500, 1024, cfg, np.random.default_rng(5))
            == sample_cuts([500], 1024, cfg, np.random.default_rng(5))[0]
        )


def test_tail_cuts_uniformly_and_regenerates_what_was_cut():
    cfg = TruncationConfig(mode="tail", max_new_tokens=10)
    cuts = sample_cuts(np.full(20_000, 1000), 4096, cfg, np.random.default_rng(0))
    cut_sizes = np.array([1000 - cut.prefix_len for cut in cuts])
    assert all(cut.max_new_tokens == 1000 - cut.prefix_len for cut in cuts)
    assert set(cut_sizes) == set(range(1, 11))
    counts = np.bincount(cut_sizes, minlength=11)[1:]
    assert np.all(np.abs(counts / len(cuts) - 0.1) < 0.01)


def test_slack_lets_a_tail_cut_answer_grow_past_its_cached_length():
    """The length ratchet: without slack a suffix has exactly the cut's budget, so prefix + suffix never exceeds the
    cached length; with slack it may, up to the response budget."""
    lengths = np.full(2000, 100)
    plain = sample_cuts(lengths, 4096, TruncationConfig(mode="tail", max_new_tokens=10), np.random.default_rng(0))
    grown = sample_cuts(
        lengths, 4096, TruncationConfig(mode="tail", max_new_tokens=10, slack=50), np.random.default_rng(0)
    )
    assert max(cut.prefix_len + cut.max_new_tokens for cut in plain) == 100
    assert [cut.prefix_len for cut in grown] == [cut.prefix_len for cut in plain]  # the same draws
    assert all(g.max_new_tokens == p.max_new_tokens + 50 for g, p in zip(grown, plain, strict=True))
    capped = sample_cuts(
        [100] * 50, 105, TruncationConfig(mode="tail", max_new_tokens=10, slack=50), np.random.default_rng(0)
    )
    assert all(cut.prefix_len + cut.max_new_tokens == 105 for cut in capped)


def test_tail_on_a_short_answer_regenerates_from_scratch_with_the_drawn_budget():
    cfg = TruncationConfig(mode="tail", max_new_tokens=300)
    cuts = sample_cuts(np.full(2000, 50), 4096, cfg, np.random.default_rng(1))
    fresh = [cut for cut in cuts if cut.prefix_len == 0]
    assert fresh and all(50 <= cut.max_new_tokens <= 300 for cut in fresh)  # the reference's answer[:-k], max_tokens=k
    assert all(cut.max_new_tokens == 50 - cut.prefix_len for cut in cuts if cut.prefix_len > 0)


def test_uniform_prefix_is_uniform_over_the_allowed_range():
    cfg = TruncationConfig(mode="uniform", max_new_tokens=50, min_prefix=2)
    cuts = sample_cuts(np.full(30_000, 12), 4096, cfg, np.random.default_rng(0))
    prefix_lens = np.array([cut.prefix_len for cut in cuts])
    assert set(prefix_lens) == set(range(2, 12))
    counts = np.bincount(prefix_lens, minlength=12)[2:]
    assert np.all(np.abs(counts / len(cuts) - 0.1) < 0.01)
    assert all(cut.max_new_tokens == 50 for cut in cuts)


def test_uniform_answer_shorter_than_min_prefix_keeps_all_but_one_token():
    cfg = TruncationConfig(mode="uniform", max_new_tokens=50, min_prefix=100)
    assert sample_cut(30, 4096, cfg, np.random.default_rng(0)) == Cut(prefix_len=29, max_new_tokens=50)


def test_suffix_budget_shrinks_near_the_response_budget():
    cfg = TruncationConfig(mode="uniform", max_new_tokens=300, min_prefix=1000)
    for seed in range(50):
        cut = sample_cut(1024, 1024, cfg, np.random.default_rng(seed))
        assert 1000 <= cut.prefix_len <= 1023 and cut.max_new_tokens == 1024 - cut.prefix_len


@pytest.mark.parametrize("cfg", CONFIGS, ids=repr)
def test_overlong_answer_is_clipped_to_the_response_budget(cfg):
    """An offline cache built with R=8192 used with R=1024: the prefix comes from the first R tokens."""
    for seed in range(100):
        cut = sample_cut(8192, 1024, cfg, np.random.default_rng(seed))
        assert_invariants(cut, 8192, 1024)
        assert cut.prefix_len <= 1023


def test_empty_answer():
    rng = np.random.default_rng(0)
    uniform = TruncationConfig(mode="uniform", max_new_tokens=300)
    assert sample_cut(0, 4096, uniform, rng) == Cut(prefix_len=0, max_new_tokens=300)
    assert sample_cut(0, 100, uniform, rng) == Cut(prefix_len=0, max_new_tokens=100)
    tail = sample_cuts([0] * 500, 4096, TruncationConfig(mode="tail", max_new_tokens=300), rng)
    assert all(cut.prefix_len == 0 and 1 <= cut.max_new_tokens <= 300 for cut in tail)


def test_empty_batch():
    assert sample_cuts([], 1024, TruncationConfig(), np.random.default_rng(0)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "head"}, "rpo.truncation.mode"),
        ({"max_new_tokens": 0}, "rpo.truncation.max_new_tokens"),
        ({"max_new_tokens": 3.5}, "rpo.truncation.max_new_tokens"),
        ({"max_new_tokens": True}, "rpo.truncation.max_new_tokens"),
        ({"mode": "uniform", "min_prefix": -1}, "rpo.truncation.min_prefix"),
        ({"mode": "tail", "min_prefix": 10}, "no effect in mode 'tail'"),
        ({"slack": -1}, "rpo.truncation.slack"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TruncationConfig(**kwargs)


@pytest.mark.parametrize(
    ("lengths", "budget", "message"),
    [
        ([10], 0, "response_budget"),
        ([-1], 10, ">= 0"),
        ([1.5], 10, "integers"),
        ([[1, 2]], 10, "1-D"),
    ],
)
def test_bad_inputs(lengths, budget, message):
    with pytest.raises(ValueError, match=message):
        sample_cuts(lengths, budget, TruncationConfig(), np.random.default_rng(0))


def test_cut_policies_registry_holds_tail_and_uniform_as_peers():
    assert {"tail", "uniform", "verified"} <= set(CUT_POLICIES)
    assert get_cut_policy("tail") is tail_cut and get_cut_policy("uniform") is uniform_cut
    with pytest.raises(ValueError,
                       match=r"rpo.truncation.mode must be one of \['adaptive', 'tail', 'uniform', 'verified'"):
        get_cut_policy("head")


@pytest.fixture
def half_cut_policy():
    """A user's policy, registered without touching the trainer: keep the first half, regenerate up to 3 tokens."""

    @register_cut_policy("test_half")
    def half(answers, cfg, rng):
        return answers.lengths // 2, np.full(answers.lengths.shape, 3)

    yield half
    CUT_POLICIES.pop("test_half")


def test_a_registered_cut_policy_runs_through_the_config_and_sample_cuts(half_cut_policy):
    cfg = load_rpo_config({"truncation": {"mode": "test_half", "slack": 1}}).truncation  # 10 tokens clip to R=9
    assert sample_cuts([10, 7, 0], 9, cfg, np.random.default_rng(0)) == [
        Cut(prefix_len=4, max_new_tokens=4),
        Cut(prefix_len=3, max_new_tokens=4),
        Cut(prefix_len=0, max_new_tokens=4),
    ]
    with pytest.raises(ValueError, match="already registered"):
        register_cut_policy("test_half")(lambda answers, cfg, rng: (answers.lengths, answers.lengths))


def test_a_cut_policy_that_keeps_the_whole_answer_is_refused():
    @register_cut_policy("test_keep_all")
    def keep_all(answers, cfg, rng):
        return answers.lengths, np.ones(answers.lengths.shape, dtype=np.int64)

    try:
        with pytest.raises(ValueError, match="cut policy 'test_keep_all' broke its contract"):
            sample_cuts([5], 100, TruncationConfig(mode="test_keep_all"), np.random.default_rng(0))
    finally:
        CUT_POLICIES.pop("test_keep_all")


def _verified(**kwargs) -> TruncationConfig:
    return TruncationConfig(mode="verified", max_new_tokens=kwargs.pop("max_new_tokens", 20), **kwargs)


def test_verified_with_infinite_lenience_cuts_exactly_where_tail_does():
    rng_lengths = np.random.default_rng(7)
    lengths = rng_lengths.integers(0, 400, 300)
    ratios = [rng_lengths.normal(-2.0, 3.0, n) for n in lengths]  # a policy far from the behaviour one
    tail = sample_cuts(lengths, 512, TruncationConfig(mode="tail", max_new_tokens=20), np.random.default_rng(3))
    verified = sample_cuts(lengths, 512, _verified(lenience=float("inf")), np.random.default_rng(3), ratios)
    assert [c.prefix_len for c in verified] == [c.prefix_len for c in tail]
    assert [c.accepted_len for c in verified] == [int(n) for n in lengths]


def test_verified_accepts_every_token_when_the_current_policy_is_the_behaviour_policy():
    lengths = np.array([50, 300, 1, 0])
    cuts = sample_cuts(lengths, 1024, _verified(lenience=1.0), np.random.default_rng(0), [np.zeros(n) for n in lengths])
    assert [c.accepted_len for c in cuts] == [50, 300, 1, 0]
    tail = sample_cuts(lengths, 1024, TruncationConfig(mode="tail", max_new_tokens=20), np.random.default_rng(0))
    assert [c.prefix_len for c in cuts] == [c.prefix_len for c in tail]
    # The suffix budget lets the answer be finished: verify_max_new_tokens, capped by R - prefix.
    assert [c.max_new_tokens for c in cuts] == [min(1024, 1024 - c.prefix_len) for c in cuts]


def test_verified_cuts_at_a_cached_token_the_current_policy_gives_near_zero_probability():
    ratios = np.zeros(200)
    ratios[37] = np.log(1e-12)  # p_current / p_behaviour ~ 1e-12 at token 37
    for seed in range(20):
        cut = sample_cuts(
            [200], 4096, _verified(max_new_tokens=5, verify_max_new_tokens=300), np.random.default_rng(seed), [ratios]
        )[0]
        assert cut == Cut(prefix_len=37, max_new_tokens=300, accepted_len=37)


def test_verified_acceptance_rate_follows_the_probability_ratio():
    """Each token is accepted with probability min(1, lenience * p_cur / p_beh): 1.5 * 0.4 = 0.6 here."""
    rng = np.random.default_rng(0)
    runs = [tr.accepted_length(np.full(1, np.log(0.4)), 1.5, rng.random(1)) for _ in range(20_000)]
    assert np.mean(runs) == pytest.approx(0.6, abs=0.01)


def test_verified_draws_are_seeded_and_resume_from_the_generator_state():
    lengths = [120, 80, 300]
    ratios = [np.random.default_rng(i).normal(-0.3, 0.5, n) for i, n in enumerate(lengths)]
    cfg = _verified()
    rng = np.random.default_rng(11)
    sample_cuts(lengths, 1024, cfg, rng, ratios)
    state = rng.bit_generator.state  # what the trainer checkpoints
    after = sample_cuts(lengths, 1024, cfg, rng, ratios)
    resumed = np.random.default_rng(0)
    resumed.bit_generator.state = state
    assert sample_cuts(lengths, 1024, cfg, resumed, ratios) == after
    assert sample_cuts(lengths, 1024, cfg, np.random.default_rng(11), ratios) != after


def test_verified_falls_back_to_the_tail_cut_for_an_answer_without_behaviour_logprobs():
    cuts = sample_cuts(
        [100, 100], 1024, _verified(lenience=1.0), np.random.default_rng(4), [None, np.full(100, np.log(1e-12))]
    )
    tail = sample_cuts([100, 100], 1024, TruncationConfig(mode="tail", max_new_tokens=20), np.random.default_rng(4))
    assert cuts[0] == tail[0] and cuts[0].accepted_len == -1
    assert cuts[1].prefix_len == 0 and cuts[1].accepted_len == 0


def test_verified_refuses_missing_or_short_log_ratios():
    with pytest.raises(ValueError, match="needs one log-ratio array"):
        sample_cuts([10], 100, _verified(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="3 log-ratios for an answer of 10 tokens"):
        sample_cuts([10], 100, _verified(), np.random.default_rng(0), [np.zeros(3)])


@pytest.mark.parametrize("bad", [{"lenience": 0.5}, {"lenience": True}, {"verify_max_new_tokens": 0}])
def test_verified_settings_are_checked(bad):
    with pytest.raises(ValueError, match="rpo.truncation"):
        _verified(**bad)
