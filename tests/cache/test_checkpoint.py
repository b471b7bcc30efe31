"""The cache and RNG state inside verl's checkpoint folders: round trip, missing files, corruption, pruning."""

import json

import numpy as np
import pytest

from verl_ext.cache.checkpoint import CACHE_FILE, STATE_FILE, load_rpo_state, prune_rpo_files, save_rpo_state
from verl_ext.cache.store import CacheEntry, CacheFileError, ExperienceCache


def make_cache() -> ExperienceCache:
    cache = ExperienceCache(key_mode="index", tokenizer_fingerprint="fp")
    cache.put("src:0", CacheEntry(np.array([5, 6, 7], np.int32), None, 1.0, True, 3, "rpo", True))
    return cache


def test_round_trip_with_rng_state(tmp_path):
    rng = np.random.default_rng(7)
    rng.random(5)
    save_rpo_state(tmp_path / "global_step_3", make_cache(), {"rng": rng.bit_generator.state})
    cache, state = load_rpo_state(tmp_path / "global_step_3", tokenizer_fingerprint="fp", key_mode="index")
    assert cache == make_cache()
    restored = np.random.default_rng()
    restored.bit_generator.state = state["rng"]
    assert restored.random() == rng.random()


def test_missing_cache_is_none_but_corrupt_or_foreign_cache_is_an_error(tmp_path):
    assert load_rpo_state(tmp_path, tokenizer_fingerprint="fp", key_mode="index") is None
    save_rpo_state(tmp_path, make_cache(), {})
    with pytest.raises(CacheFileError, match="fp"):
        load_rpo_state(tmp_path, tokenizer_fingerprint="other", key_mode="index")
    path = tmp_path / CACHE_FILE
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CacheFileError, match=str(path)):
        load_rpo_state(tmp_path, tokenizer_fingerprint="fp", key_mode="index")


def test_state_is_written_atomically(tmp_path):
    save_rpo_state(tmp_path, make_cache(), {"global_step": 4})
    assert json.loads((tmp_path / STATE_FILE).read_text()) == {"global_step": 4}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_prune_keeps_the_newest(tmp_path):
    for step in (1, 2, 10):
        save_rpo_state(tmp_path / f"global_step_{step}", make_cache(), {})
    (tmp_path / "global_step_2" / "actor").mkdir()
    removed = prune_rpo_files(tmp_path, keep=1)
    assert {p.parent.name for p in removed} == {"global_step_1", "global_step_2"}
    assert not (tmp_path / "global_step_1").exists()
    assert (tmp_path / "global_step_2" / "actor").exists() and not (tmp_path / "global_step_2" / CACHE_FILE).exists()
    assert (tmp_path / "global_step_10" / CACHE_FILE).exists()
    assert prune_rpo_files(tmp_path, keep=None) == []
