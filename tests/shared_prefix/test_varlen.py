"""The flash-attention layout of the shared-prefix passes, on CPU: the pure-torch varlen kernel against a dense
masked attention (so the reference cannot share a mistake with the layout), then the layout through that kernel
against per-row forward and backward passes of every supported family."""

from __future__ import annotations

import sys

import pytest
import torch

from verl_ext.experiments.shared_prefix_check import TINY_MODELS, GroupSpec, rpo_rows, run_check, tiny_model
from verl_ext.shared_prefix import attention, varlen
from verl_ext.shared_prefix.attention import SHARED_PREFIX_KWARG, VARLEN_REFERENCE, install_grouped_attention
from verl_ext.shared_prefix.layout import pack_rows
from verl_ext.shared_prefix.varlen import reference_varlen_attention, varlen_plan

GROUPS = (GroupSpec(30, (1, 6, 11, 2)), GroupSpec(9, (14, 1)))


def _dense(q, k, v, lens_q, lens_k, causal, scale, bottom_right=True):
    """One masked attention over all sequences at once in float64: a block-diagonal mask, causal inside a block."""
    heads, kv_heads = q.shape[1], k.shape[1]
    mask = torch.zeros(q.shape[0], k.shape[0], dtype=torch.bool)
    row = col = 0
    for s_q, s_k in zip(lens_q, lens_k, strict=True):
        block = torch.ones(s_q, s_k, dtype=torch.bool)
        if causal:
            block = block.tril(diagonal=s_k - s_q if bottom_right else 0)
        mask[row:row + s_q, col:col + s_k] = block
        row, col = row + s_q, col + s_k
    kk = k.double().repeat_interleave(heads // kv_heads, dim=1).transpose(0, 1)
    vv = v.double().repeat_interleave(heads // kv_heads, dim=1).transpose(0, 1)
    scores = (q.double().transpose(0, 1) @ kk.transpose(1, 2) * scale).masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, -1).nan_to_num(0.0) @ vv).transpose(0, 1)


@pytest.mark.parametrize("causal", [True, False])
def test_flash_reference_kernel_matches_a_dense_masked_attention(causal):
    gen = torch.Generator().manual_seed(0)
    # Fewer queries than keys (suffixes), as many (shared parts), more (with causal, some queries see no key: zeros).
    lens_q, lens_k = [5, 1, 7, 3, 4], [12, 1, 7, 20, 2]
    q = torch.randn(sum(lens_q), 4, 8, generator=gen)
    k, v = (torch.randn(sum(lens_k), 2, 8, generator=gen) for _ in range(2))
    cu = lambda lens: torch.tensor([0, *lens]).cumsum(0).to(torch.int32)  # noqa: E731
    out = reference_varlen_attention(q, k, v, cu(lens_q), cu(lens_k), max(lens_q), max(lens_k), softmax_scale=0.3,
                                     causal=causal)
    expected = _dense(q, k, v, lens_q, lens_k, causal, 0.3)
    assert torch.allclose(out.double(), expected, atol=1e-6)
    if causal:  # the alignment matters: a top-left causal mask gives other outputs for the suffix-shaped sequences
        top_left = _dense(q, k, v, lens_q, lens_k, causal, 0.3, bottom_right=False)
        assert (out.double() - top_left).abs().max() > 1e-2


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_flash_layout_through_the_reference_kernel_matches_per_row_forward_and_backward(model):
    result = run_check(model, "cpu", groups=GROUPS, attn_implementation=VARLEN_REFERENCE)
    assert result.packed_tokens < result.row_tokens
    assert result.logprob_max_abs < 1e-5 and result.entropy_max_abs < 1e-5 and result.grad_max_rel < 1e-5, result
    assert result.attention_calls == result.attention_layers == 2


