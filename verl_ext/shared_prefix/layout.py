"""Pack the rows of one micro-batch so that each group's shared part is computed once.

The rows of an RPO group carry the same prompt and cached prefix token for token; only their suffixes differ. A
packed sequence holds, per group, the shared part once followed by each row's suffix:
``[shared | suffix_1 | suffix_2 | ... ]``. With attention restricted so that a suffix sees the shared part and its
own earlier tokens (``attention.py``) and each suffix's position ids continuing from the shared part's length (they
are the row's own position ids), every logit a row needs sits at one packed position, and the row's log-probs are
gathered from there (:func:`gather_row_logprobs`).

Torch only: importable and checkable on a machine without verl (``scripts/check_shared_prefix.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch


class SharedPrefixMismatch(ValueError):
    """Rows declared as one group do not share their declared prefix: packing them would silently change the
    result, so the pass stops instead."""


@dataclass(frozen=True)
class GroupSegments:
    """Where one group sits in the packed sequence."""

    start: int
    """Packed index of the shared part's first token."""
    shared_len: int
    suffix_starts: tuple[int, ...]
    """Packed index of each member row's first suffix token (rows in micro-batch order)."""
    suffix_lens: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.start + self.shared_len + sum(self.suffix_lens)


class PackedGroups:
    """One micro-batch packed by group, plus the map back to the rows' token layout.

    A plain class on purpose: FSDP2 rebuilds dataclasses found in forward kwargs when it moves them to the device,
    and the attention must count its calls on the object the engine holds."""

    def __init__(self, input_ids: torch.Tensor, position_ids: torch.Tensor, groups: list[GroupSegments],
                 token_index: torch.Tensor, row_lengths: torch.Tensor) -> None:
        self.input_ids = input_ids
        """(N,) the packed tokens."""
        self.position_ids = position_ids
        """(N,) each packed token's position in its row."""
        self.groups = groups
        self.token_index = token_index
        """(T,) for each token of the rows, concatenated in row order (verl's no-padding layout), the packed index
        of the same token."""
        self.row_lengths = row_lengths
        """(B,) tokens per row."""
        self.attention_calls = 0
        """Incremented by the grouped attention; a forward that never reached it did not use this layout."""
        self.plans: dict[tuple[str, str], Any] = {}
        """Per attention kind and device, the indices and masks its calls need: built by the first layer, reused
        by the others (``attention.py``, ``varlen.py``)."""

    @property
    def packed_tokens(self) -> int:
        return int(self.input_ids.numel())

    @property
    def row_tokens(self) -> int:
        return int(self.token_index.numel())


def _group_members(group_ids: torch.Tensor) -> list[list[int]]:
    """Row indices of each group, groups in order of first appearance (rows of a group need not be adjacent)."""
    members: dict[int, list[int]] = {}
    for row, gid in enumerate(group_ids.tolist()):
        members.setdefault(int(gid), []).append(row)
    return list(members.values())


def _check_group(rows: list[int], tokens: list[torch.Tensor], positions: list[torch.Tensor],
                 shared_lens: list[int], group_id: int) -> int:
    shared = shared_lens[rows[0]]
    first = rows[0]
    for row in rows:
        if shared_lens[row] != shared:
            raise SharedPrefixMismatch(
                f"shared prefix: rows {first} and {row} of group {group_id} declare shared parts of "
                f"{shared} and {shared_lens[row]} tokens"
            )
        if not 0 < shared <= tokens[row].numel():
            raise SharedPrefixMismatch(
                f"shared prefix: row {row} of group {group_id} declares a shared part of {shared} tokens but has "
                f"{tokens[row].numel()} tokens (expected 1 <= shared part <= row length)"
            )
        if row == first:
            continue
        differs = (tokens[row][:shared] != tokens[first][:shared]).nonzero()
        if differs.numel():
            raise SharedPrefixMismatch(
                f"shared prefix: rows {first} and {row} of group {group_id} differ at token {int(differs[0])} of "
                f"their declared {shared}-token shared part; they cannot be computed as one group"
            )
        if not torch.equal(positions[row][:shared], positions[first][:shared]):
            raise SharedPrefixMismatch(
                f"shared prefix: rows {first} and {row} of group {group_id} have different position ids in their "
                f"shared part"
            )
    return shared


