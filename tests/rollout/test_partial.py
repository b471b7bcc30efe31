"""PartialRollout against a scripted stand-in for verl's AgentLoopManager that returns real DataProtos.

The stand-in answers each row the way the RPO agent loop does (response = prefix + suffix, log-probs = the cached
prefix log-probs or 0.0 stand-ins, then the engine's), so the glue's bookkeeping (which cached log-probs reach the
engine, which are real, what goes back into the cache) runs in milliseconds, without Ray or vLLM.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import numpy as np
import pytest
import torch
from verl import DataProto

from verl_ext.cache.checkpoint import load_rpo_state, restore_rollout_state, rollout_state, save_rpo_state
from verl_ext.cache.store import CacheEntry, ExperienceCache
from verl_ext.config import load_rpo_config
from verl_ext.rollout.agent_loop import MAX_NEW_TOKENS, OUT_GENERATED, OUT_PREFIX_LEN, PREFIX_IDS, PREFIX_LOGPROBS
from verl_ext.rollout.partial import (
    MissingBehaviourLogprobs,
    PartialRollout,
    RolloutRows,
    rollout_dump_fields,
    rollout_metrics,
)

PROMPT_LEN, RESPONSE_LEN, GROUP, EOS = 4, 64, 2, 2
SUFFIX_TOKEN, SUFFIX_LOGPROB = 7, -0.25


class ScriptedManager:
    """``generate_sequences`` as verl's manager returns it: prompts, responses, attention mask, rollout log-probs,
    reward scores and the agent loop's extra fields; each suffix is ``max_new_tokens`` copies of one token."""

    def __init__(self) -> None:
        self.requests: list[DataProto] = []

    def generate_sequences(self, batch: DataProto) -> DataProto:
        self.requests.append(batch)
        n = len(batch)
        responses = torch.zeros(n, RESPONSE_LEN, dtype=torch.long)
        logprobs = torch.zeros(n, RESPONSE_LEN)
        mask = torch.zeros(n, PROMPT_LEN + RESPONSE_LEN, dtype=torch.long)
        mask[:, :PROMPT_LEN] = 1
        prefix_lens, generated = [], []
        for row in range(n):
            prefix = [int(t) for t in batch.non_tensor_batch[PREFIX_IDS][row]]
            budget = int(batch.non_tensor_batch[MAX_NEW_TOKENS][row])
            cached = batch.non_tensor_batch.get(PREFIX_LOGPROBS, [None] * n)[row]
            prefix_logprobs = [0.0] * len(prefix) if cached is None else [float(x) for x in cached]
            ids = prefix + [SUFFIX_TOKEN] * budget
            responses[row, : len(ids)] = torch.tensor(ids)
            logprobs[row, : len(ids)] = torch.tensor(prefix_logprobs + [SUFFIX_LOGPROB] * budget)
            mask[row, PROMPT_LEN : PROMPT_LEN + len(ids)] = 1
            prefix_lens.append(len(prefix))
            generated.append(budget)
        scores = torch.zeros(n, RESPONSE_LEN)
        scores[:, 0] = torch.arange(n, dtype=torch.float32)
        return DataProto.from_dict(
            tensors={"prompts": torch.ones(n, PROMPT_LEN, dtype=torch.long), "responses": responses,
                     "attention_mask": mask, "rollout_log_probs": logprobs, "rm_scores": scores},
            non_tensors={OUT_PREFIX_LEN: np.array(prefix_lens), OUT_GENERATED: np.array(generated),
                         "acc": np.array([True] * n, dtype=object)},
        )


def objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def prompt_batch(indices: list[int]) -> DataProto:
    return DataProto.from_dict(
        tensors={"input_ids": torch.ones(len(indices), PROMPT_LEN, dtype=torch.long)},
        non_tensors={"data_source": objects(["src"] * len(indices)),
                     "extra_info": objects([{"index": i} for i in indices]),
                     "raw_prompt": objects([[{"role": "user", "content": str(i)}] for i in indices]),
                     "uid": objects([f"uid{i}" for i in indices])},
    )


