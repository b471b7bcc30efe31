"""The experience cache's life cycle inside verl's checkpoints, as a mixin of :class:`RayRPOTrainer`.

The cache starts empty or from an offline file (``rpo.cache.init_path``), is saved with every verl checkpoint (before
verl writes its tracker, ``verl_ext/cache/checkpoint.py``) and restored with it. The cache of the checkpoint a run
resumes from is read in ``__init__``, so a corrupt or mismatched file stops the run before any worker starts.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

from verl_ext.cache.checkpoint import (
    load_rpo_state,
    prune_rpo_files,
    restore_rollout_state,
    rollout_state,
    save_rpo_state,
)
from verl_ext.cache.store import ExperienceCache, tokenizer_fingerprint


class CacheCheckpointMixin:
    """Needs ``config``, ``rpo``, ``tokenizer``, ``global_steps`` and ``partial_rollout`` (None: no cache) from
    the trainer, and verl's ``_save_checkpoint`` / ``_load_checkpoint`` after it in the method order."""

    def _initial_cache(self) -> ExperienceCache:
        fingerprint = tokenizer_fingerprint(self.tokenizer)
        init_path = self.rpo.cache.init_path
        if init_path:
            cache = ExperienceCache.load(
                init_path, expected_tokenizer_fingerprint=fingerprint, expected_key_mode=self.rpo.cache.key
            )
            print(f"rpo: warm start from {init_path} ({len(cache)} entries)")
            return cache
        return ExperienceCache(key_mode=self.rpo.cache.key, tokenizer_fingerprint=fingerprint)

    def _save_checkpoint(self) -> None:
        if self.partial_rollout is not None:
            step_dir = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
            save_rpo_state(step_dir, self.partial_rollout.cache, rollout_state(self.partial_rollout, self.global_steps))
        super()._save_checkpoint()
        if self.partial_rollout is not None:
            prune_rpo_files(self.config.trainer.default_local_dir, self.config.trainer.get("max_actor_ckpt_to_keep"))

    def _resume_step_dir(self) -> Optional[str]:
        """The checkpoint folder verl's ``_load_checkpoint`` will resume from (None: training from scratch)."""
        trainer = self.config.trainer
        if trainer.resume_mode == "disable":
            return None
        if trainer.resume_mode == "resume_path":
            return trainer.resume_from_path
        return find_latest_ckpt_path(os.path.abspath(trainer.default_local_dir))

    def _read_resume_state(self) -> Optional[tuple[str, Optional[tuple[ExperienceCache, dict]]]]:
        """The cache and RNG state of the checkpoint the run will resume from, read at start-up so that a corrupt or
        mismatched cache file stops the run before its workers start (``CacheFileError`` naming the file)."""
        step_dir = self._resume_step_dir() if self.partial_rollout is not None else None
        if step_dir is None:
            return None
        restored = load_rpo_state(step_dir, tokenizer_fingerprint=self.partial_rollout.cache.tokenizer_fingerprint,
                                  key_mode=self.rpo.cache.key)
        return step_dir, restored

    def _load_checkpoint(self) -> Any:
        result = super()._load_checkpoint()
        if self.partial_rollout is None or self.global_steps <= 0:
            return result
        step_dir = self._resume_step_dir()
        if self._resume_state is None or self._resume_state[0] != step_dir:
            self._resume_state = self._read_resume_state()
        restored = self._resume_state[1]
        if restored is None:
            print(f"rpo: WARNING no {step_dir}/rpo_cache.parquet; resuming with the current cache")
            return result
        cache, state = restored
        self.partial_rollout.cache = cache
        restore_rollout_state(self.partial_rollout, state, step_dir)
        print(f"rpo: restored {len(cache)} cache entries from {step_dir}")
        return result
