"""Grouped attention over a packed micro-batch, for the attention implementation the model was loaded with.

A registry maps a transformers attention implementation to the grouped attention that serves it, as verl's
``core_algos`` maps names to functions:

* ``sdpa``: per group of a :class:`~verl_ext.shared_prefix.layout.PackedGroups` layout, two calls of transformers'
  sdpa function: the shared part attends causally to itself, and all suffixes of the group, padded to one length,
  attend to the shared part's keys and values plus their own earlier tokens (an explicit boolean mask). The CPU
  path, and the GPU path of a model loaded with sdpa.
* ``flash_attention_2``: two calls of flash-attention's varlen kernel per layer, no mask and no padding
  (``varlen.py``). verl's default on a GPU.
* :data:`VARLEN_REFERENCE` (``rpo_varlen_reference``): the same varlen layout through
  ``varlen.reference_varlen_attention``, a pure-torch kernel with flash-attention's semantics, so that the flash
  path's layout is tested on CPU; calls without a layout (verl's own passes) run transformers' sdpa function and
  mask. Registered with transformers under that name, so a model can be loaded with it.

Either way the result equals per-row causal attention over ``shared + suffix`` up to float rounding, and every
index and mask is built once per micro-batch (cached on the layout), not per layer.

:func:`install_grouped_attention` wraps the implementation's entry in transformers' ``AttentionInterface``: a call
that carries the layout under :data:`SHARED_PREFIX_KWARG` is grouped, every other call goes to the original
function unchanged. The engine refuses the layout's outputs when the grouped attention did not run once per layer
(``PackedGroups.attention_calls``).

Torch and transformers only: importable on a machine without verl.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from verl_ext.shared_prefix.layout import GroupSegments, PackedGroups
from verl_ext.shared_prefix.varlen import (
    VarlenKernel,
    flash_attn_varlen_kernel,
    grouped_varlen_attention,
    reference_varlen_attention,
)

SHARED_PREFIX_KWARG = "rpo_shared_prefix"
"""The model-forward keyword that carries the packed layout down to the attention function."""
VARLEN_REFERENCE = "rpo_varlen_reference"

AttentionFn = Callable[..., tuple[torch.Tensor, Any]]
GroupedAttention = Callable[..., torch.Tensor]
"""``grouped(base, module, query, key, value, layout, **kwargs) -> (1, N, H, d)``; ``base`` is the original
attention function of the implementation."""

GROUPED_ATTENTION: dict[str, GroupedAttention] = {}


def register_grouped_attention(implementation: str) -> Callable[[GroupedAttention], GroupedAttention]:
    """Register the grouped attention for a transformers attention implementation (its ``attn_implementation``)."""

    def decorator(fn: GroupedAttention) -> GroupedAttention:
        if implementation in GROUPED_ATTENTION:
            raise ValueError(f"a grouped attention for {implementation!r} is already registered")
        GROUPED_ATTENTION[implementation] = fn
        return fn

    return decorator


def supported_attention() -> tuple[str, ...]:
    """The ``attn_implementation`` values the shared-prefix passes serve."""
    return tuple(GROUPED_ATTENTION)


@dataclass(frozen=True)
class _SdpaGroupPlan:
    lo: int
    hi: int
    index: torch.Tensor | None
    """(G, S_max) packed indices of each suffix's tokens (padding points at the shared part's last token, whose
    outputs are dropped); None for a group without suffix tokens."""
    valid: torch.Tensor | None
    mask: torch.Tensor | None
    """(G, 1, S_max, P + S_max) boolean: every query sees the whole shared part and its own suffix causally."""


def _sdpa_group_plan(group: GroupSegments, device: torch.device) -> _SdpaGroupPlan:
    lo, hi = group.start, group.start + group.shared_len
    if not any(group.suffix_lens):
        return _SdpaGroupPlan(lo, hi, None, None, None)
    longest = max(group.suffix_lens)
    offsets = torch.arange(longest, device=device)
    starts = torch.tensor(group.suffix_starts, device=device).unsqueeze(1)
    lens = torch.tensor(group.suffix_lens, device=device).unsqueeze(1)
    valid = offsets.unsqueeze(0) < lens
    index = torch.where(valid, starts + offsets, hi - 1)
    causal = torch.ones(longest, longest, dtype=torch.bool, device=device).tril()
    own = causal.unsqueeze(0) & valid.unsqueeze(1)
    shared = torch.ones(len(group.suffix_lens), longest, group.shared_len, dtype=torch.bool, device=device)
    return _SdpaGroupPlan(lo, hi, index, valid, torch.cat([shared, own], dim=-1).unsqueeze(1))


def _sdpa_plan(layout: PackedGroups, device: torch.device) -> tuple[list[_SdpaGroupPlan], torch.Tensor]:
    """Per group its indices and mask, and the order that puts the outputs back in packed order (cached)."""
    key = ("sdpa", str(device))
    if key not in layout.plans:
        plans = [_sdpa_group_plan(group, device) for group in layout.groups]
        positions = []
        for plan in plans:
            positions.append(torch.arange(plan.lo, plan.hi, device=device))
            if plan.index is not None:
                positions.append(plan.index[plan.valid])
        order = torch.empty(layout.packed_tokens, dtype=torch.long, device=device)
        order[torch.cat(positions)] = torch.arange(layout.packed_tokens, device=device)
        layout.plans[key] = (plans, order)
    return layout.plans[key]


@register_grouped_attention("sdpa")
def grouped_sdpa_attention(base: AttentionFn, module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                           value: torch.Tensor, layout: PackedGroups, **kwargs: Any) -> torch.Tensor:
    """Attention of one packed sequence (query (1, H, N, d), key/value (1, H_kv, N, d)) through sdpa calls per
    group. Returns (1, N, H, d)."""
    kwargs.pop("is_causal", None)
    plans, order = _sdpa_plan(layout, query.device)
    outputs: list[torch.Tensor] = []
    for plan in plans:
        lo, hi = plan.lo, plan.hi
        shared_out, _ = base(module, query[:, :, lo:hi], key[:, :, lo:hi], value[:, :, lo:hi], None,
                             is_causal=True, **kwargs)
        outputs.append(shared_out[0])
        if plan.index is None:
            continue
        count = plan.index.shape[0]
        q = query[0][:, plan.index].transpose(0, 1)
        k_own, v_own = key[0][:, plan.index].transpose(0, 1), value[0][:, plan.index].transpose(0, 1)
        k_shared = key[:, :, lo:hi].expand(count, -1, -1, -1)
        v_shared = value[:, :, lo:hi].expand(count, -1, -1, -1)
        suffix_out, _ = base(module, q, torch.cat([k_shared, k_own], dim=2), torch.cat([v_shared, v_own], dim=2),
                             plan.mask, is_causal=False, **kwargs)
        outputs.append(suffix_out[plan.valid])
    return torch.cat(outputs).index_select(0, order).unsqueeze(0)


def _varlen(kernel: Callable[[], VarlenKernel]) -> GroupedAttention:
    def grouped(base: AttentionFn, module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                value: torch.Tensor, layout: PackedGroups, **kwargs: Any) -> torch.Tensor:
        del base, module  # the varlen layout replaces the implementation's own call
        return grouped_varlen_attention(kernel(), query, key, value, layout, **kwargs)

    return grouped


register_grouped_attention("flash_attention_2")(_varlen(flash_attn_varlen_kernel))
register_grouped_attention(VARLEN_REFERENCE)(_varlen(lambda: reference_varlen_attention))

# A model loaded with the reference implementation runs transformers' sdpa wherever no layout is passed.
AttentionInterface.register(VARLEN_REFERENCE, sdpa_attention_forward)
AttentionMaskInterface.register(VARLEN_REFERENCE, sdpa_mask)


def grouped_attention(implementation: str, base: AttentionFn, module: torch.nn.Module, query: torch.Tensor,
                      key: torch.Tensor, value: torch.Tensor, layout: PackedGroups,
                      **kwargs: Any) -> tuple[torch.Tensor, None]:
    """The registered grouped attention of ``implementation`` on one packed sequence; counts the call."""
    if query.shape[0] != 1:
        raise ValueError(f"shared prefix: the packed micro-batch must be one sequence, got batch {query.shape[0]}")
    if kwargs.get("sliding_window") is not None:
        raise ValueError("shared prefix: models with sliding-window attention are not supported")
    output = GROUPED_ATTENTION[implementation](base, module, query, key, value, layout, **kwargs)
    layout.attention_calls += 1
    return output, None


def install_grouped_attention(implementation: str = "sdpa") -> None:
    """Wrap transformers' ``implementation`` attention so that calls carrying a packed layout are grouped
    (idempotent); an implementation without a registered grouped attention is refused."""
    if implementation not in GROUPED_ATTENTION:
        raise ValueError(
            f"rpo.shared_prefix: attn_implementation={implementation!r} has no grouped attention (supported: "
            f"{', '.join(supported_attention())})"
        )
    base = ALL_ATTENTION_FUNCTIONS[implementation]
    if getattr(base, "rpo_shared_prefix_wrapper", False):
        return

    def original_or_grouped(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        layout = kwargs.pop(SHARED_PREFIX_KWARG, None)
        if layout is None:
            return base(module, query, key, value, attention_mask, **kwargs)
        return grouped_attention(implementation, base, module, query, key, value, layout, **kwargs)

    original_or_grouped.rpo_shared_prefix_wrapper = True  # type: ignore[attr-defined]
    AttentionInterface.register(implementation, original_or_grouped)
