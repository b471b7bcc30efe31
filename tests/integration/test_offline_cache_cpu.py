"""data_prep/build_cache.py with vLLM's CPU build on the tiny model, and the file as the recipe's
``rpo.cache.init_path``: a warm-started run seeds nothing in its first step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from verl_ext.cache import ExperienceCache, tokenizer_fingerprint

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHED_PROMPTS = 8
RESPONSE = 32  # the cached answers must fit the recipe run's response budget (tests/integration/conftest.py)


@pytest.fixture(scope="module")
def offline_cache(tiny_assets, tmp_path_factory) -> Path:
    """The cache of the first CACHED_PROMPTS training prompts, built once by the CLI as a user runs it."""
    out = tmp_path_factory.mktemp("offline_cache") / "cache.parquet"
    command = [
        sys.executable, "data_prep/build_cache.py", "--model", str(tiny_assets.model_dir),
        "--data", str(tiny_assets.train_path), "--out", str(out), "--response-length", str(RESPONSE),
        "--max-samples", str(CACHED_PROMPTS), "--dtype", "float32", "--store-logprobs",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_cache_file_has_one_answer_per_prompt_for_the_tiny_tokenizer(tiny_assets, offline_cache):
    tokenizer = AutoTokenizer.from_pretrained(tiny_assets.model_dir)
    cache = ExperienceCache.load(offline_cache, expected_tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
                                 expected_key_mode="index")
    assert list(cache) == [f"tiny_arith:{i}" for i in range(CACHED_PROMPTS)]
    for _, entry in cache.items():
        assert 0 < len(entry.response_ids) <= RESPONSE
        assert entry.source == "offline" and entry.step == 0
        assert entry.finished == (int(entry.response_ids[-1]) == tokenizer.eos_token_id)
        assert entry.logprobs is not None and len(entry.logprobs) == len(entry.response_ids)
        assert (entry.logprobs <= 0).all()


def test_warm_start_skips_the_seed_pass(tiny_run, offline_cache, run_verl_job, tmp_path):
    result = run_verl_job(
        "recipe.rpo.main_rpo",
        tiny_run.args(tmp_path / "ckpt", f"rpo.cache.init_path={offline_cache}", "trainer.total_training_steps=1"),
    )
    assert result.returncode == 0, result.tail()
    assert f"rpo: warm start from {offline_cache} ({CACHED_PROMPTS} entries)" in result.output
    step = result.step(1)
    assert step["rpo/seed_count"] == 0
    assert step["rpo/cache_hit_rate"] == 1.0
    assert step["rpo/suffix_len_max"] <= tiny_run.suffix_budget
