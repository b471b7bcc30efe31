"""What the recipe's end-to-end tests share: one small RPO run on the tiny assets, varied by extra overrides."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TinyRecipeRun:
    """``recipe.rpo.main_rpo`` on the random tiny model: ``prompts`` arithmetic prompts, one batch per step (so step 2
    revisits every prompt of step 1), G=``group``, short answers, no validation, 2 steps, no checkpoints, on
    ``ranks`` data-parallel ranks (FSDP2 over gloo) and as many vLLM replicas."""

    assets: object
    prompts: int = 4
    group: int = 2
    response: int = 32
    """The response budget; the offline cache's answers are built to fit it."""
    suffix_budget: int = 8
    ranks: int = 1

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
            f"trainer.n_gpus_per_node={self.ranks}",
            *extra,
        ]


@pytest.fixture
def tiny_run(tiny_assets) -> TinyRecipeRun:
    return TinyRecipeRun(tiny_assets)


@pytest.fixture
def multi_rank_run(tiny_assets) -> TinyRecipeRun:
    """Two ranks and three prompt groups per step: not a multiple of the ranks, so one group is cut across them."""
    return TinyRecipeRun(tiny_assets, prompts=3, ranks=2)


@dataclass(frozen=True)
class OfflineCache:
    path: Path
    prompts: int
    """Entries: the first ``prompts`` training prompts, every prompt of a :class:`TinyRecipeRun`."""
    response: int
    """The response budget the answers were generated under (a :class:`TinyRecipeRun`'s)."""


@pytest.fixture(scope="session")
def offline_cache(tiny_assets, tmp_path_factory) -> OfflineCache:
    """The cache built once by ``data_prep/build_cache.py`` with vLLM's CPU build, as a user runs it (behaviour
    log-probs included)."""
    cache = OfflineCache(tmp_path_factory.mktemp("offline_cache") / "cache.parquet", 8, TinyRecipeRun.response)
    command = [
        sys.executable, "data_prep/build_cache.py", "--model", str(tiny_assets.model_dir),
        "--data", str(tiny_assets.train_path), "--out", str(cache.path), "--response-length", str(cache.response),
        "--max-samples", str(cache.prompts), "--dtype", "float32", "--store-logprobs",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return cache


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test of this folder starts verl's engine, Ray or vLLM: ``-m "not integration"`` leaves them out."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)
