"""The rpo: config block: defaults, validation of typos and values, and the fail-fast support checks."""

import pytest
from omegaconf import OmegaConf

from verl_ext.rpo_config import RPOConfig, check_supported


def test_defaults_and_nested_options():
    cfg = RPOConfig.from_mapping(
        {"cold_start": "full_group", "truncation": {"mode": "uniform", "max_new_tokens": 8},
         "cache": {"p_best": 0.25, "select_metric": "acc", "correct_only": True, "key": "content"}}
    )
    assert cfg.enable and not cfg.loss_on_prefix and cfg.cold_start == "full_group"
    assert cfg.truncation.mode == "uniform" and cfg.truncation.max_new_tokens == 8
    assert cfg.cache.key == "content" and cfg.cache.replacement.p_best == 0.25
    assert cfg.cache.replacement.metric == "acc" and cfg.cache.replacement.correct_only


@pytest.mark.parametrize(
    "block, message",
    [
        ({"enabel": True}, "enabel"),
        ({"cache": {"pbest": 0.5}}, "pbest"),
        ({"cold_start": "lazy"}, "cold_start"),
        ({"truncation": {"mode": "head"}}, "mode"),
    ],
)
def test_bad_options_name_the_problem(block, message):
    with pytest.raises((ValueError, TypeError), match=message):
        RPOConfig.from_mapping(block)


def trainer_config(**overrides):
    base = {
        "actor_rollout_ref": {"rollout": {"multi_turn": {"enable": False}}},
        "reward": {"reward_model": {"enable": False, "enable_resource_pool": False}},
        "algorithm": {"adv_estimator": "grpo"},
        "data": {"max_response_length": 64},
    }
    return OmegaConf.merge(base, overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"actor_rollout_ref": {"rollout": {"multi_turn": {"enable": True}}}}, "multi_turn"),
        ({"reward": {"reward_model": {"enable": True}}}, "colocated reward model"),
        ({"algorithm": {"adv_estimator": "remax"}}, "remax"),
        ({"data": {"max_response_length": 4}}, "max_new_tokens"),
    ],
)
def test_unsupported_setups_fail_fast(overrides, message):
    rpo = RPOConfig.from_mapping({"truncation": {"max_new_tokens": 8}})
    check_supported(trainer_config(), rpo)
    with pytest.raises(ValueError, match=message):
        check_supported(trainer_config(**overrides), rpo)
    check_supported(trainer_config(**overrides), RPOConfig.from_mapping({"enable": False}))
