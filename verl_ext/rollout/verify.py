"""The current policy's log-probs of cached answers, for ``rpo.truncation.mode=verified``.

One row per prompt (prompt + its whole cached answer), through the actor's own log-prob pass (verl's
``_compute_old_log_prob``): the same weights, precision and temperature as the training passes, so
``log p_current - log p_behaviour`` compares like with like (the behaviour log-probs are the rollout engine's, which
match the actor's to ~3e-8 on CPU in fp32, ``training/rollout_probs_diff_max``). The prompt is tokenised with the
Continuous Token builder verl's agent loop uses, so the rows hold exactly the tokens the engine conditioned on.

Why the actor and not the rollout engine's prompt log-probs (verl's vLLM server returns them when the sampling
params ask for ``prompt_logprobs``, as its distillation teacher loop does): vLLM computes prompt log-probs from the
raw logits, so temperature has no effect on them (verl's teacher manager says as much), while the cached behaviour
log-probs are the sampled tokens' at the rollout temperature; the two would only be comparable at T=1. The engine
route would also be one extra request per prompt through the agent-loop workers. The actor pass costs one forward
over the cached answers, 1/G of the old-log-prob pass the step runs anyway (``rpo/verify_s`` reports it).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from verl import DataProto
from verl.protocol import pad_dataproto_to_divisor, unpad_dataproto

from verl_ext.shared_prefix.batch import add_shared_prefix_columns

LogProbPass = Callable[[DataProto], DataProto]
"""The actor's log-prob pass: a padded DataProto in, ``old_log_probs`` (B, response width) out."""


def answers_batch(prompt_ids: Sequence[Sequence[int]], answers: Sequence[np.ndarray], pad_token_id: int,
                  temperature: float) -> DataProto:
    """Prompt + answer rows as verl holds them after a rollout: left-padded prompts, right-padded responses,
    attention mask, position ids from the mask, response mask over the answer."""
    rows = len(answers)
    prompt_width = max(1, max((len(p) for p in prompt_ids), default=1))
    width = max(1, max((len(a) for a in answers), default=1))
    prompts = torch.full((rows, prompt_width), pad_token_id, dtype=torch.long)
    responses = torch.full((rows, width), pad_token_id, dtype=torch.long)
    attention = torch.zeros(rows, prompt_width + width, dtype=torch.long)
    for i, (prompt, answer) in enumerate(zip(prompt_ids, answers, strict=True)):
        prompts[i, prompt_width - len(prompt):] = torch.as_tensor(list(prompt), dtype=torch.long)
        responses[i, :len(answer)] = torch.as_tensor(np.asarray(answer, dtype=np.int64))
        attention[i, prompt_width - len(prompt):prompt_width + len(answer)] = 1
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], dim=1),
                 "attention_mask": attention, "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
                 "response_mask": attention[:, prompt_width:].clone()},
        meta_info={"temperature": float(temperature),
                   "global_token_num": attention.sum(-1).tolist()},
    )


class CurrentLogprobs:
    """``current(gen_batch, answers) -> per answer, the current policy's log-prob of each token``."""

    def __init__(self, tokenizer: Any, hf_model_type: str | None, chat_template_kwargs: dict, temperature: float,
                 log_prob_pass: LogProbPass, world_size: Callable[[], int], micro_batch_size: int | None,
                 shared_prefix: Callable[[], bool] = lambda: False) -> None:
        """``micro_batch_size``: the log-prob pass's rows per GPU micro-batch (None: dynamic batch size). The batch
        is padded to the data-parallel size only; its micro-batch is the largest divisor of the rows per rank that
        does not exceed this, so that a few prompts are not padded up to a whole micro-batch. ``shared_prefix``:
        whether the step runs the shared-prefix passes; the rows then take the engine's packed path too."""
        from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

        self.builder = create_continuous_token_builder(tokenizer, hf_model_type=hf_model_type,
                                                       chat_template_kwargs=chat_template_kwargs)
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.temperature = temperature
        self.log_prob_pass = log_prob_pass
        self.world_size = world_size
        self.micro_batch_size = micro_batch_size
        self.shared_prefix = shared_prefix

    def __call__(self, gen_batch: DataProto, answers: Sequence[np.ndarray]) -> list[np.ndarray]:
        prompts = [self.builder.build_initial_tokens(list(messages))
                   for messages in gen_batch.non_tensor_batch["raw_prompt"]]
        batch = answers_batch(prompts, answers, self.pad_token_id, self.temperature)
        if self.shared_prefix():
            # Each row its own group whose shared part is the whole row: the engine's packed path then runs one
            # causal attention per row (per sequence with flash-attention's varlen kernel), where verl's path with
            # sdpa and remove-padding masks the whole packed micro-batch.
            add_shared_prefix_columns(batch, whole_rows=True)
        world_size = self.world_size()
        padded, pad = pad_dataproto_to_divisor(batch, world_size)
        if self.micro_batch_size is not None:
            padded.meta_info["micro_batch_size_per_gpu"] = math.gcd(len(padded) // world_size, self.micro_batch_size)
        logprobs = unpad_dataproto(self.log_prob_pass(padded), pad).batch["old_log_probs"]
        return [logprobs[i, :len(answer)].float().numpy() for i, answer in enumerate(answers)]
