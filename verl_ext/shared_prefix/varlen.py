"""Grouped attention over a packed micro-batch through a variable-length kernel: flash-attention's
``flash_attn_varlen_func`` on a GPU, or :func:`reference_varlen_attention`, a pure-torch kernel with its semantics.

The layout (``layout.PackedGroups``) needs no mask and no padding in the varlen form, two kernel calls per layer:

1. every group's shared part as one causal sequence (``cu_seqlens`` over the shared parts);
2. every row's suffix queries against that row's own keys, its group's shared K/V followed by its suffix K/V, with
   ``causal=True``: flash-attention aligns a causal mask with fewer queries than keys to the bottom-right corner,
   so suffix token ``i`` sees the whole shared part and suffix tokens ``0..i``, the mask a suffix needs.

The shared K/V are gathered once per row in call 2 (memory: G copies of the shared K/V of one layer, transient);
queries are never repeated. Every index and ``cu_seqlens`` tensor is built once per micro-batch and device
(:func:`varlen_plan`, cached on the layout); per layer only the two kernel calls and the gathers run.

Torch only: importable on a machine without verl or flash-attn; the flash kernel is imported when first used.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from verl_ext.shared_prefix.layout import PackedGroups

VarlenKernel = Callable[..., torch.Tensor]
"""``kernel(q (Nq, H, d), k (Nk, H_kv, d), v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
dropout_p=..., softmax_scale=..., causal=...) -> (Nq, H, d)``: ``flash_attn_varlen_func``'s signature."""


