"""PartialRollout against a scripted stand-in for verl's AgentLoopManager that returns real DataProtos.

The stand-in answers each row the way the RPO agent loop does (response = prefix + suffix, log-probs = the cached
prefix log-probs or 0.0 stand-ins, then the engine's), so the glue's bookkeeping (which cached log-probs reach the
engine, which are real, what goes back into the cache) runs in milliseconds, without Ray or vLLM.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pytest
import torch

from verl import DataProto
from verl_ext.cache import CacheEntry, ExperienceCache
from verl_ext.rollout.agent_loop import MAX_NEW_TOKENS, OUT_GENERATED, OUT_PREFIX_LEN, PREFIX_IDS, PREFIX_LOGPROBS
from verl_ext.rollout.partial import MissingBehaviourLogprobs, PartialRollout, RolloutRows, rollout_dump_fields
from verl_ext.rpo_config import load_rpo_config

PROMPT_LEN, RESPONSE_LEN, GROUP, EOS = 4, 12, 2, 2
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


def rollout(cache_entries: dict[int, CacheEntry], *, require: bool = False,
            **rpo: Any) -> tuple[PartialRollout, ScriptedManager]:
    config = load_rpo_config({"truncation": {"max_new_tokens": 3}, "cache": {"store_logprobs": True}, **rpo})
    cache = ExperienceCache(key_mode="index", tokenizer_fingerprint="fp")
    cache.put_many([f"src:{i}" for i in cache_entries], list(cache_entries.values()))
    partial = PartialRollout(config, cache, response_length=RESPONSE_LEN, group_size=GROUP, num_workers=1,
                             eos_token_ids=[EOS], require_prefix_logprobs=require)
    return partial, ScriptedManager()


def step(partial: PartialRollout, manager: ScriptedManager, indices: list[int]) -> DataProto:
    """One generation + cache update, joined as RayRPOTrainer._generate_and_score joins them."""
    batch = prompt_batch(indices)
    output = partial.generate(manager, batch, batch, step=1, rows=RolloutRows())
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