def entry(ids: list[int], logprobs: Optional[list[float]]) -> CacheEntry:
    return CacheEntry(response_ids=np.array(ids, np.int32),
                      logprobs=None if logprobs is None else np.array(logprobs, np.float32),
                      score=0.0, acc=True, step=0, source="seed", finished=True)


def rollout(cache_entries: dict[int, CacheEntry], *, require: bool = False, current_logprobs: Any = None,
            **rpo: Any) -> tuple[PartialRollout, ScriptedManager]:
    rpo = {"truncation": {"max_new_tokens": 3}, **rpo}
    config = load_rpo_config({"cache": {"store_logprobs": True}, **rpo})
    cache = ExperienceCache(key_mode="index", tokenizer_fingerprint="fp")
    cache.put_many([f"src:{i}" for i in cache_entries], list(cache_entries.values()))
    partial = PartialRollout(config, cache, response_length=RESPONSE_LEN, group_size=GROUP, num_workers=1,
                             eos_token_ids=[EOS], require_prefix_logprobs=require, current_logprobs=current_logprobs)
    return partial, ScriptedManager()


def step(partial: PartialRollout, manager: ScriptedManager, indices: list[int],
         rows: Optional[RolloutRows] = None) -> DataProto:
    """One generation + cache update, joined as RayRPOTrainer._generate_and_score joins them."""
    batch = prompt_batch(indices)
    output = partial.generate(manager, batch, batch, step=1, rows=rows or RolloutRows())
    joined = batch.repeat(repeat_times=GROUP, interleave=True).union(output)
    partial.update_cache(joined, step=1)
    return joined


ANSWER = [5, 5, 5, 5, 5, 5, 5, EOS]
REAL = [-0.5 - 0.125 * i for i in range(len(ANSWER))]


def test_real_prefix_logprobs_reach_the_engine_and_carry_over_into_the_cache():
    partial, manager = rollout({0: entry(ANSWER, REAL)})
    step(partial, manager, [0])
    suffix_request = manager.requests[-1]
    prefix_len = len(suffix_request.non_tensor_batch[PREFIX_IDS][0])
    np.testing.assert_array_equal(suffix_request.non_tensor_batch[PREFIX_LOGPROBS][0], REAL[:prefix_len])
    stored = partial.cache.get("src:0")
    assert stored.step == 1 and stored.logprobs is not None
    np.testing.assert_allclose(stored.logprobs[:prefix_len], REAL[:prefix_len])
    np.testing.assert_allclose(stored.logprobs[prefix_len:], SUFFIX_LOGPROB)


def test_placeholder_prefix_logprobs_are_never_stored_as_real():
    """An entry without behaviour log-probs (an offline cache built without them): the engine sees 0.0 stand-ins,
    and the answer that replaces the entry keeps no log-probs rather than those zeros."""
    partial, manager = rollout({0: entry(ANSWER, None)})
    joined = step(partial, manager, [0])
    assert manager.requests[-1].non_tensor_batch[PREFIX_LOGPROBS][0] is None
    assert not joined.non_tensor_batch["rpo_prefix_logprobs_real"].any()
    stored = partial.cache.get("src:0")
    assert stored.step == 1 and stored.logprobs is None


def test_a_seeded_answer_keeps_its_real_logprobs():
    partial, manager = rollout({})
    step(partial, manager, [3])
    seed_request = manager.requests[0]
    assert len(seed_request.non_tensor_batch[PREFIX_IDS][0]) == 0
    assert partial.cache.get("src:3").logprobs is not None


def test_a_corrected_prefix_loss_refuses_an_entry_without_logprobs():
    partial, manager = rollout({0: entry(ANSWER, REAL), 1: entry(ANSWER, None)}, loss_on_prefix=True,
                               require=True)
    with pytest.raises(MissingBehaviourLogprobs, match=r"'src:1'.*--store-logprobs"):
        step(partial, manager, [0, 1])
    assert manager.requests == [], "nothing may be generated from a placeholder prefix"


