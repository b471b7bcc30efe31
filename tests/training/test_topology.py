"""The start-up topology check (``verl_ext.training.topology``): each rule on a small config, and the balancing it
dry-runs. The eight reproduction scripts are checked in ``tests/scripts/test_repro.py`` (``test_topology_*``). No
verl, no Ray."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from verl_ext.training.topology import RULES, WARNINGS, Topology, TopologyError, check_topology, topology_report


def config(**overrides):
    """A 2-rank CPU-test-shaped config: 4 prompts x G=2, one mini-batch, fixed micro-batches, shared prefix."""
    base = {
        "trainer": {"n_gpus_per_node": 2, "nnodes": 1, "balance_batch": True},
        "data": {"train_batch_size": 4, "max_prompt_length": 32, "max_response_length": 32},
        "actor_rollout_ref": {
            "actor": {"ppo_mini_batch_size": 4, "use_dynamic_bsz": False, "ppo_micro_batch_size_per_gpu": 4,
                      "ppo_max_token_len_per_gpu": 16384, "ulysses_sequence_parallel_size": 1,
                      "use_kl_loss": True, "use_prefix_grouper": False},
            "rollout": {"n": 2, "log_prob_use_dynamic_bsz": False, "log_prob_micro_batch_size_per_gpu": 4,
                        "log_prob_max_token_len_per_gpu": 16384, "tensor_model_parallel_size": 1,
                        "data_parallel_size": 1, "pipeline_model_parallel_size": 1, "agent": {"num_workers": 2}},
            "ref": {"log_prob_use_dynamic_bsz": False, "log_prob_micro_batch_size_per_gpu": 4,
                    "log_prob_max_token_len_per_gpu": 16384, "ulysses_sequence_parallel_size": 1},
        },
        "algorithm": {"filter_groups": {"enable": False}, "use_kl_in_reward": False},
        "rpo": {"enable": True, "shared_prefix": True, "truncation": {"max_new_tokens": 8}},
    }
    cfg = OmegaConf.create(base)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_the_cpu_test_shape_passes_every_rule():
    assert topology_report(config()) == ([], [])
    # Three groups on two ranks: verl's group balancing refuses it; the recipe's splits one group.
    three_groups = {"data.train_batch_size": 3, "actor_rollout_ref.actor.ppo_mini_batch_size": 3}
    assert topology_report(config(**three_groups))[0] == []


@pytest.mark.parametrize(("overrides", "message"), [
    ({"actor_rollout_ref.rollout.n": 3, "data.train_batch_size": 3, "actor_rollout_ref.actor.ppo_mini_batch_size": 3},
     "9 rows per step (data.train_batch_size=3 x actor_rollout_ref.rollout.n=3) do not split into equal chunks for "
     "the 2 data-parallel ranks"),
    ({"actor_rollout_ref.actor.ppo_mini_batch_size": 3},
     "data.train_batch_size=4 is not a multiple of actor_rollout_ref.actor.ppo_mini_batch_size=3"),
    ({"actor_rollout_ref.actor.ulysses_sequence_parallel_size": 3},
     "actor_rollout_ref.actor.ulysses_sequence_parallel_size=3 does not divide the 2 GPUs"),
    ({"actor_rollout_ref.rollout.tensor_model_parallel_size": 4},
     "a rollout replica of 4 GPUs"),
    ({"actor_rollout_ref.actor.use_dynamic_bsz": True, "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": 63},
     "the update pass: actor_rollout_ref.actor.ppo_max_token_len_per_gpu=63 cannot hold one row of "
     "data.max_prompt_length + data.max_response_length = 64 tokens"),
    ({"actor_rollout_ref.ref.log_prob_use_dynamic_bsz": True,
      "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": 10},
     "the ref pass: actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=10 cannot hold one row"),
    ({"rpo.shared_prefix": False, "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": 3},
     "the old_log_prob pass: 4 rows per rank do not split into micro-batches of "
     "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=3"),
    ({"rpo.enable": False, "actor_rollout_ref.rollout.agent.num_workers": 3},
     "4 prompts x rollout.n=2 rows per generation batch do not split over "
     "actor_rollout_ref.rollout.agent.num_workers=3 agent-loop workers"),
    ({"rpo.shared_prefix": False, "actor_rollout_ref.actor.use_prefix_grouper": True, "data.train_batch_size": 3,
      "actor_rollout_ref.actor.ppo_mini_batch_size": 3},
     "verl's group balancing (use_prefix_grouper) needs the 3 groups per step (data.train_batch_size) to be a "
     "multiple of the 2 data-parallel ranks"),
])
def test_each_rule_names_the_settings_it_refuses(overrides, message):
    with pytest.raises(TopologyError) as error:
        check_topology(config(**overrides), source="test.yaml")
    assert "test.yaml cannot run on its 2 GPUs" in str(error.value)
    assert message in str(error.value), str(error.value)


def test_megatron_ranks_are_the_world_over_model_parallelism():
    """4 prompts x G=3 = 12 rows: not a multiple of 8 FSDP ranks, a multiple of Megatron's 4 (TP 2 on 8 GPUs)."""
    fsdp = config(**{"trainer.n_gpus_per_node": 8, "actor_rollout_ref.rollout.n": 3})
    megatron = config(**{"trainer.n_gpus_per_node": 8, "actor_rollout_ref.rollout.n": 3,
                         "actor_rollout_ref.actor.strategy": "megatron", "actor_rollout_ref.ref.strategy": "megatron",
                         "actor_rollout_ref.actor.megatron.tensor_model_parallel_size": 2,
                         "actor_rollout_ref.ref.megatron.tensor_model_parallel_size": 2})
    dispatch = RULES["dispatch"]
    assert dispatch(Topology(fsdp)) and not dispatch(Topology(megatron))


def test_every_violation_is_reported_at_once():
    errors, _ = topology_report(config(**{"actor_rollout_ref.rollout.n": 3, "data.train_batch_size": 3,
                                          "actor_rollout_ref.actor.ppo_mini_batch_size": 3,
                                          "actor_rollout_ref.rollout.tensor_model_parallel_size": 4}))
    assert len(errors) >= 3


def test_shared_prefix_fixed_micro_batches_need_no_divisibility():
    """The recipe plans fixed micro-batches itself (whole groups, any count); verl's own chunking does not."""
    odd = {"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": 3}
    assert topology_report(config(**odd))[0] == []
    assert topology_report(config(**odd, **{"rpo.shared_prefix": False}))[0] != []


def test_the_reference_pass_is_checked_only_when_a_reference_runs():
    tiny_budget = {"actor_rollout_ref.ref.log_prob_use_dynamic_bsz": True,
                   "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": 10}
    assert topology_report(config(**tiny_budget, **{"actor_rollout_ref.actor.use_kl_loss": False}))[0] == []


def test_a_budget_below_one_packed_group_is_a_warning_not_an_error():
    dynamic = {"actor_rollout_ref.actor.use_dynamic_bsz": True, "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": 70}
    errors, warnings = topology_report(config(**dynamic))
    assert errors == [] and len(warnings) == 1
    assert "the update pass's token budget (70 per GPU) holds less than one packed group" in warnings[0]
    assert "(72 tokens)" in warnings[0]  # 32 + 32 + (G - 1) x 8


def test_rules_are_registered():
    assert {"world", "dispatch", "mini_batches", "micro_batches", "generation", "balancing"} <= set(RULES)
    assert "packed_group_fits" in WARNINGS
