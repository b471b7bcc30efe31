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
PROMPTS = 4
GROUP = 2
RESPONSE = 32
SUFFIX_BUDGET = 8


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


def recipe_args(assets, ckpt_dir: Path, *extra: str) -> list[str]:
    return [
        "--config-name", "rpo_cpu_tiny",
        f"data.train_files={assets.train_path}",
        f"data.val_files={assets.val_path}",
        f"actor_rollout_ref.model.path={assets.model_dir}",
        f"data.train_max_samples={PROMPTS}",
        "data.shuffle=false",
        f"data.train_batch_size={PROMPTS}",
        f"data.max_response_length={RESPONSE}",
        f"actor_rollout_ref.rollout.n={GROUP}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={PROMPTS}",
        f"rpo.truncation.max_new_tokens={SUFFIX_BUDGET}",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.total_training_steps=1",
        "trainer.save_freq=-1",
        "trainer.logger=[console,file]",
        f"trainer.default_local_dir={ckpt_dir}",
        *extra,
    ]


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


def test_warm_start_skips_the_seed_pass(tiny_assets, offline_cache, run_verl_job, tmp_path):
    result = run_verl_job(
        "recipe.rpo.main_rpo",
        recipe_args(tiny_assets, tmp_path / "ckpt", f"rpo.cache.init_path={offline_cache}"),
    )
    assert result.returncode == 0, result.tail()
    assert f"rpo: warm start from {offline_cache} ({CACHED_PROMPTS} entries)" in result.output
    step = result.step(1)
    assert step["rpo/seed_count"] == 0
    assert step["rpo/cache_hit_rate"] == 1.0
    assert step["rpo/suffix_len_max"] <= SUFFIX_BUDGET