class LetterTokenizer:
    """Decodes token id i as the letter chr(ord('a') + i), dropping EOS like skip_special_tokens."""

    def batch_decode(self, sequences, skip_special_tokens=True):
        return ["".join(chr(ord("a") + i) for i in ids if i != EOS) for ids in sequences]


def test_rollout_data_dir_fields_say_which_part_was_regenerated():
    partial, manager = rollout({0: entry(ANSWER, REAL)})
    joined = step(partial, manager, [0])
    fields = rollout_dump_fields(joined, LetterTokenizer())
    prefix_len = len(manager.requests[-1].non_tensor_batch[PREFIX_IDS][0])
    generated = int(manager.requests[-1].non_tensor_batch[MAX_NEW_TOKENS][0])
    assert fields["rpo_prefix_len"] == [prefix_len] * GROUP
    assert fields["rpo_suffix"] == [chr(ord("a") + SUFFIX_TOKEN) * generated] * GROUP
    assert fields["rpo_generated_tokens"] == [generated] * GROUP
    assert fields["rpo_cache_hit"] == [True] * GROUP and fields["rpo_staleness"] == [1] * GROUP


def test_rows_record_the_cached_answers_cut_this_step():
    """The diagnostics of the testbed: length and correctness of the cached answers a step was cut from."""
    wrong = CacheEntry(response_ids=np.array([5] * 5, np.int32), logprobs=None, score=0.0, acc=False, step=0,
                       source="seed", finished=False)
    partial, manager = rollout({0: entry(ANSWER, REAL), 1: wrong})
    rows = RolloutRows()
    batch = prompt_batch([0, 1, 2])
    partial.generate(manager, batch, batch, step=1, rows=rows)
    assert sorted(rows.cached_lens) == [5, len(ANSWER)] and sorted(rows.cached_correct) == [False, True]


class ScriptedPolicy:
    """The current policy's log-probs of cached answers: the behaviour ones, except one token made near-impossible."""

    def __init__(self, behaviour: list[float], unlikely_at: Optional[int] = None) -> None:
        self.behaviour, self.unlikely_at = behaviour, unlikely_at
        self.calls: list[tuple[list[str], list[list[int]]]] = []

    def __call__(self, gen_batch: DataProto, answers: list[np.ndarray]) -> list[np.ndarray]:
        self.calls.append(([m[0]["content"] for m in gen_batch.non_tensor_batch["raw_prompt"]],
                           [a.tolist() for a in answers]))
        current = np.array(self.behaviour, dtype=np.float64)
        if self.unlikely_at is not None:
            current[self.unlikely_at] = np.log(1e-12)
        return [current[: len(a)] for a in answers]


VERIFIED = {"truncation": {"mode": "verified", "max_new_tokens": 3, "verify_max_new_tokens": 9}}


def test_verified_rollout_cuts_at_the_token_the_current_policy_rejects_and_lets_the_suffix_finish():
    policy = ScriptedPolicy(REAL, unlikely_at=2)
    partial, manager = rollout({0: entry(ANSWER, REAL), 1: entry(ANSWER, None)}, current_logprobs=policy, **VERIFIED)
    rows = RolloutRows()
    step(partial, manager, [0, 1], rows)
    # One pass, one row per prompt, over the answers whose entry kept behaviour log-probs only.
    assert policy.calls == [(["0"], [ANSWER])]
    request = manager.requests[-1]
    prefixes = [len(p) for p in request.non_tensor_batch[PREFIX_IDS][::GROUP]]
    budgets = list(request.non_tensor_batch[MAX_NEW_TOKENS][::GROUP])
    assert prefixes[0] == 2 and budgets[0] == min(9, RESPONSE_LEN - 2)
    assert 5 <= prefixes[1] <= 7 and budgets[1] == len(ANSWER) - prefixes[1]  # the fallback: the tail cut
    assert rows.verify_accepted == [2] and rows.verify_lengths == [len(ANSWER)] and rows.verify_fallbacks == 1
    assert rows.verify_s >= 0.0


