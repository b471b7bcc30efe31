"""verl's FSDP language-model engine with shared-prefix micro-batches.

:class:`SharedPrefixFSDPEngine` is verl's ``FSDPEngineWithLMHead`` with two methods extended: when a micro-batch
carries the columns :data:`SHARED_LEN_KEY` and :data:`GROUP_KEY` (the trainer adds them when
``rpo.shared_prefix=true``), ``prepare_model_inputs`` packs it by group (``layout.pack_rows``) and
``prepare_model_outputs`` returns log-probs, entropy and sum of squared probabilities in verl's own nested
per-row layout, so that verl's ``forward_step``, micro-batching, loss functions, loss aggregation and metrics run
unchanged. A micro-batch without the columns (the option off, the critic, validation) takes verl's path as is.

Micro-batches may split a group (dynamic batch size, shuffled mini-batches): each part is packed on its own, which
stays exact and only shares less. :func:`install_shared_prefix_engine` puts the class in verl's engine registry in
place of ``FSDPEngineWithLMHead`` for every device it is registered for.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict

import verl.utils.torch_functional as verl_F
from verl.utils import tensordict_utils as tu
from verl.utils.model import extract_multi_modal_inputs
from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp import transformer_impl
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from .attention import SHARED_PREFIX_KWARG, install_grouped_attention
from .layout import PackedGroups, gather_row_logprobs, gather_row_values, pack_rows

SHARED_LEN_KEY = "rpo_shared_len"
"""Per row: how many leading tokens (of the unpadded prompt + response) the row shares with its group."""
GROUP_KEY = "rpo_group_index"
"""Per row: an integer naming its group (rows with one ``uid``)."""
_LAYOUT_ARG = "shared_prefix_layout"


def _flag(micro_batch: TensorDict, key: str) -> bool:
    return bool(tu.get_non_tensor_data(data=micro_batch, key=key, default=False))


def _refuse_unsupported(engine: FSDPEngineWithLMHead, micro_batch: TensorDict) -> None:
    reasons = {
        "use_fused_kernels=true (the fused forward returns log-probs, not the logits to gather)": _flag(
            micro_batch, "use_fused_kernels"),
        "top-K distillation": _flag(micro_batch, "distillation_use_topk"),
        "ulysses_sequence_parallel_size > 1": engine.use_ulysses_sp,
        "multi-modal inputs": bool(extract_multi_modal_inputs(micro_batch.get("multi_modal_inputs", []))),
        "3-D (multi-modal rope) position ids": micro_batch["position_ids"].dim() == 3,
    }
    for reason, present in reasons.items():
        if present:
            raise ValueError(f"rpo.shared_prefix=true does not support {reason}; set rpo.shared_prefix=false")


def _packed_temperature(temperature: Any, layout: PackedGroups, group_ids: torch.Tensor) -> torch.Tensor:
    """(N,) temperature per packed token; rows of one group must share theirs, since they share positions."""
    rows, device = layout.row_lengths.shape[0], group_ids.device
    if not isinstance(temperature, torch.Tensor):
        temperature = torch.full((rows,), float(temperature), device=device)
    temperature = temperature.to(device=device, dtype=torch.float32).reshape(-1)
    for gid in group_ids.unique():
        members = temperature[group_ids == gid]
        if not torch.all(members == members[0]):
            raise ValueError(f"rpo.shared_prefix: rows of group {int(gid)} have different temperatures")
    per_row_token = torch.repeat_interleave(temperature, layout.row_lengths.to(device))
    packed = torch.empty(layout.packed_tokens, dtype=torch.float32, device=per_row_token.device)
    packed[layout.token_index] = per_row_token
    return packed


class SharedPrefixFSDPEngine(FSDPEngineWithLMHead):
    """``FSDPEngineWithLMHead`` that computes each group's shared part once per micro-batch (module docstring)."""

    def prepare_model_inputs(self, micro_batch: TensorDict):
        if SHARED_LEN_KEY not in micro_batch.keys():
            return super().prepare_model_inputs(micro_batch)
        _refuse_unsupported(self, micro_batch)
        install_grouped_attention()
        input_ids, position_ids = micro_batch["input_ids"], micro_batch["position_ids"]
        group_ids = micro_batch[GROUP_KEY]
        layout = pack_rows(list(input_ids.unbind()), list(position_ids.unbind()), micro_batch[SHARED_LEN_KEY],
                           group_ids)
        temperature = micro_batch["temperature"]
        output_args = {
            _LAYOUT_ARG: layout,
            "temperature_is_one": transformer_impl._is_scalar_unit_temperature(temperature),
            "temperature_packed": _packed_temperature(temperature, layout, group_ids),
        }
        model_inputs = {
            "input_ids": layout.input_ids.unsqueeze(0),
            "position_ids": layout.position_ids.unsqueeze(0),
            # All ones: transformers then skips the mask (sdpa's causal fast path) instead of building a
            # packed-sequence mask from the position ids; the grouped attention ignores it.
            "attention_mask": torch.ones_like(layout.input_ids).unsqueeze(0),
            SHARED_PREFIX_KWARG: layout,
        }
        return model_inputs, output_args

    def prepare_model_outputs(self, output, output_args, micro_batch: TensorDict, logits_processor_func):
        layout: PackedGroups | None = output_args.get(_LAYOUT_ARG)
        if layout is None:
            return super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        if layout.attention_calls == 0:
            raise RuntimeError(
                "rpo.shared_prefix: the model's forward never reached the grouped attention; it works with "
                "actor_rollout_ref.model.override_config.attn_implementation=sdpa only"
            )

        logits = transformer_impl._scale_logits_by_temperature(
            output.logits.squeeze(0),
            output_args["temperature_packed"].unsqueeze(-1),
            is_unit_temperature=output_args["temperature_is_one"],
        )
        input_ids = micro_batch["input_ids"]
        cu_seqlens = input_ids.offsets()
        # verl's labels: the next token of the flattened rows (the last token of a row wraps; it is never in a mask).
        labels = torch.roll(input_ids.values(), shifts=-1, dims=0)

        def logprob_fn(rows: torch.Tensor, row_labels: torch.Tensor) -> torch.Tensor:
            return transformer_impl.logprobs_from_logits(logits=rows, labels=row_labels, inplace_backward=False)

        def nested(values: torch.Tensor) -> torch.Tensor:
            return torch.nested.nested_tensor_from_jagged(values, cu_seqlens)

        model_output = {}
        if not _flag(micro_batch, "distillation_only"):
            model_output["log_probs"] = nested(gather_row_logprobs(logits, labels, layout.token_index, logprob_fn))
        if _flag(micro_batch, "calculate_entropy"):
            entropy = (self.compute_entropy_from_logits(logits) if not self.engine_config.entropy_checkpointing
                       else torch.utils.checkpoint.checkpoint(self.compute_entropy_from_logits, logits))
            model_output["entropy"] = nested(gather_row_values(entropy, layout.token_index))
        if _flag(micro_batch, "calculate_sum_pi_squared"):
            sum_pi_squared = verl_F.calculate_sum_pi_squared_from_logits(logits)
            model_output["sum_pi_squared"] = nested(gather_row_values(sum_pi_squared, layout.token_index))
        return model_output


def install_shared_prefix_engine() -> None:
    """Register :class:`SharedPrefixFSDPEngine` wherever verl registered ``FSDPEngineWithLMHead`` (idempotent).

    verl's registry refuses a second registration for a key, so the entries are replaced in place; an entry that
    holds some other class (another plugin's engine) is left alone."""
    for by_device in EngineRegistry._engines.get("language_model", {}).values():
        for key, engine_cls in list(by_device.items()):
            if engine_cls is FSDPEngineWithLMHead:
                by_device[key] = SharedPrefixFSDPEngine
