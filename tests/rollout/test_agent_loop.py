"""RPOAgentLoop.run against a scripted engine: what it asks the engine for, and the response it hands back to verl.

The loop is built exactly as verl's ``AgentLoopWorker._run_agent_loop`` builds it (hydra ``instantiate`` of the
``rpo_agent`` entry of ``agent_loops.yaml`` with the worker's keyword arguments), and its columns are read the way
the worker reads them out of a DataProto row, so a drift in either contract fails here in seconds rather than in a
Ray/vLLM run. The tokenizer is the tiny byte-level ChatML one; no model, Ray or vLLM is involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import hydra
import numpy as np
import pytest
from omegaconf import OmegaConf
from verl import DataProto
from verl.experimental.agent_loop.agent_loop import (
    AgentLoopOutput,
    AgentLoopWorker,
    DictConfigWrap,
    ToolListWrap,
)
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.workers.rollout.replica import TokenOutput

from verl_ext.rollout.agent_loop import (
    LOSS_ON_PREFIX,
    MAX_NEW_TOKENS,
    OUT_GENERATED,
    OUT_PREFIX_LEN,
    PREFIX_IDS,
    PREFIX_LOGPROBS,
    RPO_AGENT_NAME,
    RPOAgentLoop,
    agent_loop_config_path,
)
from verl_ext.tiny.tokenizer import build_tokenizer

PROMPT_LENGTH = 64
RESPONSE_LENGTH = 24
MESSAGES = [{"role": "user", "content": "Add: 23+19"}]
# What the engine "samples": distinct ids and log-probs, so every position of the output can be traced back.
ENGINE_TOKENS = list(range(100, 100 + RESPONSE_LENGTH))
ENGINE_LOGPROBS = [-0.01 * (i + 1) for i in range(RESPONSE_LENGTH)]
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}


@dataclass
class Call:
    prompt_ids: list[int]
    sampling_params: dict[str, Any]


class ScriptedEngine:
    """Stands in for verl's LLMServerClient: records each request and answers with a prefix of ENGINE_TOKENS.

    Like vLLM it stops at ``max_tokens`` (or earlier at ``stop_after``, an EOS stop) unless ``honour_max_tokens``
    is off, which plays an engine that overshoots its budget. A plain class, not a dataclass: hydra's
    ``instantiate`` would turn a dataclass argument into a DictConfig."""

    def __init__(
        self, *, stop_after: Optional[int] = None, with_logprobs: bool = True, honour_max_tokens: bool = True
    ) -> None:
        self.stop_after = stop_after
        self.with_logprobs = with_logprobs
        self.honour_max_tokens = honour_max_tokens
        self.calls: list[Call] = []

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> TokenOutput:
        self.calls.append(Call(list(prompt_ids), dict(sampling_params)))
        n = len(ENGINE_TOKENS)
        if self.honour_max_tokens:
            n = min(n, sampling_params["max_tokens"])
        if self.stop_after is not None:
            n = min(n, self.stop_after)
        return TokenOutput(
            token_ids=ENGINE_TOKENS[:n], log_probs=ENGINE_LOGPROBS[:n] if self.with_logprobs else None
        )


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    out_dir = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(out_dir)
    return AutoTokenizer.from_pretrained(out_dir)


@pytest.fixture(scope="module")
def prompt_ids(tokenizer) -> list[int]:
    """The chat-templated prompt, computed independently of the agent loop."""
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert 0 < len(ids) <= PROMPT_LENGTH
    return list(ids)


@pytest.fixture(scope="module")
def prefix(tokenizer) -> list[int]:
    """A cached answer cut mid-reasoning (13 tokens of the tiny task's answer format), leaving room for 11."""
    ids = tokenizer.encode("<think>\n3+9+0=12 ->", add_special_tokens=False)
    assert len(ids) == 13
    return ids


def verl_config():
    return OmegaConf.create(
        {
            "actor_rollout_ref": {"rollout": {"prompt_length": PROMPT_LENGTH, "response_length": RESPONSE_LENGTH}},
            "data": {"apply_chat_template_kwargs": {}},
        }
    )


def build_loop(engine: ScriptedEngine, tokenizer) -> RPOAgentLoop:
    """As AgentLoopWorker does: the registry entry from agent_loops.yaml, instantiated with the worker's kwargs.

    Must run inside the event loop that will await ``run`` (AgentLoopBase captures the running loop)."""
    entries = {entry.name: entry for entry in OmegaConf.load(agent_loop_config_path())}
    config = verl_config()
    loop = hydra.utils.instantiate(
        config=entries[RPO_AGENT_NAME],
        trainer_config=DictConfigWrap(config=config),
        server_manager=engine,
        tokenizer=tokenizer,
        processor=None,
        hf_model_type="qwen2",
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        tools=ToolListWrap([]),
    )
    assert isinstance(loop, RPOAgentLoop)
    return loop


def _objects(values: Sequence[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def row_kwargs(**columns: Any) -> dict[str, Any]:
    """One row's kwargs as AgentLoopWorker.generate_sequences passes them: a DataProto's non-tensor columns,
    built like PartialRollout's (object array of int32 prefixes, int64 budgets, bool flags), indexed at row 0."""
    non_tensors: dict[str, np.ndarray] = {
        "raw_prompt": _objects([MESSAGES]),
        "data_source": _objects(["tiny_arith"]),
        "agent_name": _objects([RPO_AGENT_NAME]),
    }
    if PREFIX_IDS in columns:
        non_tensors[PREFIX_IDS] = _objects([np.asarray(columns[PREFIX_IDS], dtype=np.int32)])
    if MAX_NEW_TOKENS in columns:
        non_tensors[MAX_NEW_TOKENS] = np.asarray([columns[MAX_NEW_TOKENS]], dtype=np.int64)
    if LOSS_ON_PREFIX in columns:
        non_tensors[LOSS_ON_PREFIX] = np.asarray([columns[LOSS_ON_PREFIX]], dtype=bool)
    if PREFIX_LOGPROBS in columns:
        logprobs = columns[PREFIX_LOGPROBS]
        non_tensors[PREFIX_LOGPROBS] = _objects([None if logprobs is None else np.asarray(logprobs, np.float32)])
    batch = DataProto.from_dict(non_tensors=non_tensors)
    kwargs = {key: value[0] for key, value in batch.non_tensor_batch.items()}
    del kwargs["agent_name"]  # consumed by AgentLoopWorker._run_agent_loop, not passed to run
    return kwargs


async def run_rpo(engine: ScriptedEngine, tokenizer, **columns: Any) -> AgentLoopOutput:
    return await build_loop(engine, tokenizer).run(dict(SAMPLING), **row_kwargs(**columns))


@pytest.mark.parametrize(
    ("requested", "expected_budget"),
    [(4, 4), (11, 11), (12, 11), (RESPONSE_LENGTH, 11)],
    ids=["request-binds", "request-fills-R", "R-binds", "request-R"],
)
async def test_engine_continues_prompt_plus_prefix_within_the_budget(
    tokenizer, prompt_ids, prefix, requested, expected_budget
):
    """The engine must see the cached prefix as context and may only fill what is left of R after it
    (13-token prefix, R = 24: 11 tokens of room)."""
    engine = ScriptedEngine()
    out = await run_rpo(engine, tokenizer, **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: requested})

    assert len(engine.calls) == 1
    call = engine.calls[0]
    assert call.prompt_ids == prompt_ids + prefix
    assert call.sampling_params == {**SAMPLING, "max_tokens": expected_budget}
    assert out.prompt_ids == prompt_ids
    assert out.response_ids == prefix + ENGINE_TOKENS[:expected_budget]
    assert len(out.response_ids) <= RESPONSE_LENGTH


@pytest.mark.parametrize(
    ("loss_on_prefix", "prefix_mask"),
    [(None, 0), (False, 0), (True, 1)],
    ids=["column-absent", "false", "true"],
)
async def test_response_mask_covers_the_prefix_only_with_loss_on_prefix(
    tokenizer, prefix, loss_on_prefix, prefix_mask
):
    """Suffix-only loss by default: the policy is trained only on tokens it sampled in this rollout."""
    columns = {PREFIX_IDS: prefix, MAX_NEW_TOKENS: 4}
    if loss_on_prefix is not None:
        columns[LOSS_ON_PREFIX] = loss_on_prefix
    out = await run_rpo(ScriptedEngine(), tokenizer, **columns)
    assert out.response_mask == [prefix_mask] * len(prefix) + [1] * 4


async def test_logprobs_are_full_length_with_zeros_on_an_uncached_prefix(tokenizer, prefix):
    """verl concatenates rollout log-probs across the batch, so every row needs one value per response token."""
    out = await run_rpo(ScriptedEngine(), tokenizer, **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: 4})
    assert out.response_logprobs == [0.0] * len(prefix) + ENGINE_LOGPROBS[:4]


async def test_cached_prefix_logprobs_fill_the_prefix(tokenizer, prefix):
    cached = [-1.0 - 0.25 * i for i in range(len(prefix))]  # exactly representable in float32
    out = await run_rpo(
        ScriptedEngine(), tokenizer, **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: 4, PREFIX_LOGPROBS: cached}
    )
    assert out.response_logprobs == cached + ENGINE_LOGPROBS[:4]


