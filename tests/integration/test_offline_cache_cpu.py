"""data_prep/build_cache.py with vLLM's CPU build on the tiny model (the ``offline_cache`` fixture of
``tests/integration/conftest.py``). Its use as ``rpo.cache.init_path``, a warm start that seeds nothing, is checked
by ``test_rpo_trainer_cpu.py::test_multi_rank_dapo_*``."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from verl_ext.cache.store import ExperienceCache, tokenizer_fingerprint

pytestmark = pytest.mark.slow


def test_cache_file_has_one_answer_per_prompt_for_the_tiny_tokenizer(tiny_assets, offline_cache):
    tokenizer = AutoTokenizer.from_pretrained(tiny_assets.model_dir)
    cache = ExperienceCache.load(offline_cache.path, expected_tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
                                 expected_key_mode="index")
    assert list(cache) == [f"tiny_arith:{i}" for i in range(offline_cache.prompts)]
    for _, entry in cache.items():
        assert 0 < len(entry.response_ids) <= offline_cache.response
        assert entry.source == "offline" and entry.step == 0
        assert entry.finished == (int(entry.response_ids[-1]) == tokenizer.eos_token_id)
        assert entry.logprobs is not None and len(entry.logprobs) == len(entry.response_ids)
        assert (entry.logprobs <= 0).all()