def test_verified_rollout_keeps_the_tail_cut_when_the_policy_has_not_moved():
    partial, manager = rollout({0: entry(ANSWER, REAL)}, current_logprobs=ScriptedPolicy(REAL), **VERIFIED)
    rows = RolloutRows()
    step(partial, manager, [0], rows)
    assert rows.verify_accepted == [len(ANSWER)]
    prefix = len(manager.requests[-1].non_tensor_batch[PREFIX_IDS][0])
    assert len(ANSWER) - 3 <= prefix <= len(ANSWER) - 1


def test_verified_mode_needs_the_current_policys_pass():
    with pytest.raises(ValueError, match="needs current_logprobs"):
        rollout({0: entry(ANSWER, REAL)}, **VERIFIED)


def test_verified_metrics_summarise_acceptance():
    from verl_ext.training.metrics import verify_metrics

    metrics = verify_metrics(accepted=[2, 8], lengths=[8, 8], fallbacks=1, seconds=0.5)
    assert metrics == {"rpo/verify_accept_len_mean": 5.0, "rpo/verify_accept_rate": 10 / 16, "rpo/verify_s": 0.5,
                       "rpo/verify_fallbacks": 1.0}
    assert verify_metrics(accepted=[], lengths=[], fallbacks=0, seconds=0.0)["rpo/verify_accept_rate"] == 0.0


def test_verified_answers_batch_is_laid_out_as_verl_holds_a_rollout():
    from verl_ext.rollout.verify import answers_batch

    batch = answers_batch([[1, 2, 3], [4]], [np.array([7, 8]), np.array([9, 9, 9])], pad_token_id=0, temperature=0.7)
    assert batch.batch["prompts"].tolist() == [[1, 2, 3], [0, 0, 4]]
    assert batch.batch["responses"].tolist() == [[7, 8, 0], [9, 9, 9]]
    assert batch.batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert batch.batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 4], [0, 0, 0, 1, 2, 3]]
    assert batch.batch["response_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch.meta_info["temperature"] == 0.7


def test_verified_current_logprobs_pass_sees_the_agent_loops_prompt_tokens_and_no_padded_micro_batch(tiny_assets):
    """The actor pass gets prompt rows tokenised as verl's agent loop tokenises them, padded only to the
    data-parallel size, with a micro-batch that divides the rows; each answer gets back its own log-probs."""
    from transformers import AutoTokenizer

    from verl_ext.rollout.verify import CurrentLogprobs

    tokenizer = AutoTokenizer.from_pretrained(tiny_assets.model_dir)
    seen: list[DataProto] = []

    def log_prob_pass(batch: DataProto) -> DataProto:
        seen.append(batch)
        fake = -torch.arange(batch.batch["responses"].numel(),
        dtype=torch.float32).reshape(batch.batch["responses"].shape)
        return DataProto.from_dict(tensors={"old_log_probs": fake})

    current = CurrentLogprobs(
        tokenizer,
        hf_model_type="qwen2",
        chat_template_kwargs={},
        temperature=0.7,
        log_prob_pass=log_prob_pass,
        world_size=lambda: 2,
        micro_batch_size=8,
    )
    gen_batch = prompt_batch([0, 1, 2])
    answers = [np.array([5, 6, 7]), np.array([8]), np.array([9, 9])]
    out = current(gen_batch, answers)
    batch = seen[0]
    assert len(batch) == 4 and batch.meta_info["micro_batch_size_per_gpu"] == 2  # 3 rows padded to 2 ranks x 2
    expected_prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "0"}], add_generation_prompt=True, tokenize=True
    )
    expected_prompt = list(expected_prompt["input_ids"] if hasattr(expected_prompt, "keys") else expected_prompt)
    prompt_row = batch.batch["prompts"][0]
    assert prompt_row[batch.batch["attention_mask"][0, : prompt_row.numel()].bool()].tolist() == expected_prompt
    assert batch.meta_info["temperature"] == 0.7
    assert [o.tolist() for o in out] == [[0.0, -1.0, -2.0], [-3.0], [-6.0, -7.0]]


