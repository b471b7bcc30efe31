"""Regression guard: verl's reward-loop managers score the whole RPO answer (cached prefix + new suffix).

RPO returns ``response_ids = prefix + suffix`` with ``response_mask`` 0 on the prefix (suffix-only loss). verl 0.9.1's
``naive`` and ``dapo`` managers decode the response by its attention mask, so the reward sees the full answer.
A closed upstream PR (verl #6392) proposed decoding by ``response_mask`` instead; under RPO that would score only
the suffix, here a fragment without its ``\\boxed{`` opening, so a correct answer would silently score as wrong.
These tests build the managers the way verl's RewardLoopWorker does (``load_reward_manager`` with the tiny
tokenizer and RPO's ``compute_score``) and fail if either manager stops scoring the full answer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo.reward import load_reward_manager

from verl_ext.rewards import compute_score
from verl_ext.tiny.tokenizer import build_tokenizer

PROMPT = "<|im_start|>user\nAdd: 215+217<|im_end|>\n<|im_start|>assistant\n"
PREFIX = "<think>\n5+7+0=12 -> 2\n1+1+1=3 -> 32\n2+2+0=4 -> 432\n</think>\n<answer>\\boxed{"
SUFFIX = "432}</answer><|im_end|>"
GROUND_TRUTH = "432"
PROMPT_LENGTH = 32
RESPONSE_LENGTH = 96


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    out_dir = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(out_dir)
    return AutoTokenizer.from_pretrained(out_dir)


def reward_config(manager: str, overlong_buffer: int = 0):
    """The reward block as rpo_defaults.yaml sets it (custom reward function = verl_ext.rewards)."""
    return OmegaConf.create(
        {
            "reward": {
                "reward_manager": {"source": "register", "name": manager},
                "custom_reward_function": {"path": "pkg://verl_ext.rewards", "name": "compute_score"},
                "reward_kwargs": {
                    "overlong_buffer_cfg": {
                        "enable": overlong_buffer > 0,
                        "len": overlong_buffer,
                        "penalty_factor": 1.0,
                        "log": True,
                    },
                    "max_resp_len": RESPONSE_LENGTH,
                },
            }
        }
    )


def rpo_row(tokenizer) -> DataProto:
    """One generated row as verl's agent loop hands it to the reward worker: prompt left-padded, prefix + suffix
    right-padded, attention 1 on every real token, response_mask 0 on the prefix and 1 on the suffix."""
    pad = tokenizer.pad_token_id
    prompt = tokenizer.encode(PROMPT, add_special_tokens=False)
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    response = prefix + suffix
    assert len(prompt) <= PROMPT_LENGTH and len(response) <= RESPONSE_LENGTH
    prompt_pad, response_pad = PROMPT_LENGTH - len(prompt), RESPONSE_LENGTH - len(response)

    prompts = torch.tensor([[pad] * prompt_pad + prompt])
    responses = torch.tensor([response + [pad] * response_pad])
    attention_mask = torch.tensor([[0] * prompt_pad + [1] * (len(prompt) + len(response)) + [0] * response_pad])
    response_mask = torch.tensor([[0] * len(prefix) + [1] * len(suffix) + [0] * response_pad])
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": attention_mask,
            "response_mask": response_mask,
        },
        non_tensors={
            "data_source": np.array(["tiny_arith"], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": GROUND_TRUTH}], dtype=object),
            "extra_info": np.array([{"index": 0}], dtype=object),
        },
    )


def masked_text(tokenizer, row: DataProto) -> str:
    """What a manager decoding by response_mask (the #6392 proposal) would score."""
    ids = row.batch["responses"][0][row.batch["response_mask"][0].bool()]
    return tokenizer.decode(ids, skip_special_tokens=True)


def test_the_suffix_alone_is_not_a_correct_answer(tokenizer) -> None:
    """Premise of the guard: scoring only the masked tokens gives a different, wrong result for this row."""
    row = rpo_row(tokenizer)
    assert masked_text(tokenizer, row) == "432}</answer>"
    suffix_only = compute_score("tiny_arith", masked_text(tokenizer, row), GROUND_TRUTH)
    full = compute_score("tiny_arith", PREFIX + "432}</answer>", GROUND_TRUTH)
    assert suffix_only["acc"] is False and full["acc"] is True
    assert suffix_only["score"] < full["score"]


@pytest.mark.parametrize("manager", ["naive", "dapo"])
async def test_manager_scores_prefix_plus_suffix(tokenizer, manager: str) -> None:
    reward_manager = load_reward_manager(reward_config(manager), tokenizer)
    result = await reward_manager.run_single(rpo_row(tokenizer))

    expected = compute_score("tiny_arith", PREFIX + "432}</answer>", GROUND_TRUTH)
    assert result["reward_extra_info"]["acc"] is True
    assert result["reward_extra_info"]["pred"] == GROUND_TRUTH
    assert result["reward_score"] == pytest.approx(expected["score"])


async def test_dapo_overlong_penalty_counts_the_prefix(tokenizer) -> None:
    """DAPO's overlong penalty must measure the whole answer the policy is judged on, prefix included: with a
    buffer starting inside the prefix, a suffix-only length would fall before the buffer and go unpenalised."""
    row = rpo_row(tokenizer)
    length = int(row.batch["attention_mask"][0, PROMPT_LENGTH:].sum())
    suffix_len = int(row.batch["response_mask"].sum())
    buffer = RESPONSE_LENGTH - length + suffix_len + 1  # expected_len = max_resp_len - buffer < length - suffix_len
    reward_manager = load_reward_manager(reward_config("dapo", overlong_buffer=buffer), tokenizer)

    result = await reward_manager.run_single(row)

    penalty = -(length - (RESPONSE_LENGTH - buffer)) / buffer
    assert penalty < 0
    assert result["reward_extra_info"]["overlong_reward"] == pytest.approx(penalty)
    full = compute_score("tiny_arith", PREFIX + "432}</answer>", GROUND_TRUTH)
    assert result["reward_score"] == pytest.approx(full["score"] + penalty)
