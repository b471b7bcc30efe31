"""verl's FSDP language-model engine with shared-prefix micro-batches.

:class:`SharedPrefixFSDPEngine` is verl's ``FSDPEngineWithLMHead`` with three methods extended. When a batch carries
the columns :data:`SHARED_LEN_KEY` and :data:`GROUP_KEY` (the trainer adds them when ``rpo.shared_prefix=true``):

* ``forward_backward_batch`` forms the micro-batches by group (``micro_batches.py``: with dynamic batch size by
  packed tokens under ``max_token_len_per_gpu``, else contiguous chunks cut at group boundaries), with the same
  micro-batch count on every data-parallel rank, and reports the packed and row tokens of the pass
  (``packing_metrics.py``);
* ``prepare_model_inputs`` packs each micro-batch by group (``layout.pack_rows``);
* ``prepare_model_outputs`` checks that the grouped attention ran once per attention layer and returns log-probs,
  entropy and sum of squared probabilities in verl's own nested per-row layout, so that verl's ``forward_step``,
  loss functions, loss aggregation and metrics run unchanged.

A batch without the columns (the option off, the critic, validation) takes verl's path as is. A group that a
micro-batch (or the rank balancing) cuts apart is packed per part, which stays exact and only shares less.
:func:`install_shared_prefix_engine` puts the class in verl's engine registry in place of ``FSDPEngineWithLMHead``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import verl.utils.torch_functional as verl_F
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils.device import get_device_name
from verl.utils.model import extract_multi_modal_inputs
from verl.workers.engine.fsdp import transformer_impl
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from verl_ext import verl_compat
from verl_ext.shared_prefix.attention import SHARED_PREFIX_KWARG, install_grouped_attention
from verl_ext.shared_prefix.layout import PackedGroups, gather_row_logprobs, gather_row_values, pack_rows
from verl_ext.shared_prefix.micro_batches import row_budget_plan, spread_to_count, token_budget_plan
from verl_ext.shared_prefix.packing_metrics import PACKED_TOKENS, ROW_TOKENS
from verl_ext.shared_prefix.support import attention_layer_count, check_model_supported

verl_compat.check_engine_internals()

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


def _agreed_count(count: int, dp_group: Any, same_micro_num_in_dp: bool) -> int:
    """The largest micro-batch count over the data-parallel group, as verl's ``rearrange_micro_batches`` agrees on
    it: every rank must run as many forwards (FSDP gathers parameters in each)."""
    if not (dist.is_initialized() and same_micro_num_in_dp and dp_group is not None):
        return count
    agreed = torch.tensor([count], device=get_device_name())
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX, group=dp_group)
    return int(agreed.item())


def group_micro_batches(data: TensorDict, dp_group: Any = None, num_batches_divided_by: Optional[int] = None,
                        same_micro_num_in_dp: bool = True, min_num_micro_batch: Optional[int] = None,
                        use_dynamic_bsz_balance: bool = True) -> tuple[list[TensorDict], Optional[list[list[int]]]]:
    """verl's ``prepare_micro_batches`` (same arguments and return value) for a batch with the shared-prefix columns:
    micro-batches by group (``micro_batches.py``). With dynamic batch size the rows are regrouped and the index
    lists returned, which verl uses to restore the row order; with a fixed size the chunks stay in row order."""
    del use_dynamic_bsz_balance  # verl's reordering of micro-batches for pipeline bubbles; FSDP runs no pipeline
    dynamic = bool(tu.get_non_tensor_data(data=data, key="use_dynamic_bsz", default=True))
    group_ids = data[GROUP_KEY].tolist()
    if dynamic:
        row_lens = data["input_ids"].offsets().diff().tolist()
        max_tokens = int(data["max_token_len_per_gpu"]) * int(tu.get_non_tensor_data(data, "sp_size", 1))
        plan = token_budget_plan(group_ids, row_lens, data[SHARED_LEN_KEY].tolist(), max_tokens)
    else:
        plan = row_budget_plan(group_ids, int(data["micro_batch_size_per_gpu"]))
    count = max(_agreed_count(len(plan), dp_group, same_micro_num_in_dp), min_num_micro_batch or 1)
    if num_batches_divided_by:
        count = -(-count // num_batches_divided_by) * num_batches_divided_by
    plan = spread_to_count(plan, count, group_ids, keep_order=not dynamic)
    return [tu.index_select_tensor_dict(data, rows) for rows in plan], (plan if dynamic else None)


class SharedPrefixFSDPEngine(FSDPEngineWithLMHead):
    """``FSDPEngineWithLMHead`` that computes each group's shared part once per micro-batch (module docstring)."""

    _attention_layers: Optional[int] = None
    _packing_totals: Optional[list[int]] = None

    def forward_backward_batch(self, data: TensorDict, loss_function: Callable, forward_only: bool = False):
        if SHARED_LEN_KEY not in data.keys():
            return super().forward_backward_batch(data, loss_function, forward_only=forward_only)
        self._packing_totals = [0, 0]
        with verl_compat.micro_batches_planned_by(group_micro_batches):
            output = super().forward_backward_batch(data, loss_function, forward_only=forward_only)
        packed, rows = self._packing_totals
        self._packing_totals = None
        output["metrics"][PACKED_TOKENS] = [packed]
        output["metrics"][ROW_TOKENS] = [rows]
        return output

    def prepare_model_inputs(self, micro_batch: TensorDict):
        if SHARED_LEN_KEY not in micro_batch.keys():
            return super().prepare_model_inputs(micro_batch)
        _refuse_unsupported(self, micro_batch)
        if self._attention_layers is None:
            hf_config = self.model_config.hf_config
            check_model_supported(hf_config, source=str(self.model_config.path))
            self._attention_layers = attention_layer_count(hf_config)
        install_grouped_attention(self._attention_implementation())
        input_ids, position_ids = micro_batch["input_ids"], micro_batch["position_ids"]
        group_ids = micro_batch[GROUP_KEY]
        layout = pack_rows(list(input_ids.unbind()), list(position_ids.unbind()), micro_batch[SHARED_LEN_KEY],
                           group_ids)
        if self._packing_totals is not None:
            self._packing_totals[0] += layout.packed_tokens
            self._packing_totals[1] += layout.row_tokens
        temperature = micro_batch["temperature"]
        output_args = {
            _LAYOUT_ARG: layout,
            "temperature_is_one": verl_compat.is_scalar_unit_temperature(temperature),
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

    def _attention_implementation(self) -> str:
        """The attention implementation the loaded model runs (transformers may settle on another than the config
        asked for), else the config's (verl's default: flash_attention_2)."""
        for config in (getattr(self.module, "config", None), self.model_config.hf_config):
            implementation = getattr(config, "_attn_implementation", None)
            if implementation:
                return str(implementation)
        return "flash_attention_2"

    def prepare_model_outputs(self, output, output_args, micro_batch: TensorDict, logits_processor_func):
        layout: PackedGroups | None = output_args.get(_LAYOUT_ARG)
        if layout is None:
            return super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        if layout.attention_calls != self._attention_layers:
            raise RuntimeError(
                f"rpo.shared_prefix: the model's forward reached the grouped attention {layout.attention_calls} "
                f"times for its {self._attention_layers} attention layers; every layer must attend through it "
                f"(attn_implementation={self._attention_implementation()}, no layer with its own attention)"
            )

        logits = verl_compat.scale_logits_by_temperature(
            output.logits.squeeze(0), output_args["temperature_packed"].unsqueeze(-1),
            is_unit=output_args["temperature_is_one"],
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
    """Register :class:`SharedPrefixFSDPEngine` wherever verl registered ``FSDPEngineWithLMHead`` (idempotent)."""
    verl_compat.replace_registered_engine(FSDPEngineWithLMHead, SharedPrefixFSDPEngine)
