"""The hydra preset verl_ext/cpu/config/ppo_trainer_cpu.yaml (verl's ppo_trainer + cpu_backend).

Each CPU setting in it answers one failure of verl's defaults on CPU (flash-attention, sleep mode, CUDA graphs, TP 2,
Ray without accelerator slots, dataloader workers). These tests compose the preset exactly as verl's entry point
would (hydra, verl's config on the search path) and check that every such setting survives the merge and that verl's
own config dataclasses accept the result.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.torch_dtypes import PrecisionType

import verl_ext.cpu.config

CONFIG_DIR = Path(verl_ext.cpu.config.__file__).parent
# What a user must set anyway (no model, batch sizes are run-specific); nothing CPU-related.
USER_OVERRIDES = ["actor_rollout_ref.model.path=/x", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2"]


@pytest.fixture(scope="module")
def cfg() -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="ppo_trainer_cpu", overrides=USER_OVERRIDES)


def test_rollout_settings(cfg: DictConfig) -> None:
    """vLLM on CPU: no sleep mode, no CUDA graphs, one rank per replica, memory as a fraction of RAM."""
    rollout = cfg.actor_rollout_ref.rollout
    assert rollout.name == "vllm"
    assert rollout.enforce_eager is True
    assert rollout.tensor_model_parallel_size == 1
    assert rollout.enable_sleep_mode is False
    assert rollout.free_cache_engine is False
    assert rollout.engine_kwargs.vllm.compilation_config.cudagraph_mode == "NONE"
    assert rollout.gpu_memory_utilization == pytest.approx(0.15)
    assert rollout.agent.num_workers == 1


def test_training_settings(cfg: DictConfig) -> None:
    """FSDP1 refuses CPU modules and flash-attention needs CUDA: the actor and ref use fsdp2 and sdpa."""
    aref = cfg.actor_rollout_ref
    assert aref.model.override_config.attn_implementation == "sdpa"
    assert aref.model.path == "/x"
    for role in (aref.actor, aref.ref):
        assert role.strategy == "fsdp2"
        assert role.fsdp_config.strategy == "fsdp2"
        assert role.fsdp_config.dtype == "float32"
        # What verl's FSDP engine actually computes in: mixed_precision.param_dtype (it ignores dtype).
        engine_config = omega_conf_to_dataclass(role.fsdp_config)
        assert PrecisionType.to_dtype(engine_config.mixed_precision["param_dtype"]) == torch.float32
    assert cfg.data.dataloader_num_workers == 0
    assert cfg.trainer.device == "cpu"
    assert cfg.trainer.use_v1 is False


def test_ray_settings(cfg: DictConfig) -> None:
    """Ray must see as many logical GPU slots as trainer.n_gpus_per_node, as an int, and every worker must get
    VERL_PLATFORM=cpu, since verl picks its platform at import, in each Ray process."""
    ray_init = cfg.ray_kwargs.ray_init
    assert isinstance(ray_init.num_gpus, int)
    assert ray_init.num_gpus == cfg.trainer.n_gpus_per_node
    assert ray_init.num_cpus >= 1
    assert ray_init.runtime_env.env_vars.VERL_PLATFORM == "cpu"


def test_num_gpus_follows_n_gpus_per_node() -> None:
    """The slot count is an interpolation, not a copy: a run with two trainer ranks must declare two slots."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="ppo_trainer_cpu", overrides=[*USER_OVERRIDES, "trainer.n_gpus_per_node=2"])
    assert cfg.ray_kwargs.ray_init.num_gpus == 2


def test_verl_config_dataclasses_accept_the_preset(cfg: DictConfig) -> None:
    """verl validates its config by building dataclasses from it; the preset must pass that validation."""
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.config import FSDPActorConfig, RolloutConfig

    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert isinstance(rollout, RolloutConfig)
    assert rollout.enable_sleep_mode is False
    assert rollout.enforce_eager is True
    assert rollout.tensor_model_parallel_size == 1

    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert isinstance(actor, FSDPActorConfig)
    assert actor.strategy == "fsdp2"
