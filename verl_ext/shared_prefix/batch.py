"""Trainer side of ``rpo.shared_prefix``: the per-row columns the engine packs by, and the start-up checks.

The shared part of a row is its unpadded prompt plus, for an RPO row, the cached prefix (``rpo_prefix_len``; rows
of a full-path group share the prompt only). Rows are grouped by ``uid``. The engine verifies every declared shared
part token for token before it packs a group (``layout.pack_rows``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from verl import DataProto

from verl_ext.rollout.agent_loop import OUT_PREFIX_LEN
from verl_ext.shared_prefix.attention import supported_attention
from verl_ext.shared_prefix.engine import GROUP_KEY, SHARED_LEN_KEY
from verl_ext.shared_prefix.rank_balance import group_members, packed_cost


def shared_part_lengths(batch: DataProto) -> torch.Tensor:
    """(B,) leading tokens of each row's unpadded prompt + response that its group shares."""
    prompt_width = batch.batch["prompts"].shape[1]
    prompt_lens = batch.batch["attention_mask"][:, :prompt_width].sum(-1).to(torch.long)
    prefix = batch.non_tensor_batch.get(OUT_PREFIX_LEN, np.zeros(len(batch), dtype=np.int64))
    return prompt_lens + torch.as_tensor(np.asarray(prefix, dtype=np.int64))


def whole_group_packed_frac(batch: DataProto) -> float:
    """Packed over row tokens if every group were packed whole (no micro-batch or rank cutting one apart): the best
    the shared-prefix passes can do on this batch, ``(P + G*S) / (G*(P + S))`` for G equal rows. Read from the
    columns :func:`add_shared_prefix_columns` added, so it is what the passes will pack, whatever the grouping."""
    row_lens = batch.batch["attention_mask"].sum(-1).tolist()
    shared = batch.batch[SHARED_LEN_KEY].tolist()
    packed = sum(packed_cost(rows, row_lens, shared) for rows in group_members(batch.batch[GROUP_KEY].tolist()))
    return packed / max(sum(row_lens), 1)


def add_shared_prefix_columns(batch: DataProto, whole_rows: bool = False) -> None:
    """Add :data:`SHARED_LEN_KEY` and :data:`GROUP_KEY`; every training pass of the batch then packs by group.

    ``whole_rows``: each row its own group whose shared part is the whole row, so nothing is shared and the packed
    pass runs one causal attention per row with no mask and no padding: the fastest exact attention for whole rows
    where the model's attention is sdpa (the rollout benchmark's ``full_rows`` denominator)."""
    if whole_rows:
        batch.batch[SHARED_LEN_KEY] = batch.batch["attention_mask"].sum(-1).to(torch.long)
        batch.batch[GROUP_KEY] = torch.arange(len(batch), dtype=torch.long)
        return
    _, group_index = np.unique(np.asarray(batch.non_tensor_batch["uid"]), return_inverse=True)
    batch.batch[SHARED_LEN_KEY] = shared_part_lengths(batch)
    batch.batch[GROUP_KEY] = torch.as_tensor(group_index.reshape(-1), dtype=torch.long)


def check_shared_prefix_supported(config: Any) -> None:
    """Refuse, at start-up and naming the option, the settings the shared-prefix passes do not support."""
    model = config.actor_rollout_ref.model
    attention = (model.get("override_config") or {}).get("attn_implementation", "flash_attention_2")
    refusals = {
        f"actor_rollout_ref.model.override_config.attn_implementation={attention} (supported: "
        f"{', '.join(supported_attention())})": attention not in supported_attention(),
        "actor_rollout_ref.model.use_fused_kernels=true": bool(model.get("use_fused_kernels", False)),
    }
    for role in ("actor", "ref"):
        sp_size = int(config.actor_rollout_ref[role].get("ulysses_sequence_parallel_size", 1) or 1)
        refusals[f"actor_rollout_ref.{role}.ulysses_sequence_parallel_size={sp_size}"] = sp_size > 1
    for setting, refused in refusals.items():
        if refused:
            raise ValueError(f"rpo.shared_prefix=true does not support {setting}; set it or rpo.shared_prefix=false")