async def test_a_null_cached_logprobs_entry_means_zeros(tokenizer, prefix):
    """PartialRollout writes None for a prefix whose entry has no stored log-probs."""
    out = await run_rpo(
        ScriptedEngine(), tokenizer, **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: 4, PREFIX_LOGPROBS: None}
    )
    assert out.response_logprobs == [0.0] * len(prefix) + ENGINE_LOGPROBS[:4]


async def test_no_logprobs_from_the_engine_gives_none(tokenizer, prefix):
    """Without engine log-probs there is nothing to align cached ones with: the row must carry none at all."""
    cached = [-1.0] * len(prefix)
    out = await run_rpo(
        ScriptedEngine(with_logprobs=False), tokenizer,
        **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: 4, PREFIX_LOGPROBS: cached},
    )
    assert out.response_logprobs is None
    assert out.response_ids == prefix + ENGINE_TOKENS[:4]


async def test_cached_logprobs_of_the_wrong_length_raise(tokenizer, prefix):
    with pytest.raises(ValueError, match=PREFIX_LOGPROBS):
        await run_rpo(
            ScriptedEngine(), tokenizer,
            **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: 4, PREFIX_LOGPROBS: [-1.0] * (len(prefix) - 1)},
        )


@pytest.mark.parametrize("extra", [0, 3], ids=["prefix-equals-R", "prefix-longer-than-R"])
async def test_a_prefix_that_fills_the_response_raises_before_generating(tokenizer, extra):
    """A prefix of R tokens leaves no room for a suffix; a budget clamped to 1 by the server would overflow R."""
    engine = ScriptedEngine()
    with pytest.raises(ValueError, match=r"rollout\.response_length"):
        await run_rpo(
            engine, tokenizer, **{PREFIX_IDS: list(range(3, 3 + RESPONSE_LENGTH + extra)), MAX_NEW_TOKENS: 4}
        )
    assert engine.calls == []