def test_verified_current_logprobs_pass_takes_the_packed_path_with_each_row_its_own_group(tiny_assets):
    """With the shared-prefix passes on, each cached answer (and the padding copy) is its own group whose shared
    part is the whole row: one causal attention per row in the engine."""
    from transformers import AutoTokenizer

    from verl_ext.rollout.verify import CurrentLogprobs
    from verl_ext.shared_prefix.engine import GROUP_KEY, SHARED_LEN_KEY

    seen: list[DataProto] = []

    def log_prob_pass(batch: DataProto) -> DataProto:
        seen.append(batch)
        return DataProto.from_dict(tensors={"old_log_probs": torch.zeros(batch.batch["responses"].shape)})

    shared_prefix = {"on": False}
    current = CurrentLogprobs(AutoTokenizer.from_pretrained(tiny_assets.model_dir), hf_model_type="qwen2",
                              chat_template_kwargs={}, temperature=0.7, log_prob_pass=log_prob_pass,
                              world_size=lambda: 2, micro_batch_size=8, shared_prefix=lambda: shared_prefix["on"])
    answers = [np.array([5, 6, 7]), np.array([8]), np.array([9, 9])]
    current(prompt_batch([0, 1, 2]), answers)
    assert SHARED_LEN_KEY not in seen[0].batch.keys()
    shared_prefix["on"] = True
    current(prompt_batch([0, 1, 2]), answers)
    batch = seen[1]
    row_lengths = batch.batch["attention_mask"].sum(-1)
    assert torch.equal(batch.batch[SHARED_LEN_KEY], row_lengths)  # the whole row is the shared part
    assert batch.batch[GROUP_KEY].tolist() == [0, 1, 2, 0]  # 3 answers; the 4th row is the padding copy of row 0


# ---------------------------------------------------------------- adaptive depth and a cache that heals


WRONG_TOKEN = 9


class GradedManager(ScriptedManager):
    """The scripted manager, with each row's accuracy given by ``right(row)`` of the call (G rows per prompt); a
    wrong row's suffix is made of ``WRONG_TOKEN`` instead, so right and wrong answers differ in their tokens."""

    def __init__(self, right) -> None:
        super().__init__()
        self.right = right

    def generate_sequences(self, batch: DataProto) -> DataProto:
        output = super().generate_sequences(batch)
        right = [self.right(row) for row in range(len(batch))]
        responses = output.batch["responses"]
        for row, prefix_len in enumerate(output.non_tensor_batch[OUT_PREFIX_LEN]):
            if not right[row]:
                suffix = responses[row, int(prefix_len):]
                suffix[suffix == SUFFIX_TOKEN] = WRONG_TOKEN
        output.non_tensor_batch["acc"] = objects(right)
        return output


def scored_step(partial: PartialRollout, manager: ScriptedManager, indices: list[int], step_number: int,
                rows: RolloutRows) -> DataProto:
    batch = prompt_batch(indices)
    output = partial.generate(manager, batch, batch, step=step_number, rows=rows)
    joined = batch.repeat(repeat_times=GROUP, interleave=True).union(output)
    partial.update_cache(joined, step=step_number, rows=rows)
    return joined


LONG = [5] * 40 + [EOS]
ADAPTIVE = {"truncation": {"mode": "adaptive", "max_new_tokens": 3, "depth_init": 0.25}}


