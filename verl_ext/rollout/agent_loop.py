"""``RPOAgentLoop``: generate only the suffix of a cached answer, return prefix + suffix as the response.

The trainer attaches per-row columns to the generation batch (see :data:`PREFIX_IDS` and friends); verl's
``AgentLoopWorker`` passes every non-tensor column of a row to ``run`` as a keyword argument. The loop sends
``prompt + prefix`` token ids to the engine (token in, token out: no decode/re-encode drift at the cut) with an
explicit ``max_tokens`` budget, and returns:

* ``prompt_ids``: the prompt alone, so the prompt keeps its natural place in the batch;
* ``response_ids``: prefix + suffix, so verl's reward managers (which decode the response by attention mask)
  score the whole answer, and every downstream tensor covers it;
* ``response_mask``: 0 on the prefix unless ``loss_on_prefix``, 1 on the suffix, so advantages, the policy loss,
  KL and entropy see only tokens this policy sampled;
* ``response_logprobs``: cached behaviour log-probs (or 0.0) on the prefix and the engine's on the suffix; always
  full length, because verl concatenates them across the batch.

An empty prefix with a full budget is the cold-start "seed" rollout: a normal full-length answer.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence
from uuid import uuid4

import numpy as np
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer

RPO_AGENT_NAME = "rpo_agent"

# Per-row generation-batch columns written by the trainer and read here.
PREFIX_IDS = "rpo_prefix_ids"
MAX_NEW_TOKENS = "rpo_max_new_tokens"
LOSS_ON_PREFIX = "rpo_loss_on_prefix"
PREFIX_LOGPROBS = "rpo_prefix_logprobs"

# Per-row outputs (extra_fields -> non_tensor_batch of the generation output).
OUT_PREFIX_LEN = "rpo_prefix_len"
OUT_GENERATED = "rpo_generated_tokens"


def agent_loop_config_path() -> str:
    """Path of the YAML that registers ``rpo_agent`` in verl's agent-loop workers."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent_loops.yaml")


def suffix_budget(prefix_len: int, requested: int, response_length: int) -> int:
    """Tokens the engine may generate after the prefix: the request, capped so prefix + suffix fits the response.

    Raises when nothing is left, which means the trainer handed over a prefix as long as the response budget R:
    the truncation policy always cuts at least one token, so this only happens with inconsistent inputs."""
    if requested < 1:
        raise ValueError(f"{MAX_NEW_TOKENS} must be >= 1, got {requested}")
    budget = min(requested, response_length - prefix_len)
    if budget < 1:
        raise ValueError(
            f"RPO prefix of {prefix_len} tokens leaves no room in rollout.response_length={response_length}; "
            "the cut must remove at least one token of a cached answer clipped to the response length"
        )
    return budget


def _as_int_list(values: Optional[Sequence[int]]) -> list[int]:
    # Columns arrive as numpy arrays (or None): never test them for truth.
    return [] if values is None else [int(v) for v in np.asarray(values).reshape(-1)]


@register(RPO_AGENT_NAME)
class RPOAgentLoop(AgentLoopBase):
    """Single-turn agent loop that continues a cached answer from a prefix (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.response_length = int(self.rollout_config.response_length)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        prefix = _as_int_list(kwargs.get(PREFIX_IDS))
        requested = kwargs.get(MAX_NEW_TOKENS)
        budget = suffix_budget(
            len(prefix), self.response_length if requested is None else int(requested), self.response_length
        )
        prompt_ids = await self.ct_build_initial_tokens(list(kwargs["raw_prompt"]))

        metrics: dict[str, Any] = {}
        with simple_timer("generate_sequences", metrics):
            output = await self.server_manager.generate(
                request_id=uuid4().hex,
                prompt_ids=prompt_ids + prefix,
                sampling_params={**sampling_params, "max_tokens": budget},
            )
        metrics["num_preempted"] = output.num_preempted if output.num_preempted is not None else -1
        suffix = list(output.token_ids)[:budget]

        prefix_mask = 1 if bool(kwargs.get(LOSS_ON_PREFIX, False)) else 0
        response_logprobs = None
        if output.log_probs:
            cached = kwargs.get(PREFIX_LOGPROBS)
            prefix_logprobs = [0.0] * len(prefix) if cached is None else [float(x) for x in np.asarray(cached)]
            if len(prefix_logprobs) != len(prefix):
                raise ValueError(
                    f"{PREFIX_LOGPROBS} has {len(prefix_logprobs)} values for a prefix of {len(prefix)} tokens"
                )
            response_logprobs = prefix_logprobs + list(output.log_probs)[: len(suffix)]

        extra_fields = dict(output.extra_fields or {})
        extra_fields.update(
            {OUT_PREFIX_LEN: len(prefix), OUT_GENERATED: len(suffix), "turn_scores": [], "tool_rewards": []}
        )
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=prefix + suffix,
            response_mask=[prefix_mask] * len(prefix) + [1] * len(suffix),
            response_logprobs=response_logprobs,
            num_turns=2,
            metrics=metrics,
            extra_fields=extra_fields,
        )
