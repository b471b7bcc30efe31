"""Deal a training batch's rows to the data-parallel ranks so that each group's shared part is computed on one rank.

verl's dispatch hands every rank an equal, contiguous chunk of the batch's rows, so the trainer orders the rows
before dispatch (``RayPPOTrainer._balance_batch``). verl's group-keeping order (``use_prefix_grouper``) needs the
number of groups to be a multiple of the number of ranks: 84 groups of 16 on 8 ranks (the reproduction scripts) is
refused. This order accepts any batch whose row count the ranks divide:

1. whole groups first: largest packed cost first, each to the least loaded rank that still has room for all its
   rows (with groups of equal size every rank ends with ``rows_per_rank // G`` whole groups);
2. the groups left over fill the remaining room, a group going whole to the rank whose room fits it best, or else
   filling the rank with the most room and going on with its other rows: only these groups are split, each part is
   packed on its own rank and stays exact (``layout.pack_rows`` packs whatever rows of a group a micro-batch holds).

A group's cost is its packed tokens: the shared part once plus every row's own tokens after it. Within a rank the
whole groups come first and contiguous, then the parts of split groups, so that fixed-size micro-batches (verl's
contiguous chunks) cut as few groups as their size allows.

:func:`rank_balancing` names the balancing a configuration gets; the trainer runs it and the start-up topology
check (``verl_ext/training/topology.py``) dry-runs the same choice at the first step's shape, without verl or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from omegaconf import OmegaConf

GROUPS_ANY_COUNT = "groups_any_count"
"""This module's balancing (``rpo.shared_prefix=true``): any batch whose rows the ranks divide."""
VERL_GROUPS = "verl_groups"
"""verl's group balancing (``actor_rollout_ref.actor.use_prefix_grouper=true``): groups % ranks must be 0."""
VERL_ROWS = "verl_rows"
"""verl's row balancing: rows by workload, groups ignored."""


def rank_balancing(config: Any, shared_prefix: Optional[bool] = None) -> str:
    """Which balancing ``RayRPOTrainer._balance_batch`` runs for ``config`` (one of the three names above);
    ``shared_prefix`` overrides ``rpo.shared_prefix`` (a step whose settings differ from the run's)."""
    if shared_prefix is None:
        shared_prefix = bool(OmegaConf.select(config, "rpo.shared_prefix", default=False))
    if shared_prefix:
        return GROUPS_ANY_COUNT
    if bool(OmegaConf.select(config, "actor_rollout_ref.actor.use_prefix_grouper", default=False)):
        return VERL_GROUPS
    return VERL_ROWS


@dataclass(frozen=True)
class RankAssignment:
    """Which rows each rank gets, in the order the rank gets them."""

    partitions: list[list[int]]
    """Per rank, row indices; every rank holds the same number of rows."""
    split_groups: int
    """Groups whose rows are on more than one rank."""
    rank_costs: list[int]
    """Per rank, packed tokens of its rows (each group or group part's shared part counted once)."""

    @property
    def order(self) -> list[int]:
        """Row indices, rank 0's rows first: the reorder that makes verl's equal chunks these partitions."""
        return [row for partition in self.partitions for row in partition]


def group_members(group_ids: Sequence) -> list[list[int]]:
    """Row indices of each group, groups in order of first appearance (rows of a group need not be adjacent)."""
    members: dict = {}
    for row, gid in enumerate(group_ids):
        members.setdefault(gid, []).append(row)
    return list(members.values())


def packed_cost(rows: Sequence[int], row_lens: Sequence[int], shared_lens: Sequence[int]) -> int:
    """Tokens of ``rows`` (one group's) packed: their shared part once, then each row's tokens after it."""
    if not rows:
        return 0
    return int(shared_lens[rows[0]]) + sum(int(row_lens[row]) - int(shared_lens[row]) for row in rows)


def assign_groups_to_ranks(group_ids: Sequence, row_lens: Sequence[int], shared_lens: Sequence[int],
                           ranks: int) -> RankAssignment:
    """Equal row counts per rank, whole groups where they fit, balanced by packed cost (module docstring)."""
    total = len(group_ids)
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    if total % ranks:
        raise ValueError(
            f"{total} rows cannot be dealt equally to {ranks} data-parallel ranks (verl's dispatch splits a batch "
            f"into equal chunks): data.train_batch_size x actor_rollout_ref.rollout.n must be a multiple of the "
            f"rank count"
        )
    if not len(row_lens) == len(shared_lens) == total:
        raise ValueError(f"{total} group ids, {len(row_lens)} row lengths and {len(shared_lens)} shared lengths")
    capacity = total // ranks
    free = [capacity] * ranks
    load = [0] * ranks
    whole: list[list[int]] = [[] for _ in range(ranks)]
    parts: list[list[int]] = [[] for _ in range(ranks)]
    groups = group_members(group_ids)
    by_cost = sorted(groups, key=lambda rows: (-packed_cost(rows, row_lens, shared_lens), rows[0]))
    leftover: list[list[int]] = []
    for rows in by_cost:
        fitting = [rank for rank in range(ranks) if free[rank] >= len(rows)]
        if not fitting:
            leftover.append(rows)
            continue
        rank = min(fitting, key=lambda r: (load[r], r))
        whole[rank].extend(rows)
        free[rank] -= len(rows)
        load[rank] += packed_cost(rows, row_lens, shared_lens)

    split = 0
    for rows in sorted(leftover, key=lambda rows: (-len(rows), rows[0])):
        remaining = list(rows)
        pieces = 0
        while remaining:
            fitting = [rank for rank in range(ranks) if free[rank] >= len(remaining)]
            if fitting:
                rank = min(fitting, key=lambda r: (free[r], load[r], r))
                take = len(remaining)
            else:
                rank = max(range(ranks), key=lambda r: (free[r], -load[r], -r))
                take = free[rank]
            piece, remaining = remaining[:take], remaining[take:]
            parts[rank].extend(piece)
            free[rank] -= take
            load[rank] += packed_cost(piece, row_lens, shared_lens)
            pieces += 1
        split += pieces > 1
    return RankAssignment(partitions=[whole[rank] + parts[rank] for rank in range(ranks)], split_groups=split,
                          rank_costs=load)
