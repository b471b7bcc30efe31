"""RayRPOTrainer.fit against verl 0.9.1's RayPPOTrainer.fit: every option verl's loop reads is honoured or refused.

verl's ``fit`` source is read with ``ast``: every ``self.config.<path>`` it reads (through ``.get("key")`` and local
aliases too) must be listed in ``recipe/rpo/fit_options.py``; a verl upgrade that reads a new option fails here.
Honoured options must be read by the method the list names; refused settings must stop the trainer at start-up
with a message naming the option.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from recipe.rpo import fit_options
from recipe.rpo.fit_options import VERL_FIT_OPTIONS, StepProfileSchedule, check_fit_options, component_reward_metrics
from recipe.rpo.rpo_ray_trainer import RayRPOTrainer
from verl_ext.config import load_rpo_config

RECIPE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "recipe" / "rpo" / "config"
# Trainer attributes verl derives from the config and reads in fit, and the option each stands for.
DERIVED_FLAGS = {"use_rm": "reward.reward_model", "use_critic": None, "use_reference_policy": None}


def _chain(node: ast.AST, aliases: dict[str, list[str]]) -> list[str] | None:
    """``self.config.a.get("b").c`` -> ["config", "a", "b", "c"]; None for anything not rooted at self.config."""
    if isinstance(node, ast.Attribute):
        base = _chain(node.value, aliases)
        if base is None and isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr == "config":
            return ["config"]
        return None if base is None else [*base, node.attr]
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    is_get = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant))
    if is_get:
        base = _chain(node.func.value, aliases)
        return None if base is None else [*base, str(node.args[0].value)]
    return None


def config_reads(function) -> set[str]:
    """The dotted config paths ``function`` reads (the longest chain of each access)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    aliases: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            chain = _chain(node.value, aliases)
            if chain is not None:
                aliases[node.targets[0].id] = chain
    # A bare ``.get`` attribute is the callee of a read counted through its Call node.
    chains = {tuple(chain) for node in ast.walk(tree)
              if (chain := _chain(node, aliases)) and len(chain) > 1 and chain[-1] != "get"}
    longest = {chain for chain in chains
               if not any(other[: len(chain)] == chain and other != chain for other in chains)}
    return {".".join(chain[1:]) for chain in longest}


def covered(path: str) -> bool:
    return any(path == option or path.startswith(option + ".") for option in VERL_FIT_OPTIONS)


def test_verls_fit_reads_no_option_the_parity_list_leaves_out_unsupported_or_not():
    reads = config_reads(RayPPOTrainer.fit)
    assert {"trainer.rollout_data_dir", "trainer.esi_redundant_time", "global_profiler.steps"} <= reads, reads
    missing = sorted(path for path in reads if not covered(path))
    assert not missing, f"verl's fit reads options recipe/rpo/fit_options.py does not list: {missing}"


def test_verls_derived_flags_are_honoured_or_listed():
    source = inspect.getsource(RayPPOTrainer.fit)
    flags = {node.attr for node in ast.walk(ast.parse(textwrap.dedent(source)))
             if isinstance(node, ast.Attribute) and node.attr.startswith("use_")
             and isinstance(node.value, ast.Name) and node.value.id == "self"}
    assert flags <= set(DERIVED_FLAGS), f"new flags read by verl's fit: {flags - set(DERIVED_FLAGS)}"
    rpo_source = inspect.getsource(RayRPOTrainer)
    for flag in flags:
        assert DERIVED_FLAGS[flag] in VERL_FIT_OPTIONS if DERIVED_FLAGS[flag] else f"self.{flag}" in rpo_source


@pytest.mark.parametrize("option", sorted(o for o, spec in VERL_FIT_OPTIONS.items() if spec.honoured_in))
def test_honoured_options_are_read_where_the_list_says(option):
    spec = VERL_FIT_OPTIONS[option]
    where = getattr(RayRPOTrainer, spec.honoured_in, None) or getattr(fit_options, spec.honoured_in)
    evidence = spec.evidence or option.rsplit(".", 1)[-1]
    assert evidence in inspect.getsource(where), f"{option}: {spec.honoured_in} never reads {evidence!r}"