def test_flash_varlen_plan_holds_each_rows_shared_keys_then_its_own():
    rows = [torch.tensor([5, 6, 7, 8, 9]), torch.tensor([1, 2]), torch.tensor([5, 6, 7, 4])]
    layout = pack_rows(rows, [torch.arange(r.numel()) for r in rows], torch.tensor([3, 2, 3]), torch.tensor([0, 1, 0]))
    # packed: [5 6 7 | 8 9 | 4 | 1 2]: group 0 shared 0-2, suffixes 3-4 and 5; group 1 shared 6-7, no suffix.
    plan = varlen_plan(layout, torch.device("cpu"))
    assert plan.shared_index.tolist() == [0, 1, 2, 6, 7] and plan.cu_shared.tolist() == [0, 3, 5]
    assert plan.suffix_index.tolist() == [3, 4, 5] and plan.cu_suffix_q.tolist() == [0, 2, 3]
    assert plan.suffix_kv_index.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 5] and plan.cu_suffix_k.tolist() == [0, 5, 9]
    assert (plan.max_shared, plan.max_suffix_q, plan.max_suffix_k) == (3, 2, 5)
    assert torch.equal(torch.cat([plan.shared_index, plan.suffix_index])[plan.order], torch.arange(8))


@pytest.mark.parametrize(("implementation", "module", "builder"), [
    ("sdpa", attention, "_sdpa_group_plan"),  # one plan per group
    (VARLEN_REFERENCE, varlen, "_build_varlen_plan"),  # one plan per micro-batch
])
def test_flash_and_sdpa_layouts_are_built_once_per_micro_batch_not_per_layer(implementation, module, builder,
                                                                            monkeypatch):
    builds = []
    original = getattr(module, builder)
    monkeypatch.setattr(module, builder, lambda *args: builds.append(1) or original(*args))
    install_grouped_attention(implementation)
    model = tiny_model("qwen2", implementation)
    rows, shared, group_ids = rpo_rows(GROUPS, torch.Generator().manual_seed(0))
    layout = pack_rows(rows, [torch.arange(r.numel()) for r in rows], torch.tensor(shared), torch.tensor(group_ids))
    model(input_ids=layout.input_ids[None], position_ids=layout.position_ids[None],
          attention_mask=torch.ones_like(layout.input_ids)[None], **{SHARED_PREFIX_KWARG: layout})
    assert layout.attention_calls == 2  # two layers, each reusing the plan the first built
    assert list(layout.plans) == [("sdpa" if implementation == "sdpa" else "varlen", "cpu")]
    assert len(builds) == (len(GROUPS) if implementation == "sdpa" else 1)


def test_flash_kernel_glue_refuses_flash_attn_before_2_1_and_casts_float32_to_bf16(monkeypatch):
    """The glue around flash-attn's kernel (the kernel needs CUDA): a version without bottom-right causal alignment
    is refused, float32 inputs reach the kernel as bf16 and come back as float32. A module object stands in for the
    flash_attn package, recording what the kernel received."""
    import types

    seen = []
    fake = types.ModuleType("flash_attn")
    fake.flash_attn_varlen_func = lambda q, k, v, *args, **kwargs: seen.append((q.dtype, kwargs)) or q * 2
    monkeypatch.setitem(sys.modules, "flash_attn", fake)
    for version, refused in (("2.0.9", True), ("2.6.3", False)):
        fake.__version__ = version
        varlen.flash_attn_varlen_kernel.cache_clear()
        if refused:
            with pytest.raises(ImportError, match="flash-attn >= 2.1.0 .* found 2.0.9"):
                varlen.flash_attn_varlen_kernel()
            continue
        kernel = varlen.flash_attn_varlen_kernel()
        q = torch.ones(3, 2, 4)
        out = kernel(q, q, q, None, None, 3, 3, causal=True)
        assert out.dtype == torch.float32 and torch.equal(out, q * 2)
        assert seen == [(torch.bfloat16, {"causal": True})]
        kernel(q.half(), q.half(), q.half(), None, None, 3, 3)
        assert seen[-1][0] == torch.float16
    varlen.flash_attn_varlen_kernel.cache_clear()
