"""The rpo: config block: defaults, validation of typos and values, and the fail-fast support checks."""

from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from verl_ext.config import RPOConfig, check_supported, load_rpo_config

DEFAULTS_YAML = Path(__file__).resolve().parents[1] / "recipe" / "rpo" / "config" / "rpo_defaults.yaml"


def without_targets(node):
    """A config's values with verl's ``_target_`` markers dropped (the YAML names its classes, the defaults don't)."""
    if isinstance(node, dict):
        return {key: without_targets(value) for key, value in node.items() if key != "_target_"}
    return node


def test_the_yaml_repeats_the_dataclass_defaults_exactly():
    block = OmegaConf.load(DEFAULTS_YAML).rpo
    loaded = load_rpo_config(block)
    # Each _target_ names the class that reads that level.
    assert [type(loaded), type(loaded.truncation), type(loaded.cache)] == [
        get_class(block._target_), get_class(block.truncation._target_), get_class(block.cache._target_)]
    yaml_values = without_targets(OmegaConf.to_container(block))
    dataclass_values = without_targets(OmegaConf.to_container(OmegaConf.structured(RPOConfig)))
    assert yaml_values == dataclass_values


def test_defaults_and_nested_options():
    cfg = load_rpo_config(
        {"cold_start": "full_group", "truncation": {"mode": "uniform", "max_new_tokens": 8},
         "cache": {"p_best": 0.25, "select_metric": "acc", "correct_only": True, "key": "content"}}
    )
    assert cfg.enable and not cfg.loss_on_prefix and cfg.cold_start == "full_group"
    assert cfg.truncation.mode == "uniform" and cfg.truncation.max_new_tokens == 8
    assert cfg.cache.key == "content" and cfg.cache.p_best == 0.25
    assert cfg.cache.select_metric == "acc" and cfg.cache.correct_only


@pytest.mark.parametrize(
    "block, message",
    [
        ({"enabel": True}, "rpo.enabel"),
        ({"cache": {"pbest": 0.5}}, "rpo.cache.pbest"),
        ({"cache": {"p_best": 1.5}}, "rpo.cache.p_best"),
        ({"cache": {"key": "hash"}}, "rpo.cache.key"),
        ({"cache": {"select_metric": "reward"}}, "rpo.cache.select_metric"),
        ({"cold_start": "lazy"}, "rpo.cold_start"),
        ({"seed": "forty"}, "rpo.seed"),
        ({"truncation": {"mode": "head"}}, "rpo.truncation.mode"),
        ({"truncation": {"max_new_tokens": "many"}}, "rpo.truncation.max_new_tokens"),
    ],
)
def test_bad_options_name_the_real_key(block, message):
    """Every message names the key as a user writes it in the YAML or on the command line."""
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        load_rpo_config(block)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        load_rpo_config(OmegaConf.create({"rpo": block}).rpo)


def trainer_config(**overrides):
    base = {
        "actor_rollout_ref": {"rollout": {"multi_turn": {"enable": False}, "calculate_log_probs": True}},
        "reward": {"reward_model": {"enable": False, "enable_resource_pool": False}},
        "algorithm": {"adv_estimator": "grpo"},
        "data": {"max_response_length": 512},
    }
    return OmegaConf.merge(base, overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"actor_rollout_ref": {"rollout": {"multi_turn": {"enable": True}}}}, "multi_turn"),
        ({"algorithm": {"adv_estimator": "remax"}}, "remax"),
        ({"data": {"max_response_length": 4}}, "max_new_tokens"),
    ],
)
def test_unsupported_setups_fail_fast(overrides, message):
    rpo = load_rpo_config({"truncation": {"max_new_tokens": 8}})
    check_supported(trainer_config(), rpo)
    with pytest.raises(ValueError, match=message):
        check_supported(trainer_config(**overrides), rpo)
    check_supported(trainer_config(**overrides), load_rpo_config({"enable": False}))


CORRECTIONS = {
    "token IS weights": {"rollout_is": "token", "rollout_rs": None, "bypass_mode": False},
    "rejection": {"rollout_is": None, "rollout_rs": "seq_mean_k1", "bypass_mode": False},
    "bypass": {"rollout_is": None, "rollout_rs": None, "bypass_mode": True},
}


@pytest.mark.parametrize("correction", CORRECTIONS.values(), ids=CORRECTIONS.keys())
def test_prefix_in_a_corrected_loss_needs_real_behaviour_logprobs(correction):
    config = trainer_config(algorithm={"rollout_correction": correction})
    with pytest.raises(ValueError, match=r"rpo\.cache\.store_logprobs=true"):
        check_supported(config, load_rpo_config({"loss_on_prefix": True}))
    check_supported(config, load_rpo_config({"loss_on_prefix": True, "cache": {"store_logprobs": True}}))
    check_supported(config, load_rpo_config({"loss_on_prefix": False}))


def test_a_prefix_in_the_loss_without_correction_needs_no_logprobs():
    off = {"rollout_is": None, "rollout_rs": None, "bypass_mode": False}
    check_supported(trainer_config(algorithm={"rollout_correction": off}), load_rpo_config({"loss_on_prefix": True}))


def test_storing_logprobs_needs_the_engine_to_return_them():
    config = trainer_config(actor_rollout_ref={"rollout": {"calculate_log_probs": False}})
    with pytest.raises(ValueError, match=r"calculate_log_probs=true"):
        check_supported(config, load_rpo_config({"cache": {"store_logprobs": True}}))


def test_verified_cut_refuses_to_start_without_behaviour_logprobs_in_the_cache():
    verified = {"truncation": {"mode": "verified"}}
    with pytest.raises(ValueError, match=r"rpo\.truncation\.mode=verified .* rpo\.cache\.store_logprobs=true"):
        check_supported(trainer_config(), load_rpo_config(verified))
    config = trainer_config(actor_rollout_ref={"rollout": {"calculate_log_probs": True}})
    check_supported(config, load_rpo_config({**verified, "cache": {"store_logprobs": True}}))