def test_adaptive_rollout_moves_each_prompts_depth_by_its_groups_outcome():
    right_answer = CacheEntry(response_ids=np.array(LONG, np.int32), logprobs=None, score=1.0, acc=True, step=0,
                              source="seed", finished=True)
    wrong_answer = CacheEntry(response_ids=np.array(LONG, np.int32), logprobs=None, score=0.0, acc=False, step=0,
                              source="seed", finished=True)
    partial, _ = rollout({0: right_answer, 1: wrong_answer, 2: right_answer}, **ADAPTIVE)
    # Prompt 0: both answers right; prompt 1: both wrong after a wrong cached answer; prompt 2: one of each.
    manager = GradedManager(lambda row: row in (0, 1, 4))
    rows = RolloutRows()
    scored_step(partial, manager, [0, 1, 2], 1, rows)
    depths = {i: partial.cache.get(f"src:{i}").cut_state.tolist() for i in range(3)}
    assert depths == {0: [0.5], 1: [0.5], 2: [0.25]}
    assert [partial.cache.get(f"src:{i}").last_right_frac for i in range(3)] == [1.0, 0.0, 0.5]
    assert all(partial.cache.get(f"src:{i}").reuses == 1 for i in range(3))
    # The cut regenerated about a quarter of each 41-token answer (within the jitter), and the suffix may finish it.
    assert all(0.25 / 2**0.5 <= frac <= 0.25 * 2**0.5 + 1 / 41 for frac in rows.cut_fracs) and len(rows.cut_fracs) == 3
    request = manager.requests[-1]
    for prefix, budget in zip(request.non_tensor_batch[PREFIX_IDS], request.non_tensor_batch[MAX_NEW_TOKENS],
                              strict=True):
        assert budget == len(LONG) - len(prefix) + 3
    metrics = rollout_metrics(rows, cache=partial.cache, response_budget=RESPONSE_LEN, group_size=GROUP,
                              verifying=False)
    assert metrics["rpo/mixed_group_frac"] == pytest.approx(1 / 3)
    assert metrics["rpo/cut_depth_mean"] == pytest.approx(np.mean(rows.cut_fracs))

    # All wrong after a right prefix: shallower. The next visit cuts from the stored depth.
    partial.cache.put("src:0", replace(partial.cache.get("src:0"), acc=True))
    scored_step(partial, GradedManager(lambda row: False), [0], 2, RolloutRows())
    assert partial.cache.get("src:0").cut_state.tolist() == [0.25]


def test_heal_refresh_replaces_the_answer_with_a_fresh_one_and_keeps_the_prompts_state():
    tired = CacheEntry(response_ids=np.array(LONG, np.int32), logprobs=None, score=0.0, acc=False, step=0,
                       source="rpo", finished=True, cut_state=np.array([0.5]), last_right_frac=0.0, reuses=3)
    partial, manager = rollout({0: tired, 1: entry(ANSWER, REAL)}, cache={"store_logprobs": True,
                                                                          "refresh_all_wrong": True}, **ADAPTIVE)
    rows = RolloutRows()
    scored_step(partial, manager, [0, 1], 1, rows)
    refresh, suffixes = manager.requests
    # One full answer for prompt 0 only (empty prefix, the whole response budget), then the G-way suffix pass.
    assert [m[0]["content"] for m in refresh.non_tensor_batch["raw_prompt"]] == ["0"]
    assert len(refresh.non_tensor_batch[PREFIX_IDS][0]) == 0
    assert refresh.non_tensor_batch[MAX_NEW_TOKENS][0] == RESPONSE_LEN
    assert rows.refresh_count == 1 and rows.seed_count == 0 and rows.seed_tokens == RESPONSE_LEN
    # The suffix pass cut the fresh answer (all SUFFIX_TOKEN), not the tired one.
    assert set(suffixes.non_tensor_batch[PREFIX_IDS][0].tolist()) <= {SUFFIX_TOKEN}
    # The prompt's state survived the refresh (then moved: the scripted groups are all right, so deeper).
    assert partial.cache.get("src:0").cut_state.tolist() == [1.0]


