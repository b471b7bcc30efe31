"""The torch-only core of ``rpo.shared_prefix``: packing, the grouped attention and the log-prob gather."""

from __future__ import annotations

import pytest
import torch

from verl_ext.experiments.shared_prefix_check import TINY_MODELS, GroupSpec, run_check, tiny_model
from verl_ext.shared_prefix.layout import SharedPrefixMismatch, gather_row_logprobs, pack_rows
from verl_ext.shared_prefix.support import SUPPORTED_MODEL_TYPES, model_refusals


def _rows():
    shared = torch.tensor([5, 6, 7])
    return [torch.cat([shared, torch.tensor([8, 9])]), torch.tensor([1, 2]), torch.cat([shared, torch.tensor([4])])]


def test_shared_prefix_pack_rows_stores_each_shared_part_once_and_maps_every_row_token_back():
    rows = _rows()
    layout = pack_rows(rows, [torch.arange(r.numel()) for r in rows], torch.tensor([3, 1, 3]), torch.tensor([0, 1, 0]))
    # Group 0 (rows 0 and 2, not adjacent): shared [5 6 7], suffixes [8 9] and [4]; group 1: shared [1], suffix [2].
    assert layout.input_ids.tolist() == [5, 6, 7, 8, 9, 4, 1, 2]
    assert layout.position_ids.tolist() == [0, 1, 2, 3, 4, 3, 0, 1]
    assert torch.equal(layout.input_ids[layout.token_index], torch.cat(rows))


@pytest.mark.parametrize(("shared", "groups", "match"), [
    ([3, 1, 2], [0, 1, 0], "declare shared parts of 3 and 2"),
    ([2, 2, 3], [0, 0, 1], "rows 0 and 1 of group 0 differ at token 0"),
    ([6, 1, 3], [0, 1, 0], "expected 1 <= shared part <= row length"),
])
def test_shared_prefix_pack_rows_refuses_rows_that_do_not_share_what_they_declare(shared, groups, match):
    rows = _rows()
    with pytest.raises(SharedPrefixMismatch, match=match):
        pack_rows(rows, [torch.arange(r.numel()) for r in rows], torch.tensor(shared), torch.tensor(groups))


def test_shared_prefix_gather_gives_each_row_its_own_next_token_at_the_shared_parts_last_position():
    logits = torch.randn(4, 10)
    # Two rows share positions 0-1; their next tokens after position 1 differ (3 and 7).
    token_index = torch.tensor([0, 1, 2, 0, 1, 3])
    labels = torch.tensor([4, 3, 9, 4, 7, 2])
    logprob = lambda lg, lab: torch.log_softmax(lg, -1).gather(-1, lab[:, None])[:, 0]  # noqa: E731
    expected = logprob(logits[token_index], labels)
    assert torch.allclose(gather_row_logprobs(logits, labels, token_index, logprob), expected)


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_shared_prefix_grouped_attention_matches_per_row_forward_and_backward(model):
    """Every family the passes accept (support.SUPPORTED_MODEL_TYPES), token for token and gradient for gradient."""
    result = run_check(model, "cpu", groups=(GroupSpec(30, (1, 6, 11, 2)), GroupSpec(9, (14, 1))))
    assert result.packed_tokens < result.row_tokens
    assert result.logprob_max_abs < 1e-5 and result.entropy_max_abs < 1e-5 and result.grad_max_rel < 1e-5, result
    assert result.attention_calls == result.attention_layers == 2


def test_every_accepted_family_has_an_exactness_check():
    assert set(TINY_MODELS) == set(SUPPORTED_MODEL_TYPES)


def test_a_hybrid_model_is_refused_and_would_be_wrong():
    """Qwen3-Next mixes tokens in linear-attention layers: packed, one suffix sees another through their state. The
    refusal is not only an allow-list: its packed forward reaches the grouped attention in one of its two layers,
    which the engine's per-forward count rejects, and its gradients differ."""
    result = run_check("qwen3_next", "cpu", groups=(GroupSpec(30, (1, 6, 11, 2)), GroupSpec(9, (14, 1))))
    assert result.attention_calls == 1 and result.attention_layers == 2
    assert result.grad_max_rel > 1e-2, result
    reasons = model_refusals(tiny_model("qwen3_next").config)
    assert any("model_type='qwen3_next'" in r for r in reasons)
    assert any("layer_types ['full_attention', 'linear_attention']" in r for r in reasons)


def test_shared_prefix_attention_is_not_used_without_the_layout():
    """Installing the wrapper leaves every other sdpa call as it was."""
    from verl_ext.shared_prefix.attention import install_grouped_attention

    model = TINY_MODELS["qwen2"]()
    ids = torch.randint(2, 90, (2, 12))
    before = model(input_ids=ids).logits
    install_grouped_attention()
    assert torch.equal(model(input_ids=ids).logits, before)