async def test_numpy_columns_become_plain_python_lists(tokenizer, prompt_ids, prefix):
    """Columns arrive as numpy scalars and arrays; the output must hold plain ints/floats for verl's padding."""
    kwargs = row_kwargs(
        **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: 4, LOSS_ON_PREFIX: False, PREFIX_LOGPROBS: [-0.5] * len(prefix)}
    )
    assert isinstance(kwargs[PREFIX_IDS], np.ndarray) and isinstance(kwargs[MAX_NEW_TOKENS], np.integer)
    assert isinstance(kwargs[LOSS_ON_PREFIX], np.bool_) and isinstance(kwargs[PREFIX_LOGPROBS], np.ndarray)

    out = await build_loop(ScriptedEngine(), tokenizer).run(dict(SAMPLING), **kwargs)

    assert out.prompt_ids == prompt_ids
    assert out.response_ids == prefix + ENGINE_TOKENS[:4]
    assert all(type(token) is int for token in out.prompt_ids + out.response_ids)
    assert all(type(value) is float for value in out.response_logprobs)


async def test_extra_fields_report_prefix_and_generated_lengths(tokenizer, prefix):
    """The trainer's rpo/* metrics read these; an EOS stop makes the generated count smaller than the budget."""
    out = await run_rpo(ScriptedEngine(stop_after=2), tokenizer, **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: 5})
    assert out.extra_fields[OUT_PREFIX_LEN] == len(prefix)
    assert out.extra_fields[OUT_GENERATED] == 2
    assert out.response_ids == prefix + ENGINE_TOKENS[:2]
    assert out.response_mask == [0] * len(prefix) + [1, 1]
    # verl's stable extra-field schema, so RPO rows concatenate with any other agent loop's rows.
    assert out.extra_fields["turn_scores"] == [] and out.extra_fields["tool_rewards"] == []


