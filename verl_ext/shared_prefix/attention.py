"""Grouped attention over a packed micro-batch, built on the model's own ``sdpa`` attention function.

Per group of a :class:`~verl_ext.shared_prefix.layout.PackedGroups` layout, two calls of transformers' attention
function: the shared part attends causally to itself, and all suffixes of the group, padded to one length, attend
to the shared part's keys and values plus their own earlier tokens (an explicit boolean mask). No key or value of
the shared part is recomputed per suffix; only its K/V tensors are broadcast. The result equals per-row causal
attention over ``shared + suffix`` up to float rounding.

:func:`install_grouped_attention` wraps the ``sdpa`` entry of transformers' ``AttentionInterface``: a call that
carries the layout under :data:`SHARED_PREFIX_KWARG` is grouped, every other call goes to the original function
unchanged. Only ``sdpa`` is wrapped, so a model on another implementation never reaches the grouped path, and the
engine refuses the layout's outputs when the grouped attention did not run (``PackedGroups.attention_calls``).

Torch and transformers only: importable on a machine without verl.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from verl_ext.shared_prefix.layout import GroupSegments, PackedGroups

SHARED_PREFIX_KWARG = "rpo_shared_prefix"
"""The model-forward keyword that carries the packed layout down to the attention function."""
SUPPORTED_ATTENTION = "sdpa"

AttentionFn = Callable[..., tuple[torch.Tensor, Any]]


def _suffix_indices(group: GroupSegments, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, S_max) packed indices of each suffix's tokens (padding points at the shared part's last token, whose
    outputs are dropped) and the validity mask."""
    longest = max(group.suffix_lens)
    offsets = torch.arange(longest, device=device)
    starts = torch.tensor(group.suffix_starts, device=device).unsqueeze(1)
    lens = torch.tensor(group.suffix_lens, device=device).unsqueeze(1)
    valid = offsets.unsqueeze(0) < lens
    index = torch.where(valid, starts + offsets, group.start + group.shared_len - 1)
    return index, valid


def _suffix_mask(shared_len: int, valid: torch.Tensor) -> torch.Tensor:
    """(G, 1, S_max, P + S_max) boolean: every query sees the whole shared part and its own suffix causally."""
    count, longest = valid.shape
    causal = torch.ones(longest, longest, dtype=torch.bool, device=valid.device).tril()
    own = causal.unsqueeze(0) & valid.unsqueeze(1)
    shared = torch.ones(count, longest, shared_len, dtype=torch.bool, device=valid.device)
    return torch.cat([shared, own], dim=-1).unsqueeze(1)


def grouped_attention(base: AttentionFn, module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                      value: torch.Tensor, layout: PackedGroups, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of one packed sequence (batch 1; query (1, H, N, d), key/value (1, H_kv, N, d)).

    Returns (1, N, H, d), the layout transformers' attention functions return."""
    if query.shape[0] != 1:
        raise ValueError(f"shared prefix: the packed micro-batch must be one sequence, got batch {query.shape[0]}")
    if kwargs.get("sliding_window") is not None:
        raise ValueError("shared prefix: models with sliding-window attention are not supported")
    kwargs.pop("is_causal", None)
    device = query.device
    outputs: list[torch.Tensor] = []
    positions: list[torch.Tensor] = []
    for group in layout.groups:
        lo, hi = group.start, group.start + group.shared_len
        shared_out, _ = base(module, query[:, :, lo:hi], key[:, :, lo:hi], value[:, :, lo:hi], None,
                             is_causal=True, **kwargs)
        outputs.append(shared_out[0])
        positions.append(torch.arange(lo, hi, device=device))
        if not any(group.suffix_lens):
            continue
        index, valid = _suffix_indices(group, device)
        count = index.shape[0]
        q = query[0][:, index].transpose(0, 1)
        k_own, v_own = key[0][:, index].transpose(0, 1), value[0][:, index].transpose(0, 1)
        k_shared = key[:, :, lo:hi].expand(count, -1, -1, -1)
        v_shared = value[:, :, lo:hi].expand(count, -1, -1, -1)
        suffix_out, _ = base(module, q, torch.cat([k_shared, k_own], dim=2), torch.cat([v_shared, v_own], dim=2),
                             _suffix_mask(group.shared_len, valid), is_causal=False, **kwargs)
        outputs.append(suffix_out[valid])
        positions.append(index[valid])
    order = torch.empty(query.shape[2], dtype=torch.long, device=device)
    order[torch.cat(positions)] = torch.arange(query.shape[2], device=device)
    layout.attention_calls += 1
    return torch.cat(outputs).index_select(0, order).unsqueeze(0), None


def install_grouped_attention() -> None:
    """Wrap transformers' ``sdpa`` attention so that calls carrying a packed layout are grouped (idempotent)."""
    base = ALL_ATTENTION_FUNCTIONS[SUPPORTED_ATTENTION]
    if getattr(base, "rpo_shared_prefix_wrapper", False):
        return

    def sdpa_or_grouped(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        layout = kwargs.pop(SHARED_PREFIX_KWARG, None)
        if layout is None:
            return base(module, query, key, value, attention_mask, **kwargs)
        return grouped_attention(base, module, query, key, value, layout, **kwargs)

    sdpa_or_grouped.rpo_shared_prefix_wrapper = True  # type: ignore[attr-defined]
    AttentionInterface.register(SUPPORTED_ATTENTION, sdpa_or_grouped)
