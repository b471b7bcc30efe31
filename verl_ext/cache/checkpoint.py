"""The experience cache and the truncation RNG inside verl's checkpoint folders.

Layout: ``{trainer.default_local_dir}/global_step_{N}/rpo_cache.parquet`` and ``rpo_state.json``, next to verl's
``actor/`` and ``data.pt``. The trainer writes them *before* verl writes ``latest_checkpointed_iteration.txt``, and
each file is written atomically, so a process killed at any moment leaves either the previous complete
checkpoint or the new complete one: whenever the tracker names step N, step N's cache is whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from verl_ext.cache.atomic import write_atomically
from verl_ext.cache.keys import KeyMode
from verl_ext.cache.store import ExperienceCache
from verl_ext.rollout.token_budget import TokenBudget

if TYPE_CHECKING:
    from verl_ext.rollout.partial import PartialRollout

CACHE_FILE = "rpo_cache.parquet"
STATE_FILE = "rpo_state.json"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


def save_rpo_state(step_dir: str | os.PathLike[str], cache: ExperienceCache, state: dict[str, Any]) -> None:
    """Write the cache and the small JSON state (:func:`rollout_state`) into one checkpoint folder."""
    folder = Path(step_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cache.save(folder / CACHE_FILE)
    write_atomically(folder / STATE_FILE, lambda handle: handle.write(json.dumps(state).encode()))


def rollout_state(partial_rollout: PartialRollout, global_step: int) -> dict[str, Any]:
    """What a checkpoint keeps of the partial rollout besides its cache: the truncation RNG and the token budget's
    counters (``verl_ext/rollout/token_budget.py``), when the run has one."""
    state: dict[str, Any] = {"rng": partial_rollout.rng.bit_generator.state, "global_step": global_step}
    if partial_rollout.token_budget is not None:
        state["token_budget"] = partial_rollout.token_budget.state_dict()
    return state


def restore_rollout_state(partial_rollout: PartialRollout, state: dict[str, Any], step_dir: str) -> None:
    """Put :func:`rollout_state`'s RNG and token budget back; a checkpoint saved without a budget (an older one, or
    a run that had none) leaves the configured budget starting from zero, with a warning."""
    if "rng" in state:
        partial_rollout.rng.bit_generator.state = state["rng"]
    budget = partial_rollout.token_budget
    if budget is None:
        return
    if "token_budget" not in state:
        print(f"rpo: WARNING {step_dir} saved no token budget; rpo.truncation.token_share counts from this step")
        return
    partial_rollout.token_budget = TokenBudget.from_state_dict(state["token_budget"], budget.share)


def load_rpo_state(
    step_dir: str | os.PathLike[str], *, tokenizer_fingerprint: str, key_mode: KeyMode
) -> Optional[tuple[ExperienceCache, dict[str, Any]]]:
    """The cache and state of a checkpoint folder, or None when the folder has no RPO files (a run saved without
    RPO). A cache file that exists but is corrupt, or was built with another tokenizer or key mode, raises
    CacheFileError naming the file."""
    folder = Path(step_dir)
    cache_path = folder / CACHE_FILE
    if not cache_path.exists():
        return None
    cache = ExperienceCache.load(
        cache_path, expected_tokenizer_fingerprint=tokenizer_fingerprint, expected_key_mode=key_mode
    )
    state_path = folder / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    return cache, state


def prune_rpo_files(root: str | os.PathLike[str], keep: Optional[int]) -> list[Path]:
    """Delete the RPO files of all but the newest ``keep`` checkpoint folders, as verl prunes ``actor/``.

    verl's ``max_actor_ckpt_to_keep`` only removes actor folders; without this the caches would pile up."""
    if keep is None or keep <= 0:
        return []
    root_path = Path(root)
    if not root_path.is_dir():
        return []
    steps = sorted(
        (int(m.group(1)), child) for child in root_path.iterdir() if (m := _STEP_DIR.match(child.name))
    )
    removed = []
    for _, folder in steps[:-keep]:
        for name in (CACHE_FILE, STATE_FILE):
            target = folder / name
            if target.exists():
                target.unlink()
                removed.append(target)
        if folder.is_dir() and not any(folder.iterdir()):
            shutil.rmtree(folder)
    return removed
