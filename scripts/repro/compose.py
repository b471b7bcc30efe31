#!/usr/bin/env python
"""Print the config ``python -m recipe.rpo.main_rpo <overrides>`` would run with, and nothing else: DRY_RUN=1.

    python scripts/repro/compose.py data.train_files=... actor_rollout_ref.model.path=... [more overrides]

hydra's own ``python -m recipe.rpo.main_rpo --cfg job --resolve <overrides>`` prints the same config, but only after
importing verl and its trainer (half a minute on a small machine). This composes the recipe's ``rpo_trainer.yaml``
with hydra's compose API instead, with the config search path pointed at verl's installed config directory *by
file*, located without importing verl (``rpo_trainer.yaml`` names it ``pkg://verl.trainer.config``, which would
import it). The config is resolved, as ``main_rpo`` resolves it before starting, so the YAML printed is what the run
gets. Nothing is read but config files: model and data paths need not exist.

The composed config is then checked against the world size it names (``verl_ext.training.topology``, the check the
trainer
runs at start-up): a configuration the trainer would stop on at its first step is reported on stderr and the dry
run exits with status 1.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from verl_ext.training.topology import TopologyError, check_topology  # noqa: E402  (no verl import; see the module)

RECIPE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "recipe" / "rpo" / "config"
CONFIG_NAME = "rpo_trainer"


def verl_config_dir() -> Path:
    """verl's ``verl/trainer/config`` directory, found from the package's location without executing verl."""
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("compose.py: verl is not installed in this Python environment (scripts/install.sh)")
    config_dir = Path(next(iter(spec.submodule_search_locations))) / "trainer" / "config"
    if not (config_dir / "ppo_trainer.yaml").is_file():
        raise SystemExit(f"compose.py: {config_dir} has no ppo_trainer.yaml; is verl 0.9.1 installed?")
    return config_dir


def compose_config(overrides: list[str]) -> DictConfig:
    """The recipe's config with ``overrides`` applied, resolved."""
    search_path = f"hydra.searchpath=[file://{verl_config_dir()}]"
    with initialize_config_dir(config_dir=str(RECIPE_CONFIG_DIR), version_base=None):
        config = compose(CONFIG_NAME, overrides=[search_path, *overrides])
    OmegaConf.resolve(config)
    return config


def main(overrides: list[str]) -> int:
    config = compose_config(overrides)
    sys.stdout.write(OmegaConf.to_yaml(config))
    try:
        for warning in check_topology(config, source="the composed configuration"):
            print(f"compose.py: topology: {warning}", file=sys.stderr)
    except TopologyError as error:
        print(f"compose.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
