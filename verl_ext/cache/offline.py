"""Offline initialisation of the RPO experience cache: one answer per training prompt, sampled from the base model.

The paper fills the cache before training (vLLM, T=0.9, top_p=0.9, at most the response length, no correctness
filter), so the first RPO step already cuts cached answers instead of spending a full-length "seed" rollout on every
prompt. The file written here is what ``rpo.cache.init_path`` loads, so every field must mean exactly what the trainer
would have stored for a seed answer:

* **keys** come from :func:`verl_ext.cache.keys.prompt_key` on the same parquet columns the trainer reads, in the run's
  key mode, so each entry lands on its prompt;
* **prompt token ids** come from verl's own Continuous Token builder (``build_initial_tokens``), the one tokenisation
  path of verl's agent loops: the answer is conditioned on the very tokens the rollout engine will see before the
  cached prefix. Token ids, not text, go to vLLM, so no detokenise/retokenise drift enters either;
* **answers** are the engine's token ids (a final EOS included, as verl's rollout returns them), so ``finished``
  (ends with the tokenizer's EOS) and the cut arithmetic match online seeds;
* **scores** use :func:`verl_ext.rewards.compute_score` on the answer decoded with ``skip_special_tokens=True``,
  as verl's reward managers decode it;
* the **tokenizer fingerprint** is taken from verl's ``hf_tokenizer`` (the trainer's tokenizer object, pad-token
  correction included), so ``ExperienceCache.load`` accepts the file in the run and rejects it for another model.

Generation is a function argument (:data:`Generator`), so everything but the engine is testable without vLLM.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from verl_ext.cache.keys import KeyMode, check_dataset_keys, check_key_mode, prompt_key
from verl_ext.cache.store import CacheEntry, ExperienceCache, tokenizer_fingerprint
from verl_ext.rewards import compute_score

GROUND_TRUTH_FIELD = "reward_model.ground_truth"
CPU_KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
# verl's rollout default (rollout.logprobs_mode): log-probs after temperature/top-p, i.e. of the sampling policy.
LOGPROBS_MODE = "processed_logprobs"
# The authors' offline sampling (their cache initialisation script) and seed.
DEFAULT_TEMPERATURE = 0.9
DEFAULT_TOP_P = 0.9
DEFAULT_SEED = 42


class OfflineCacheError(ValueError):
    """The training data cannot be turned into a cache (a column or field is missing, a file is empty)."""


@dataclass(frozen=True)
class TrainingPrompt:
    """One row of the training set as the trainer keys and scores it."""

    key: str
    messages: list[dict[str, Any]]
    data_source: str
    ground_truth: str
    extra_info: dict[str, Any] | None


@dataclass(frozen=True)
class Generation:
    """One sampled answer: the engine's token ids and, when asked for, their log-probs."""

    token_ids: Sequence[int]
    logprobs: Sequence[float] | None = None


Generator = Callable[[list[list[int]]], list[Generation]]
"""Maps prompt token ids to one answer each, in order."""


@dataclass(frozen=True)
class SamplingSettings:
    """The authors' offline sampling: T=0.9, top_p=0.9, at most ``max_tokens`` (the run's response length)."""

    max_tokens: int
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    seed: int = DEFAULT_SEED
    store_logprobs: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens (the response length) must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class EngineSettings:
    """How vLLM is started; on a machine without CUDA (vLLM's CPU build) eager mode is forced."""

    dtype: str = "auto"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False
    trust_remote_code: bool = False
    cpu_kv_cache_gib: int = 4


def read_training_prompts(files: Sequence[str | os.PathLike[str]], key_mode: KeyMode, *,
                          prompt_column: str = "prompt", max_samples: int | None = None) -> list[TrainingPrompt]:
    """The distinct prompts of a verl RL training set (``data.train_files``, read in order as verl concatenates them).

    ``max_samples`` keeps the first N rows, like ``data.train_max_samples`` with ``data.shuffle=false``. In
    ``"content"`` key mode identical prompts share one key and get one entry (the first row's).

    Raises:
        FileNotFoundError: a file does not exist.
        OfflineCacheError: a column the trainer reads is missing, the set is empty, or a row has no ground truth.
        verl_ext.cache.keys.DatasetKeyError: rows without ``extra_info.index`` or with duplicated keys (``"index"``
        mode).
    """
    check_key_mode(key_mode)
    if not files:
        raise OfflineCacheError("no training file given")
    frames = [_read_frame(Path(file), key_mode, prompt_column) for file in files]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    source_name = ", ".join(str(file) for file in files)
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        frame = frame.head(max_samples)
    check_dataset_keys(frame, source_name, key_mode, prompt_column=prompt_column)

    prompts: dict[str, TrainingPrompt] = {}
    for row, (data_source, messages, reward_model, extra_info) in enumerate(
        zip(
            frame["data_source"],
            frame[prompt_column],
            frame["reward_model"],
            _column_or_none(frame, "extra_info"),
            strict=True,
        )
    ):
        key = prompt_key(data_source, extra_info, messages, key_mode)
        if key in prompts:
            continue
        prompts[key] = TrainingPrompt(
            key=key,
            messages=[dict(message) for message in messages],
            data_source=str(data_source),
            ground_truth=_ground_truth(reward_model, source_name, row),
            extra_info=None if extra_info is None else dict(extra_info),
        )
    return list(prompts.values())


