"""What the recipe's end-to-end tests share: one small RPO run on the tiny assets, varied by extra overrides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TinyRecipeRun:
    """``recipe.rpo.main_rpo`` on the random tiny model: ``prompts`` arithmetic prompts, one batch per step (so step 2
    revisits every prompt of step 1), G=``group``, short answers, no validation, 2 steps, no checkpoints."""

    assets: object
    prompts: int = 4
    group: int = 2
    response: int = 32
    suffix_budget: int = 8

    @property
    def keys(self) -> set[str]:
        """The cache keys of the run's prompts (``data.train_max_samples`` first rows, index keys)."""
        return {f"tiny_arith:{i}" for i in range(self.prompts)}

    def args(self, ckpt_dir: Path, *extra: str) -> list[str]:
        """The command-line arguments; ``extra`` overrides come last and win."""
        return [
            "--config-name", "rpo_cpu_tiny",
            f"data.train_files={self.assets.train_path}",
            f"data.val_files={self.assets.val_path}",
            f"actor_rollout_ref.model.path={self.assets.model_dir}",
            f"data.train_max_samples={self.prompts}",
            "data.shuffle=false",
            f"data.train_batch_size={self.prompts}",
            f"data.max_response_length={self.response}",
            f"actor_rollout_ref.rollout.n={self.group}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={self.prompts}",
            f"rpo.truncation.max_new_tokens={self.suffix_budget}",
            "trainer.val_before_train=false",
            "trainer.test_freq=-1",
            "trainer.total_training_steps=2",
            "trainer.save_freq=-1",
            "trainer.logger=[console,file]",
            f"trainer.default_local_dir={ckpt_dir}",
            *extra,
        ]


@pytest.fixture
def tiny_run(tiny_assets) -> TinyRecipeRun:
    return TinyRecipeRun(tiny_assets)
