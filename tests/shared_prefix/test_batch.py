"""``rpo.shared_prefix`` in the recipe: start-up refusals and the per-row columns the trainer adds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from verl import DataProto

from verl_ext.config import load_rpo_config
from verl_ext.shared_prefix.batch import (
    add_shared_prefix_columns,
    check_shared_prefix_supported,
    whole_group_packed_frac,
)
from verl_ext.shared_prefix.engine import GROUP_KEY, SHARED_LEN_KEY

RECIPE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "recipe" / "rpo" / "config"


@pytest.fixture(scope="module")
def cpu_config():
    with initialize_config_dir(config_dir=str(RECIPE_CONFIG_DIR), version_base=None):
        return compose("rpo_cpu_tiny")


@pytest.fixture(scope="module")
def gpu_config():
    with initialize_config_dir(config_dir=str(RECIPE_CONFIG_DIR), version_base=None):
        return compose("rpo_trainer")


def with_overrides(config, **dotted):
    copy = OmegaConf.create(OmegaConf.to_container(config))
    for key, value in dotted.items():
        OmegaConf.update(copy, key, value, force_add=True)
    return copy


def test_shared_prefix_is_on_by_default():
    assert load_rpo_config({}).shared_prefix is True


@pytest.mark.parametrize(("key", "value", "named"), [
    ("actor_rollout_ref.model.override_config.attn_implementation", "eager", "attn_implementation=eager"),
    ("actor_rollout_ref.model.use_fused_kernels", True, "use_fused_kernels"),
    ("actor_rollout_ref.actor.ulysses_sequence_parallel_size", 2, "actor.ulysses_sequence_parallel_size=2"),
    ("actor_rollout_ref.ref.ulysses_sequence_parallel_size", 2, "ref.ulysses_sequence_parallel_size=2"),
])
def test_shared_prefix_refuses_unsupported_settings_at_start_up_naming_the_option(cpu_config, key, value, named):
    check_shared_prefix_supported(cpu_config)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        check_shared_prefix_supported(with_overrides(cpu_config, **{key: value}))


def test_shared_prefix_serves_verls_flash_default_and_names_what_it_serves_otherwise(gpu_config):
    """verl's GPU default (flash_attention_2, no override) is served; another implementation is refused at start-up
    with the list, instead of failing in a worker."""
    check_shared_prefix_supported(gpu_config)
    attention = "actor_rollout_ref.model.override_config.attn_implementation"
    flex = with_overrides(gpu_config, **{attention: "flex_attention"})
    with pytest.raises(ValueError, match="supported: sdpa, flash_attention_2, rpo_varlen_reference"):
        check_shared_prefix_supported(flex)


def test_shared_prefix_columns_are_prompt_plus_cached_prefix_per_row_and_group_by_uid():
    # Two groups of 2; left-padded prompts of 3 and 2 tokens in width 4; cached prefixes of 5 and 0 tokens.
    attention = torch.tensor([[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0]])
    batch = DataProto.from_dict(
        tensors={"prompts": torch.zeros(4, 4, dtype=torch.long), "attention_mask": attention},
        non_tensors={"uid": np.array(["b", "b", "a", "a"], dtype=object), "rpo_prefix_len": np.array([5, 5, 0, 0])},
    )
    add_shared_prefix_columns(batch)
    assert batch.batch[SHARED_LEN_KEY].tolist() == [8, 8, 2, 2]
    groups = batch.batch[GROUP_KEY].tolist()
    assert groups[0] == groups[1] != groups[2] == groups[3]


def test_shared_prefix_full_path_rows_share_the_prompt_only():
    attention = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    batch = DataProto.from_dict(tensors={"prompts": torch.zeros(2, 2, dtype=torch.long), "attention_mask": attention},
                                non_tensors={"uid": np.array(["x", "x"], dtype=object)})
    add_shared_prefix_columns(batch)
    assert batch.batch[SHARED_LEN_KEY].tolist() == [2, 2]
    assert whole_group_packed_frac(batch) == pytest.approx((2 + 1 + 2) / 7)  # the prompt once, then each answer
    add_shared_prefix_columns(batch, whole_rows=True)
    assert whole_group_packed_frac(batch) == 1.0  # the columns decide: whole rows share nothing


def test_flash_fair_denominator_whole_row_groups_share_nothing():
    """``whole_rows``: each row its own group, its whole unpadded row the shared part (one causal call per row)."""
    attention = torch.tensor([[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]])
    batch = DataProto.from_dict(
        tensors={"prompts": torch.zeros(3, 4, dtype=torch.long), "attention_mask": attention},
        non_tensors={"uid": np.array(["b", "b", "a"], dtype=object), "rpo_prefix_len": np.array([1, 1, 0])},
    )
    add_shared_prefix_columns(batch, whole_rows=True)
    assert batch.batch[SHARED_LEN_KEY].tolist() == [5, 4, 4]
    assert batch.batch[GROUP_KEY].tolist() == [0, 1, 2]
