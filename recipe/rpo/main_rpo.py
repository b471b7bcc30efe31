"""Entry point of the RPO recipe: ``python -m recipe.rpo.main_rpo [--config-name rpo_trainer] key=value ...``.

Same shape as verl's ``main_ppo`` and verl-recipe's ``main_dapo``: hydra composes the config, ``run_ppo`` starts Ray
and a TaskRunner actor, which builds datasets, workers and the :class:`RayRPOTrainer`, then calls ``fit``.
"""

from __future__ import annotations

import os
import socket
from pprint import pprint

import hydra
import ray
from omegaconf import OmegaConf, open_dict
from verl.experimental.reward_loop import migrate_legacy_reward_impl
from verl.trainer.main_ppo import run_ppo
from verl.trainer.main_ppo_v0 import BaseTaskRunner
from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler, need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.device import auto_set_device

from .rpo_ray_trainer import RayRPOTrainer


def attach_rpo_agent_loop(config) -> None:
    """Point verl's agent-loop workers at the YAML that registers ``rpo_agent`` (unless the user set a file)."""
    if not config.rpo.enable:
        return
    from verl_ext.rollout.agent_loop import agent_loop_config_path

    with open_dict(config):
        if not config.actor_rollout_ref.rollout.agent.agent_loop_config_path:
            config.actor_rollout_ref.rollout.agent.agent_loop_config_path = agent_loop_config_path()


def request_shared_prefix_engine(config) -> None:
    """With ``rpo.shared_prefix=true``, ask every process of the Ray job for the shared-prefix engine (the plugin
    leaves verl's engine alone otherwise, ``verl_ext/shared_prefix/verl_plugin.py``)."""
    if not config.rpo.get("shared_prefix", True):
        return
    from verl_ext.shared_prefix.install_check import request_engine

    request_engine(os.environ)
    with open_dict(config):
        runtime_env = config.ray_kwargs.ray_init.setdefault("runtime_env", {})
        request_engine(runtime_env.setdefault("env_vars", {}))


def check_platform(config) -> None:
    """verl picks its platform at import time, before hydra runs: a CPU config needs VERL_PLATFORM=cpu set."""
    from verl_ext.cpu import cpu_platform_selected

    if config.trainer.device == "cpu" and not cpu_platform_selected():
        raise SystemExit(
            "trainer.device=cpu needs the CPU backend: run with VERL_PLATFORM=cpu in the environment "
            "(see README.md, 'CPU backend')"
        )


class RPOTaskRunner(BaseTaskRunner):
    """verl's legacy TaskRunner with the RPO trainer and RPO's start-up data checks.

    ``trainer_cls`` is the trainer ``run`` builds; a subclass of the runner may point it at a subclass of
    :class:`RayRPOTrainer` (scripts/bench_rollout.py does, to alternate full-path and RPO steps)."""

    trainer_cls: type[RayRPOTrainer] = RayRPOTrainer

    def run(self, config) -> None:
        from verl.utils.config import omega_conf_to_dataclass
        from verl.utils.dataset.rl_dataset import collate_fn
        from verl.workers.config import HFModelConfig

        from verl_ext.training.data_checks import check_training_data

        print(f"RPOTaskRunner hostname: {socket.gethostname()}, PID: {os.getpid()}")
        pprint(OmegaConf.to_container(config, resolve=True))
        OmegaConf.resolve(config)

        actor_rollout_cls, ray_worker_group_cls = self.add_actor_rollout_worker(config)
        self.add_critic_worker(config)
        self.add_reward_model_resource_pool(config)
        self.add_teacher_model_resource_pool(config)
        self.add_ref_policy_worker(config, actor_rollout_cls)
        validate_config(
            config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
        )

        model_config: HFModelConfig = omega_conf_to_dataclass(config.actor_rollout_ref.model)
        tokenizer, processor = model_config.tokenizer, model_config.processor
        train_dataset = create_rl_dataset(
            config.data.train_files, config.data, tokenizer, processor, is_train=True,
            max_samples=config.data.get("train_max_samples", -1),
        )
        val_dataset = create_rl_dataset(
            config.data.val_files, config.data, tokenizer, processor, is_train=False,
            max_samples=config.data.get("val_max_samples", -1),
        )
        if config.rpo.enable:
            check_training_data(
                train_dataset, tokenizer, config.data, files=config.data.train_files, key_mode=config.rpo.cache.key
            )

        trainer = self.trainer_cls(
            config=config,
            tokenizer=tokenizer,
            processor=processor,
            role_worker_mapping=self.role_worker_mapping,
            resource_pool_manager=self.init_resource_pool_mgr(config),
            ray_worker_group_cls=ray_worker_group_cls,
            train_dataset=train_dataset,
            val_dataset=val_dataset,
            collate_fn=collate_fn,
            train_sampler=create_rl_sampler(config.data, train_dataset),
        )
        trainer.init_workers()
        trainer.fit()


def run_rpo(config, task_runner_cls: type[RPOTaskRunner] = RPOTaskRunner) -> None:
    """Everything ``main`` does once hydra has composed ``config``: checks, resolution, then verl's ``run_ppo``
    with ``task_runner_cls`` (a subclass of :class:`RPOTaskRunner`) as the TaskRunner actor."""
    check_platform(config)
    OmegaConf.resolve(config)  # ${oc.env:...} paths resolve here, where the launching shell's environment is
    auto_set_device(config)
    config = migrate_legacy_reward_impl(config)
    attach_rpo_agent_loop(config)
    request_shared_prefix_engine(config)
    run_ppo(config, task_runner_class=ray.remote(num_cpus=1)(task_runner_cls))


@hydra.main(config_path="config", config_name="rpo_trainer", version_base=None)
def main(config) -> None:
    run_rpo(config)


if __name__ == "__main__":
    main()
