"""Rows of the shared-prefix passes to data-parallel ranks (``verl_ext/shared_prefix/rank_balance.py``).
Pure Python, no verl."""

from __future__ import annotations

import pytest

from verl_ext.shared_prefix.rank_balance import assign_groups_to_ranks, group_members, packed_cost


def ranks_of_groups(assignment, group_ids) -> dict:
    where: dict = {}
    for rank, rows in enumerate(assignment.partitions):
        for row in rows:
            where.setdefault(group_ids[row], set()).add(rank)
    return where


@pytest.mark.parametrize(("groups", "group_size", "ranks"), [(84, 16, 8), (3, 2, 2), (3, 4, 2), (5, 8, 4), (4, 2, 2),
                                                             (252, 16, 8), (7, 3, 3)])
def test_rank_assignment_gives_equal_rows_and_splits_only_the_groups_that_cannot_fit_whole(
    groups, group_size, ranks, rpo_rows
):
    group_ids, row_lens, shared_lens = rpo_rows(groups, group_size)
    assignment = assign_groups_to_ranks(group_ids, row_lens, shared_lens, ranks)
    assert sorted(assignment.order) == list(range(len(group_ids)))
    assert {len(rows) for rows in assignment.partitions} == {len(group_ids) // ranks}
    # With groups of G, each rank holds rows_per_rank // G whole groups; every other group must be cut.
    per_rank = len(group_ids) // ranks
    expected_split = 0 if per_rank % group_size == 0 else groups - ranks * (per_rank // group_size)
    assert assignment.split_groups == expected_split
    spread = ranks_of_groups(assignment, group_ids)
    assert sum(len(on) > 1 for on in spread.values()) == expected_split
    assert assignment.rank_costs == [
        sum(
            packed_cost(rows, row_lens, shared_lens)
            for rows in [[r for r in part if group_ids[r] == gid] for gid in dict.fromkeys(group_ids[r] for r in part)]
        )
        for part in assignment.partitions
    ]


def test_rank_assignment_of_the_reproduction_batch_cuts_four_groups_in_two(rpo_rows):
    """84 prompts x G=16 on 8 ranks (scripts/repro): verl's group balancing refuses it (84 % 8 = 4)."""
    group_ids, row_lens, shared_lens = rpo_rows(84, 16)
    assignment = assign_groups_to_ranks(group_ids, row_lens, shared_lens, 8)
    assert assignment.split_groups == 4
    assert all(len(on) <= 2 for on in ranks_of_groups(assignment, group_ids).values())


def test_rank_assignment_keeps_whole_groups_contiguous_before_the_parts(rpo_rows):
    group_ids, row_lens, shared_lens = rpo_rows(3, 4)
    assignment = assign_groups_to_ranks(group_ids, row_lens, shared_lens, 2)
    for rows in assignment.partitions:
        ids = [group_ids[r] for r in rows]
        runs = [gid for i, gid in enumerate(ids) if i == 0 or ids[i - 1] != gid]
        assert len(runs) == len(set(runs)), f"a group's rows are not contiguous on a rank: {ids}"
        assert ids[:4] == [ids[0]] * 4, "the whole group comes first"


def test_rank_assignment_balances_packed_cost():
    """Groups of equal size but very different shared parts: the expensive ones go to different ranks."""
    group_ids = [g for g in range(8) for _ in range(4)]
    shared = [4000 if g < 2 else 100 for g in group_ids]
    rows = [s + 10 for s in shared]
    assignment = assign_groups_to_ranks(group_ids, rows, shared, 2)
    assert max(assignment.rank_costs) - min(assignment.rank_costs) <= 4040 // 2
    assert ranks_of_groups(assignment, group_ids)[0] != ranks_of_groups(assignment, group_ids)[1]


def test_rank_assignment_refuses_a_batch_the_ranks_do_not_divide(rpo_rows):
    with pytest.raises(ValueError, match=r"9 rows cannot be dealt equally to 2 data-parallel ranks.*train_batch_size"):
        assign_groups_to_ranks(*rpo_rows(3, 3), ranks=2)


def test_group_members_keep_first_appearance_order_and_need_no_adjacency():
    assert group_members(["b", "a", "b", "c", "a"]) == [[0, 2], [1, 4], [3]]