def pack_rows(row_tokens: list[torch.Tensor], row_positions: list[torch.Tensor], shared_lens: torch.Tensor,
              group_ids: torch.Tensor) -> PackedGroups:
    """Pack rows (each a 1-D token tensor with its 1-D position ids) by group.

    ``shared_lens[i]`` is how many leading tokens row ``i`` shares with the other rows of group ``group_ids[i]``.
    Every row of a group must declare the same length and hold the same tokens there, or
    :class:`SharedPrefixMismatch` is raised naming the rows."""
    lengths = [int(t.numel()) for t in row_tokens]
    declared = [int(n) for n in shared_lens.tolist()]
    pieces_ids: list[torch.Tensor] = []
    pieces_pos: list[torch.Tensor] = []
    groups: list[GroupSegments] = []
    row_index: list[torch.Tensor | None] = [None] * len(row_tokens)
    cursor = 0
    for rows in _group_members(group_ids):
        shared = _check_group(rows, row_tokens, row_positions, declared, int(group_ids[rows[0]]))
        start = cursor
        pieces_ids.append(row_tokens[rows[0]][:shared])
        pieces_pos.append(row_positions[rows[0]][:shared])
        shared_index = torch.arange(start, start + shared)
        cursor += shared
        starts, lens = [], []
        for row in rows:
            suffix_len = lengths[row] - shared
            pieces_ids.append(row_tokens[row][shared:])
            pieces_pos.append(row_positions[row][shared:])
            row_index[row] = torch.cat([shared_index, torch.arange(cursor, cursor + suffix_len)])
            starts.append(cursor)
            lens.append(suffix_len)
            cursor += suffix_len
        groups.append(GroupSegments(start=start, shared_len=shared, suffix_starts=tuple(starts),
                                    suffix_lens=tuple(lens)))
    device = row_tokens[0].device
    return PackedGroups(
        input_ids=torch.cat(pieces_ids),
        position_ids=torch.cat(pieces_pos),
        groups=groups,
        token_index=torch.cat(row_index).to(device),
        row_lengths=torch.tensor(lengths, device=device),
    )


LogprobFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gather_row_logprobs(packed_logits: torch.Tensor, row_labels: torch.Tensor, token_index: torch.Tensor,
                        logprob_fn: LogprobFn) -> torch.Tensor:
    """Per row token, the log-prob of its label under the logits at its packed position.

    ``logprob_fn(logits (n, V), labels (n,)) -> (n,)`` is the caller's implementation (verl's
    ``logprobs_from_logits`` in the engine). Each packed position is evaluated once with the label of one of its
    row tokens; only positions whose row tokens want different labels (the shared part's last token, whose next
    token is each row's first suffix token) are evaluated again, one row per extra label. Gradients from all rows
    that share a position add up there, as they would across the unpacked rows."""
    primary = torch.empty(packed_logits.shape[0], dtype=row_labels.dtype, device=row_labels.device)
    primary[token_index] = row_labels
    primary_lp = logprob_fn(packed_logits, primary)
    out = primary_lp.index_select(0, token_index)
    extra = (primary.index_select(0, token_index) != row_labels).nonzero().squeeze(-1)
    if extra.numel():
        extra_lp = logprob_fn(packed_logits.index_select(0, token_index[extra]), row_labels[extra])
        out = out.index_put((extra,), extra_lp)
    return out


def gather_row_values(packed_values: torch.Tensor, token_index: torch.Tensor) -> torch.Tensor:
    """A per-position quantity (entropy, sum of squared probabilities) in the rows' token layout."""
    return packed_values.index_select(0, token_index)