def test_every_option_is_honoured_or_refused():
    assert all(spec.honoured_in or spec.refuse for spec in VERL_FIT_OPTIONS.values())


@pytest.fixture(scope="module")
def recipe_config():
    with initialize_config_dir(config_dir=str(RECIPE_CONFIG_DIR), version_base=None):
        return compose("rpo_trainer")


def with_overrides(config, *dotted: str):
    copy = OmegaConf.create(OmegaConf.to_container(config))
    for item in dotted:
        key, value = item.split("=", 1)
        OmegaConf.update(copy, key, yaml_value(value), force_add=True)
    return copy


def yaml_value(text: str):
    return text == "true" if text in ("true", "false") else text


UNSUPPORTED = {
    "remax, rpo": (["algorithm.adv_estimator=remax"], True, "algorithm.adv_estimator=remax"),
    "remax, baseline": (["algorithm.adv_estimator=remax"], False, "algorithm.adv_estimator=remax"),
    "colocated reward model, rpo": (["reward.reward_model.enable=true"], True, "reward.reward_model.enable"),
    "colocated reward model, baseline": (["reward.reward_model.enable=true"], False, "reward.reward_model.enable"),
    "rollout skip, rpo": (["skip.rollout.enable=true"], True, "skip.rollout.enable"),
}


@pytest.mark.parametrize(("overrides", "rpo_on", "named"), UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_settings_are_refused_at_start_up_naming_the_option(recipe_config, overrides, rpo_on, named):
    rpo = load_rpo_config({"enable": rpo_on})
    check_fit_options(recipe_config, rpo)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        check_fit_options(with_overrides(recipe_config, *overrides), rpo)


def test_supported_neighbours_of_unsupported_settings_pass(recipe_config):
    check_fit_options(with_overrides(recipe_config, "skip.rollout.enable=true"), load_rpo_config({"enable": False}))
    check_fit_options(with_overrides(recipe_config, "reward.reward_model.enable=true",
                                     "reward.reward_model.enable_resource_pool=true"), load_rpo_config(None))
    check_fit_options(with_overrides(recipe_config, "algorithm.adv_estimator=gdpo"), load_rpo_config(None))


def verl_profile_calls(steps, continuous, first, last):
    """verl's fit's own bookkeeping (prev/curr/next flags), replayed: per step (start, stop, run_command)."""
    calls, prev = [], False
    curr = first in steps
    for step in range(first, last + 1):
        start = (not prev and curr) if continuous else curr
        nxt = step + 1 in steps
        is_last = step == last
        run_command = bool(curr and steps and (step == max(steps) or is_last))
        stop = (curr and not nxt) if continuous else curr
        calls.append((start, stop, run_command and stop))
        prev, curr = curr, nxt
    return calls


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("steps", [[], [2], [2, 3, 4], [1, 3, 4, 8], [5, 6]])
@pytest.mark.parametrize("first", [1, 4])
def test_profile_schedule_matches_verls_loop(steps, continuous, first):
    config = OmegaConf.create({"steps": steps or None, "profile_continuous_steps": continuous})
    schedule = StepProfileSchedule(config, first_step=first)
    ours = [(schedule.start(step), *schedule.stop(step, step == 6)) for step in range(first, 7)]
    assert ours == verl_profile_calls(steps, continuous, first, 6)


def test_component_reward_metrics_skip_absent_keys():
    metrics = component_reward_metrics({"acc": np.array([1.0, 0.0, 1.0, 1.0])}, ["acc", "format"], prefix="gdpo")
    assert metrics == {"gdpo/acc/mean": 0.75, "gdpo/acc/std": pytest.approx(0.4330127), "gdpo/acc/max": 1.0,
                       "gdpo/acc/min": 0.0}