def render_prompts(
    prompts: Sequence[TrainingPrompt],
    tokenizer: Any,
    hf_model_type: str | None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> list[list[int]]:
    """Prompt token ids exactly as verl's agent loop builds them (``ContinuousTokenBuilder.build_initial_tokens``:
    the chat template with the generation prompt, tokenised, for the builder of the model's family)."""
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    builder = create_continuous_token_builder(
        tokenizer, hf_model_type=hf_model_type, chat_template_kwargs=chat_template_kwargs or {}
    )
    return [list(builder.build_initial_tokens(prompt.messages)) for prompt in prompts]


def build_cache(
    prompts: Sequence[TrainingPrompt],
    prompt_ids: Sequence[Sequence[int]],
    generate: Generator,
    tokenizer: Any,
    *,
    key_mode: KeyMode,
    max_tokens: int,
) -> ExperienceCache:
    """Generate one answer per prompt, score it and return the cache (entries: source ``offline``, step 0).

    Raises:
        OfflineCacheError: the generator returned another number of answers, or an answer longer than
            ``max_tokens`` (an entry longer than the response length could not be cut into a valid prefix).
    """
    if len(prompt_ids) != len(prompts):
        raise ValueError(f"{len(prompt_ids)} rendered prompts for {len(prompts)} training prompts")
    generations = generate([list(ids) for ids in prompt_ids])
    if len(generations) != len(prompts):
        raise OfflineCacheError(f"the generator returned {len(generations)} answers for {len(prompts)} prompts")
    eos_ids = _eos_token_ids(tokenizer)
    cache = ExperienceCache(key_mode=key_mode, tokenizer_fingerprint=tokenizer_fingerprint(tokenizer))
    entries = []
    for prompt, generation in zip(prompts, generations, strict=True):
        ids = np.asarray(generation.token_ids, dtype=np.int64)
        if len(ids) > max_tokens:
            raise OfflineCacheError(
                f"the answer for {prompt.key} has {len(ids)} tokens, more than the response length {max_tokens}"
            )
        reward = compute_score(
            data_source=prompt.data_source,
            solution_str=tokenizer.decode(ids.tolist(), skip_special_tokens=True),
            ground_truth=prompt.ground_truth,
            extra_info=prompt.extra_info,
        )
        entries.append(
            CacheEntry(
                response_ids=ids,
                logprobs=None if generation.logprobs is None else np.asarray(generation.logprobs, dtype=np.float32),
                score=float(reward["score"]),
                acc=bool(reward["acc"]),
                step=0,
                source="offline",
                finished=bool(len(ids) > 0 and int(ids[-1]) in eos_ids),
            )
        )
    cache.put_many([prompt.key for prompt in prompts], entries)
    return cache


def vllm_generator(model: str, sampling: SamplingSettings, engine: EngineSettings) -> Generator:
    """A :data:`Generator` backed by one offline ``vllm.LLM`` in this process, started on first use.

    ``max_model_len`` is the longest prompt plus the response length, so the KV cache is not sized for the model's
    full context. On a machine without CUDA (vLLM's CPU build) ``VLLM_CPU_KVCACHE_SPACE`` gets a default and eager
    mode is forced: CUDA graphs and compilation do not apply there.
    """

    def generate(prompt_ids: list[list[int]]) -> list[Generation]:
        import torch

        on_cpu = not torch.cuda.is_available()
        if on_cpu:
            os.environ.setdefault(CPU_KV_CACHE_ENV, str(engine.cpu_kv_cache_gib))
        from vllm import LLM, SamplingParams

        llm = LLM(
            model=model,
            dtype=engine.dtype,
            tensor_parallel_size=engine.tensor_parallel_size,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            enforce_eager=engine.enforce_eager or on_cpu,
            trust_remote_code=engine.trust_remote_code,
            seed=sampling.seed,
            max_model_len=max(len(ids) for ids in prompt_ids) + sampling.max_tokens,
            logprobs_mode=LOGPROBS_MODE,
        )
        params = SamplingParams(
            n=1,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            logprobs=0 if sampling.store_logprobs else None,
        )
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params)
        return [_generation(output.outputs[0], sampling.store_logprobs) for output in outputs]

    return generate


def _generation(completion: Any, store_logprobs: bool) -> Generation:
    """vLLM's ``CompletionOutput`` -> :class:`Generation`; ``logprobs=0`` gives the sampled token's log-prob only."""
    token_ids = list(completion.token_ids)
    if not store_logprobs:
        return Generation(token_ids)
    return Generation(
        token_ids, [float(step[token].logprob) for token, step in zip(token_ids, completion.logprobs, strict=True)]
    )


def _read_frame(path: Path, key_mode: KeyMode, prompt_column: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"training file {path} does not exist (the recipe's data.train_files)")
    frame = pd.read_parquet(path)
    needed = ["data_source", prompt_column, "reward_model"] + (["extra_info"] if key_mode == "index" else [])
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise OfflineCacheError(
            f"{path}: column(s) {missing} missing; a verl RL parquet for the RPO cache needs "
            f"{needed} (found {list(frame.columns)})"
        )
    if frame.empty:
        raise OfflineCacheError(f"{path} has no rows")
    return frame


def _column_or_none(frame: pd.DataFrame, column: str) -> Sequence[Any]:
    return frame[column].tolist() if column in frame.columns else [None] * len(frame)


def _ground_truth(reward_model: Any, source_name: str, row: int) -> str:
    value = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise OfflineCacheError(
            f"{source_name}: row {row} has no {GROUND_TRUTH_FIELD} (reward_model="
            f"{reward_model!r}); the answers cannot be scored"
        )
    return str(value)


def _eos_token_ids(tokenizer: Any) -> frozenset[int]:
    """The trainer's notion of "finished": the answer ends with the tokenizer's EOS id(s)."""
    eos = tokenizer.eos_token_id
    return frozenset(int(token) for token in (eos if isinstance(eos, list) else [eos]) if token is not None)
