"""RayRPOTrainer.fit end to end on CPU: verl's own workers, FSDP2 engine and vLLM rollout server (CPU build).

Each run trains a random tiny Qwen2 for 2 steps on 4 arithmetic prompts (batch 4, G=2), so step 2 revisits every
prompt of step 1: with RPO it is all cache hits and generates only suffixes.
"""

from __future__ import annotations

import json

import pytest

from verl_ext.cache import CacheFileError, ExperienceCache

pytestmark = pytest.mark.slow


# The paper's GRPO (and scripts/repro's): k3 KL to a frozen reference as a loss term, which brings in verl's
# forward-only reference model (an FSDP2 module with a CPU offload policy).
KL_LOSS = ("actor_rollout_ref.actor.use_kl_loss=true", "actor_rollout_ref.actor.kl_loss_coef=0.04",
           "actor_rollout_ref.actor.kl_loss_type=low_var_kl")


def test_rpo_grpo_generates_only_suffixes_and_masks_the_prefix(tiny_run, run_verl_job, tmp_path):
    rpo = run_verl_job("recipe.rpo.main_rpo", tiny_run.args(tmp_path / "rpo", "trainer.save_freq=2", *KL_LOSS))
    assert rpo.returncode == 0, rpo.tail()
    baseline = run_verl_job(
        "recipe.rpo.main_rpo",
        tiny_run.args(tmp_path / "base", "rpo.enable=false", "trainer.save_freq=-1"),
        metrics_name="baseline.jsonl",
    )
    assert baseline.returncode == 0, baseline.tail()

    step1, step2 = rpo.step(1), rpo.step(2)
    assert step1["rpo/seed_count"] == tiny_run.prompts and step1["rpo/cache_hit_rate"] == 0.0
    assert step2["rpo/seed_count"] == 0 and step2["rpo/cache_hit_rate"] == 1.0
    assert step2["rpo/suffix_len_max"] <= tiny_run.suffix_budget
    assert step2["rpo/generated_tokens"] < baseline.step(2)["rpo/generated_tokens"]
    for step in (step1, step2):
        # Suffix-only loss: no cached-prefix token is in the response_mask the actor update sees, and every
        # loss token is one the engine generated in the G-way pass.
        assert step["rpo/prefix_tokens_in_loss"] == 0
        assert step["rpo/loss_tokens"] == step["rpo/suffix_tokens"]
    assert step2["rpo/prefix_tokens"] > 0
    # The testbed's diagnostics: a random model answers wrong, so its cached answers are wrong and no group has signal
    # in accuracy (the shaped score still varies with length).
    assert step2["rpo/cached_acc_frac"] == 0.0 and 0 < step2["rpo/cached_len_mean"] <= tiny_run.response
    assert 0.0 <= step2["rpo/no_signal_group_frac"] <= 1.0
    assert 0.0 <= baseline.step(2)["rpo/no_signal_group_frac"] <= 1.0
    # The reward's timeout count reaches the dashboard (no tiny-model answer makes math-verify time out).
    assert step1["reward/verify_timeouts"] == 0 and step2["reward/verify_timeouts"] == 0
    # verl's own check that rollout and actor agree on the generated tokens' log-probs.
    # Both sides compute in fp32 (the CPU preset sets FSDP's mixed precision to fp32; bf16 autocast gave ~5e-4).
    assert step2["training/rollout_probs_diff_max"] < 1e-4
    # The reference model ran: step 1's update starts from the reference weights (KL 0), step 2's does not.
    assert step1["actor/kl_loss"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < step2["actor/kl_loss"] < 1.0

    cache = ExperienceCache.load(tmp_path / "rpo" / "global_step_2" / "rpo_cache.parquet")
    assert set(cache) == tiny_run.keys
    assert all(entry.step in (1, 2) and len(entry.response_ids) <= tiny_run.response for _, entry in cache.items())


def test_rpo_dapo_filters_groups_and_rollout_data_dir_shows_the_regenerated_part(tiny_run, run_verl_job, tmp_path):
    # A random model never answers correctly, so filter on the shaped score (length term varies) to exercise the
    # filter and the extra generation batches; the recipe's default metric is acc.
    dump_dir = tmp_path / "generations"
    result = run_verl_job(
        "recipe.rpo.main_rpo",
        tiny_run.args(
            tmp_path / "dapo",
            f"trainer.rollout_data_dir={dump_dir}",
            "algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=score",
            "algorithm.filter_groups.max_num_gen_batches=8", "actor_rollout_ref.actor.clip_ratio_high=0.28",
            "reward.reward_manager.name=dapo",
        ),
    )
    assert result.returncode == 0, result.tail()
    for n in (1, 2):
        step = result.step(n)
        assert step["train/num_gen_batches"] >= 1
        assert 0 < step["train/kept_group_frac"] <= 1
        assert step["rpo/prefix_tokens_in_loss"] == 0
    assert result.step(2)["rpo/cache_hit_rate"] == 1.0

    # verl's dump of the trained rows, read back: verl's fields, the reward's extras and RPO's per-row facts.
    # A step may draw several generation batches of the same 4 prompts, so step 1 may already hit entries it wrote.
    for n in (1, 2):
        rows = [json.loads(line) for line in (dump_dir / f"{n}.jsonl").read_text().splitlines()]
        assert len(rows) == tiny_run.prompts * tiny_run.group
        for row in rows:
            assert row["step"] == n and {"input", "output", "gts", "score", "acc", "verify_timeout"} <= set(row)
            assert row["rpo_cache_hit"] or n == 1
            assert 0 <= row["rpo_staleness"] <= n - 1
            assert row["rpo_prefix_len"] + row["rpo_generated_tokens"] <= tiny_run.response
            budget = tiny_run.suffix_budget if row["rpo_cache_hit"] else tiny_run.response
            assert row["rpo_generated_tokens"] <= budget
            assert isinstance(row["rpo_suffix"], str)


def test_kill_and_resume_restores_the_cache_and_the_step(tiny_run, run_verl_job, tmp_path):
    ckpt = tmp_path / "ckpt"
    tracker = ckpt / "latest_checkpointed_iteration.txt"
    args = tiny_run.args(ckpt, "trainer.save_freq=1", "trainer.total_training_steps=3")

    killed = run_verl_job(
        "recipe.rpo.main_rpo", args,
        kill_when=lambda: tracker.exists() and tracker.read_text().strip() == "2",
        metrics_name="killed.jsonl",
    )
    assert killed.returncode != 0, "the job finished before it could be killed"
    saved = ExperienceCache.load(ckpt / "global_step_2" / "rpo_cache.parquet")
    assert set(saved) == tiny_run.keys

    # rpo.cache.update=false on resume: the cache written at step 3 then equals the restored one exactly when the
    # restore was faithful (every prompt already has an entry, so nothing is seeded either).
    resumed = run_verl_job("recipe.rpo.main_rpo", [*args, "rpo.cache.update=false"], metrics_name="resumed.jsonl")
    assert resumed.returncode == 0, resumed.tail()
    assert "rpo: restored 4 cache entries" in resumed.output
    assert sorted({m["step"] for m in resumed.metrics}) == [3]
    assert resumed.step(3)["rpo/seed_count"] == 0
    assert ExperienceCache.load(ckpt / "global_step_3" / "rpo_cache.parquet") == saved

    cache_file = ckpt / "global_step_3" / "rpo_cache.parquet"
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    broken = run_verl_job(
        "recipe.rpo.main_rpo",
        [*args, "trainer.total_training_steps=4"],
        metrics_name="broken.jsonl",
    )
    assert broken.returncode != 0
    assert CacheFileError.__name__ in broken.output and str(cache_file) in broken.output


def test_rpo_verified_cut_checks_cached_answers_against_the_current_policy(tiny_run, run_verl_job, tmp_path):
    """Three steps with ``rpo.truncation.mode=verified``: step 1 seeds, steps 2 and 3 verify the seeds' and then the
    RPO answers' behaviour log-probs (prefix carried over + suffix) against the actor's. With lenience 1 a token
    survives with probability min(1, p_current / p_behaviour): high acceptance after one or two tiny updates is only
    possible if the cached log-probs are the real ones (0.0 stand-ins would reject at the first token). Measured:
    1.0 at step 2, 0.93-1.0 at step 3 (the sampled answers and the updates vary from run to run on CPU)."""
    result = run_verl_job("recipe.rpo.main_rpo", tiny_run.args(
        tmp_path / "verified", "rpo.truncation.mode=verified", "rpo.truncation.lenience=1.0",
        "rpo.truncation.verify_max_new_tokens=16", "rpo.cache.store_logprobs=true",
        "actor_rollout_ref.rollout.calculate_log_probs=true", "trainer.total_training_steps=3",
        "trainer.save_freq=3"))
    assert result.returncode == 0, result.tail()
    for n in (2, 3):
        step = result.step(n)
        assert step["rpo/cache_hit_rate"] == 1.0 and step["rpo/verify_fallbacks"] == 0
        assert step["rpo/verify_s"] > 0
        assert step["rpo/verify_accept_rate"] >= 0.8, step
        assert 0 < step["rpo/verify_accept_len_mean"] <= tiny_run.response
        # The suffix budget lets an answer cut by the check be finished (verify_max_new_tokens, capped by R).
        assert step["rpo/suffix_len_max"] <= 16
    cache = ExperienceCache.load(tmp_path / "verified" / "global_step_3" / "rpo_cache.parquet")
    for _, entry in cache.items():
        assert entry.logprobs is not None and len(entry.logprobs) == len(entry.response_ids)
        assert (entry.logprobs <= 0).all() and (entry.logprobs < -1e-3).any()