async def test_an_overshooting_engine_is_cut_to_the_budget(tokenizer, prefix):
    """verl's padding does not truncate: a response longer than R would break the batch concatenation."""
    out = await run_rpo(
        ScriptedEngine(honour_max_tokens=False), tokenizer, **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: 3}
    )
    assert out.response_ids == prefix + ENGINE_TOKENS[:3]
    assert len(out.response_logprobs) == len(out.response_mask) == len(prefix) + 3
    assert out.extra_fields[OUT_GENERATED] == 3


async def test_seed_row_is_a_full_rollout(tokenizer, prompt_ids):
    """Cold start: an empty prefix with budget R is an ordinary full-length answer."""
    engine = ScriptedEngine()
    out = await run_rpo(engine, tokenizer, **{PREFIX_IDS: [], MAX_NEW_TOKENS: RESPONSE_LENGTH})

    assert engine.calls[0].prompt_ids == prompt_ids
    assert engine.calls[0].sampling_params["max_tokens"] == RESPONSE_LENGTH
    assert out.prompt_ids == prompt_ids
    assert out.response_ids == ENGINE_TOKENS
    assert out.response_mask == [1] * RESPONSE_LENGTH
    assert out.response_logprobs == ENGINE_LOGPROBS
    assert out.extra_fields[OUT_PREFIX_LEN] == 0 and out.extra_fields[OUT_GENERATED] == RESPONSE_LENGTH


async def test_rows_without_rpo_columns_are_full_rollouts(tokenizer, prompt_ids):
    """A batch that never went through PartialRollout (no prefix, no budget columns) still generates R tokens."""
    engine = ScriptedEngine()
    out = await run_rpo(engine, tokenizer)
    assert engine.calls[0].prompt_ids == prompt_ids
    assert engine.calls[0].sampling_params["max_tokens"] == RESPONSE_LENGTH
    assert out.response_ids == ENGINE_TOKENS and out.response_mask == [1] * RESPONSE_LENGTH


async def test_verl_postprocess_pads_the_rpo_row(tokenizer, prefix):
    """The output goes through verl's own per-row postprocess (padding to prompt_length / R, mask times attention)
    and keeps the prefix at the start of the padded response with mask 0 there, 1 on the suffix, 0 on padding."""
    out = await run_rpo(ScriptedEngine(), tokenizer, **{PREFIX_IDS: prefix, MAX_NEW_TOKENS: 4})

    worker = object.__new__(AgentLoopWorker)
    worker.tokenizer = tokenizer
    worker.processor = None
    worker.mm_processor_kwargs = {}
    worker.reward_loop_worker_handles = None
    worker.distillation_enabled = False
    worker.rollout_config = verl_config().actor_rollout_ref.rollout
    internal = await worker._agent_loop_postprocess(out, validate=False, raw_prompt=MESSAGES)

    n = len(prefix) + 4
    assert internal.response_ids.shape == (1, RESPONSE_LENGTH)
    assert internal.response_ids[0, :n].tolist() == prefix + ENGINE_TOKENS[:4]
    assert internal.response_mask[0].tolist() == [0] * len(prefix) + [1] * 4 + [0] * (RESPONSE_LENGTH - n)
    assert internal.attention_mask[0, PROMPT_LENGTH:].tolist() == [1] * n + [0] * (RESPONSE_LENGTH - n)
    assert internal.response_logprobs.shape == (1, RESPONSE_LENGTH)
    assert internal.prompt_ids.shape == (1, PROMPT_LENGTH)