def reference_varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                               cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int,
                               dropout_p: float = 0.0, softmax_scale: Optional[float] = None,
                               causal: bool = False) -> torch.Tensor:
    """``flash_attn_varlen_func``'s semantics in plain torch, one sequence at a time: sequence ``b`` is queries
    ``cu_seqlens_q[b]:cu_seqlens_q[b+1]`` against keys ``cu_seqlens_k[b]:cu_seqlens_k[b+1]``; query head ``h``
    reads key/value head ``h // (H / H_kv)`` (grouped-query attention); with ``causal`` query ``i`` of a sequence
    of ``s_q`` queries and ``s_k`` keys sees keys ``j <= i + s_k - s_q`` (bottom-right alignment), and a query that
    sees no key returns zeros. Softmax in float32."""
    del max_seqlen_q, max_seqlen_k  # sizes for the GPU kernel's launch; here each sequence has its own
    if dropout_p:
        raise ValueError("reference_varlen_attention: dropout is not supported")
    heads, kv_heads, dim = q.shape[1], k.shape[1], q.shape[2]
    if heads % kv_heads:
        raise ValueError(f"reference_varlen_attention: {heads} query heads over {kv_heads} key/value heads")
    scale = softmax_scale if softmax_scale is not None else dim**-0.5
    starts_q, starts_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    outputs = []
    for b in range(len(starts_q) - 1):
        qb = q[starts_q[b]:starts_q[b + 1]].transpose(0, 1).float()
        kb = k[starts_k[b]:starts_k[b + 1]].repeat_interleave(heads // kv_heads, dim=1).transpose(0, 1).float()
        vb = v[starts_k[b]:starts_k[b + 1]].repeat_interleave(heads // kv_heads, dim=1).transpose(0, 1).float()
        scores = torch.matmul(qb, kb.transpose(1, 2)) * scale
        s_q, s_k = qb.shape[1], kb.shape[1]
        if causal:
            allowed = torch.ones(s_q, s_k, dtype=torch.bool, device=q.device).tril(diagonal=s_k - s_q)
            scores = scores.masked_fill(~allowed, float("-inf"))
            weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # rows that see no key: zeros, as flash
        else:
            weights = torch.softmax(scores, dim=-1)
        outputs.append(torch.matmul(weights, vb).transpose(0, 1).to(q.dtype))
    return torch.cat(outputs) if outputs else q.new_zeros(q.shape)


FLASH_ATTN_MIN_VERSION = "2.1.0"
"""flash-attn aligns a causal mask with fewer queries than keys to the bottom-right corner from 2.1 on; before, to
the top-left, which would let a suffix query see the wrong keys without any error."""


@functools.cache
def flash_attn_varlen_kernel() -> VarlenKernel:
    """flash-attention's ``flash_attn_varlen_func`` (CUDA only), with a clear error where it is missing or too old.

    Like transformers' own flash-attention function, float32 inputs (e.g. float32 norms before the projections) are
    cast to bfloat16 for the kernel, the kernel's only other dtype beside float16, and the output cast back."""
    try:
        import flash_attn
        from flash_attn import flash_attn_varlen_func
    except ImportError as error:
        raise ImportError(
            "rpo.shared_prefix with attn_implementation=flash_attention_2 needs the flash-attn package on a CUDA "
            f"machine ({error}); use attn_implementation=sdpa, or the reference kernel to check the layout on CPU"
        ) from None
    from packaging.version import Version

    if Version(flash_attn.__version__) < Version(FLASH_ATTN_MIN_VERSION):
        raise ImportError(f"rpo.shared_prefix needs flash-attn >= {FLASH_ATTN_MIN_VERSION} (bottom-right causal "
                          f"alignment), found {flash_attn.__version__}")

    def kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if q.dtype in (torch.float16, torch.bfloat16):
            return flash_attn_varlen_func(q, k, v, *args, **kwargs)
        low = (tensor.to(torch.bfloat16) for tensor in (q, k, v))
        return flash_attn_varlen_func(*low, *args, **kwargs).to(q.dtype)

    return kernel


@dataclass(frozen=True)
class VarlenPlan:
    """Indices and ``cu_seqlens`` of the two kernel calls for one packed micro-batch (module docstring)."""

    shared_index: torch.Tensor
    """Packed positions of every group's shared part, group after group."""
    cu_shared: torch.Tensor
    max_shared: int
    suffix_index: torch.Tensor
    """Packed positions of every suffix token, row after row: the queries of call 2."""
    cu_suffix_q: torch.Tensor
    max_suffix_q: int
    suffix_kv_index: torch.Tensor
    """Per row with a suffix, its group's shared positions then its own suffix positions: the keys of call 2."""
    cu_suffix_k: torch.Tensor
    max_suffix_k: int
    order: torch.Tensor
    """Where each packed position's output sits in ``cat(shared outputs, suffix outputs)``."""


def _cumulative(lengths: list[int], device: torch.device) -> torch.Tensor:
    return torch.tensor([0, *lengths], dtype=torch.int32, device=device).cumsum(0, dtype=torch.int32)


def varlen_plan(layout: PackedGroups, device: torch.device) -> VarlenPlan:
    """The :class:`VarlenPlan` of ``layout`` on ``device``, built on the first layer's call and kept on the layout."""
    key = ("varlen", str(device))
    if key not in layout.plans:
        layout.plans[key] = _build_varlen_plan(layout, device)
    return layout.plans[key]


def _build_varlen_plan(layout: PackedGroups, device: torch.device) -> VarlenPlan:
    shared, suffix, suffix_kv = [], [], []
    shared_lens, suffix_q_lens, suffix_k_lens = [], [], []
    for group in layout.groups:
        group_shared = torch.arange(group.start, group.start + group.shared_len)
        shared.append(group_shared)
        shared_lens.append(group.shared_len)
        for start, length in zip(group.suffix_starts, group.suffix_lens, strict=True):
            if not length:
                continue
            own = torch.arange(start, start + length)
            suffix.append(own)
            suffix_kv.append(torch.cat([group_shared, own]))
            suffix_q_lens.append(length)
            suffix_k_lens.append(group.shared_len + length)
    shared_index = torch.cat(shared)
    suffix_index = torch.cat(suffix) if suffix else torch.zeros(0, dtype=torch.long)
    order = torch.empty(layout.packed_tokens, dtype=torch.long)
    order[torch.cat([shared_index, suffix_index])] = torch.arange(layout.packed_tokens)
    return VarlenPlan(
        shared_index=shared_index.to(device),
        cu_shared=_cumulative(shared_lens, device),
        max_shared=max(shared_lens),
        suffix_index=suffix_index.to(device),
        cu_suffix_q=_cumulative(suffix_q_lens, device),
        max_suffix_q=max(suffix_q_lens, default=0),
        suffix_kv_index=(torch.cat(suffix_kv) if suffix_kv else torch.zeros(0, dtype=torch.long)).to(device),
        cu_suffix_k=_cumulative(suffix_k_lens, device),
        max_suffix_k=max(suffix_k_lens, default=0),
        order=order.to(device),
    )


def grouped_varlen_attention(kernel: VarlenKernel, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             layout: PackedGroups, **kwargs: Any) -> torch.Tensor:
    """Attention of one packed sequence (query (1, H, N, d), key/value (1, H_kv, N, d)) through ``kernel``.

    Returns (1, N, H, d), the layout transformers' attention functions return."""
    if kwargs.get("softcap") is not None:
        raise ValueError("shared prefix: attention logit soft-capping is not supported")
    plan = varlen_plan(layout, query.device)
    q, k, v = (tensor[0].transpose(0, 1) for tensor in (query, key, value))  # (N, heads, d)
    scale = kwargs.get("scaling")
    shared_out = kernel(q[plan.shared_index], k[plan.shared_index], v[plan.shared_index], plan.cu_shared,
                        plan.cu_shared, plan.max_shared, plan.max_shared, dropout_p=0.0, softmax_scale=scale,
                        causal=True)
    outputs = [shared_out]
    if plan.suffix_index.numel():
        outputs.append(kernel(q[plan.suffix_index], k[plan.suffix_kv_index], v[plan.suffix_kv_index],
                              plan.cu_suffix_q, plan.cu_suffix_k, plan.max_suffix_q, plan.max_suffix_k,
                              dropout_p=0.0, softmax_scale=scale, causal=True))
    return torch.cat(outputs).index_select(0, plan.order).unsqueeze(0)