def test_heal_counterpart_is_kept_and_a_later_visit_cuts_from_it():
    partial, _ = rollout({0: entry(LONG, None)}, cache={"keep_counterpart": True, "counterpart_prob": 1.0},
                         **ADAPTIVE)
    scored_step(partial, GradedManager(lambda row: row == 0), [0], 1, RolloutRows())
    stored = partial.cache.get("src:0")
    assert stored.counterpart is not None and stored.acc != stored.counterpart.acc
    assert not np.array_equal(stored.response_ids, stored.counterpart.response_ids)
    manager, rows = ScriptedManager(), RolloutRows()
    scored_step(partial, manager, [0], 2, rows)
    prefix = manager.requests[-1].non_tensor_batch[PREFIX_IDS][0]
    np.testing.assert_array_equal(prefix, stored.counterpart.response_ids[: len(prefix)])
    assert rows.counterpart_cuts == 1


def test_adaptive_budget_and_rng_round_trip_through_a_checkpoint(tmp_path):
    """The token budget's counters, the truncation RNG and the per-prompt state saved with a checkpoint
    (verl_ext/cache/checkpoint.py) come back exactly; the restored run then draws the same cuts as the original."""
    config = {"truncation": {**ADAPTIVE["truncation"], "token_share": 0.5}}
    partial, manager = rollout({0: entry(LONG, None), 1: entry(LONG, None)}, **config)
    rows = RolloutRows()
    scored_step(partial, manager, [0, 1], 1, rows)
    budget = partial.token_budget
    suffix_tokens = int(rows.concat("suffix_lens").sum())
    assert budget.generated == suffix_tokens and budget.suffix == suffix_tokens
    assert budget.full_estimate == GROUP * 2 * len(LONG)
    assert 0 < budget.planned <= GROUP * 2 * len(LONG) * 0.5

    save_rpo_state(tmp_path, partial.cache, rollout_state(partial, 1))
    restored, _ = rollout({}, **config)
    cache, state = load_rpo_state(tmp_path, tokenizer_fingerprint="fp", key_mode="index")
    restored.cache = cache
    restore_rollout_state(restored, state, str(tmp_path))
    assert restored.cache == partial.cache and restored.cache.get("src:0").cut_state is not None
    assert restored.token_budget == partial.token_budget
    original_next, restored_next = ScriptedManager(), ScriptedManager()
    scored_step(partial, original_next, [0, 1], 2, RolloutRows())
    scored_step(restored, restored_next, [0, 1], 2, RolloutRows())
    for name in (PREFIX_IDS, MAX_NEW_TOKENS):
        assert [np.asarray(v).tolist() for v in original_next.requests[-1].non_tensor_batch[name]] == \
            [np.asarray(v).tolist() for v in restored_next.requests[-1].non_tensor_batch[name]]
    assert restored.cache == partial.cache and restored.token_budget == partial.token_budget


def test_adaptive_groups_are_scored_also_when_the_cache_is_kept_fixed():
    """rpo.cache.update=false keeps every entry and its state as it is, and the step still reports its mixed groups."""
    partial, _ = rollout({0: entry(LONG, None), 1: entry(LONG, None)}, cache={"update": False}, **ADAPTIVE)
    rows = RolloutRows()
    scored_step(partial, GradedManager(lambda row: row == 0), [0, 1], 1, rows)
    assert rows.group_right_fracs == [0.5, 0.0]
    assert partial.cache.get("src:0").cut_state is None and partial.cache.get("src:0").step == 0


def test_adaptive_cut_answer_without_accuracy_counts_as_right_by_its_score():
    """A reward without ``acc``: the cut answer's correctness, which moves the depth, is its score's sign."""
    scored = CacheEntry(response_ids=np.array(LONG, np.int32), logprobs=None, score=1.0, acc=None, step=0,
                        source="seed", finished=True)
    partial, manager = rollout({0: scored}, **ADAPTIVE)
    batch = prompt_batch([0])
    partial.generate(manager, batch, batch, step=1, rows=RolloutRows())
    assert batch.non_tensor_batch["rpo_cut_answer_right"].tolist() == [True]
