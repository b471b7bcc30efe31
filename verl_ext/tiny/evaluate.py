"""Greedy accuracy of a model on an RL parquet (verl's RLHFDataset schema), scored with the project's reward.

This is the number RL starts from: a warmed-up model must solve some problems (otherwise every GRPO group has
zero reward variance and no gradient) but not all of them (otherwise there is nothing left to learn). Generation
uses vLLM's CPU build, the engine verl's rollout uses, with the prompts tokenised the way verl's RLHFDataset
tokenises them (the tokenizer's chat template with a generation prompt), and the response length capped like the
tiny RL config's ``data.max_response_length``. Scoring is ``verl_ext.rewards.compute_score``'s ``acc``, the
field verl's validation reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# GiB of KV cache vLLM's CPU backend reserves; the tiny models need a few MiB, and the machine is shared.
KV_CACHE_GIB = "1"
# recipe/rpo/config/rpo_cpu_tiny.yaml: data.max_response_length. The worked answers are at most ~75 tokens.
MAX_RESPONSE_TOKENS = 96


@dataclass(frozen=True)
class Scored:
    prompt: str
    response: str
    ground_truth: str
    correct: bool


def generate_and_score(
    model_dir: str | Path, parquet: str | Path, n: int | None = None, max_tokens: int = MAX_RESPONSE_TOKENS
) -> list[Scored]:
    """Greedy responses of ``model_dir`` to the first ``n`` prompts of ``parquet`` (all when None), each scored."""
    import pandas as pd

    from verl_ext.rewards import compute_score

    rows = pd.read_parquet(parquet)
    if n is not None:
        rows = rows.head(n)
    if rows.empty:
        raise ValueError(f"{parquet} has no prompts to evaluate")
    messages = [list(prompt) for prompt in rows["prompt"]]
    truths = [str(reward["ground_truth"]) for reward in rows["reward_model"]]
    responses = _greedy_responses(Path(model_dir), messages, max_tokens)
    return [
        Scored(
            prompt=conversation[-1]["content"],
            response=response,
            ground_truth=truth,
            correct=bool(compute_score(data_source="", solution_str=response, ground_truth=truth)["acc"]),
        )
        for conversation, response, truth in zip(messages, responses, truths, strict=True)
    ]


def accuracy(model_dir: str | Path, parquet: str | Path, n: int | None = None) -> float:
    """Share of the first ``n`` prompts of ``parquet`` (all when None) that ``model_dir`` answers correctly."""
    scored = generate_and_score(model_dir, parquet, n)
    return sum(item.correct for item in scored) / len(scored)


def _greedy_responses(model_dir: Path, messages: list[list[dict]], max_tokens: int) -> list[str]:
    """vLLM greedy decoding in this process. fp32 because the tiny models are trained and saved in fp32 and the
    CPU has no fast bf16; eager because CUDA graphs and compilation do not apply to the CPU build."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB)
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [
        {"prompt_token_ids": tokenizer.apply_chat_template(m, add_generation_prompt=True, return_dict=False)}
        for m in messages
    ]
    llm = LLM(model=str(model_dir), dtype="float32", enforce_eager=True, seed=0)
    outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens), use_tqdm=False)
    return [output.outputs[0].text for output in outputs]
