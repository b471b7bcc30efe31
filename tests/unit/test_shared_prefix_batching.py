"""Group-aware batching of the shared-prefix passes: rows to data-parallel ranks (``rank_balance``) and rows to
micro-batches (``micro_batches``). Pure Python, no verl."""

from __future__ import annotations

import random

import pytest

from verl_ext.shared_prefix.micro_batches import row_budget_plan, spread_to_count, token_budget_plan
from verl_ext.shared_prefix.rank_balance import assign_groups_to_ranks, group_members, packed_cost


def rpo_rows(groups: int, group_size: int, seed: int = 0, shared: int = 2300, suffix_max: int = 300):
    """(group ids, row lengths, shared lengths) of an RPO batch: per group one shared part, suffixes of 1..max."""
    rng = random.Random(seed)
    group_ids, row_lens, shared_lens = [], [], []
    for gid in range(groups):
        part = rng.randint(shared // 2, shared)
        for _ in range(group_size):
            group_ids.append(f"uid-{gid}")
            shared_lens.append(part)
            row_lens.append(part + rng.randint(1, suffix_max))
    return group_ids, row_lens, shared_lens


def ranks_of_groups(assignment, group_ids) -> dict:
    where: dict = {}
    for rank, rows in enumerate(assignment.partitions):
        for row in rows:
            where.setdefault(group_ids[row], set()).add(rank)
    return where


@pytest.mark.parametrize(("groups", "group_size", "ranks"), [(84, 16, 8), (3, 2, 2), (3, 4, 2), (5, 8, 4), (4, 2, 2),
                                                             (252, 16, 8), (7, 3, 3)])
def test_rank_assignment_gives_equal_rows_and_splits_only_the_groups_that_cannot_fit_whole(groups, group_size, ranks):
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
        sum(packed_cost(rows, row_lens, shared_lens) for rows in
            [[r for r in part if group_ids[r] == gid] for gid in dict.fromkeys(group_ids[r] for r in part)])
        for part in assignment.partitions
    ]


def test_rank_assignment_of_the_reproduction_batch_cuts_four_groups_in_two():
    """84 prompts x G=16 on 8 ranks (scripts/repro): verl's group balancing refuses it (84 % 8 = 4)."""
    group_ids, row_lens, shared_lens = rpo_rows(84, 16)
    assignment = assign_groups_to_ranks(group_ids, row_lens, shared_lens, 8)
    assert assignment.split_groups == 4
    assert all(len(on) <= 2 for on in ranks_of_groups(assignment, group_ids).values())


def test_rank_assignment_keeps_whole_groups_contiguous_before_the_parts():
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


def test_rank_assignment_refuses_a_batch_the_ranks_do_not_divide():
    with pytest.raises(ValueError, match=r"9 rows cannot be dealt equally to 2 data-parallel ranks.*train_batch_size"):
        assign_groups_to_ranks(*rpo_rows(3, 3), ranks=2)


def test_group_members_keep_first_appearance_order_and_need_no_adjacency():
    assert group_members(["b", "a", "b", "c", "a"]) == [[0, 2], [1, 4], [3]]


@pytest.mark.parametrize("seed", range(5))
def test_token_plan_fits_the_budget_and_keeps_groups_whole_where_they_fit(seed):
    group_ids, row_lens, shared_lens = rpo_rows(6, 8, seed=seed, shared=600, suffix_max=200)
    budget = 3000
    plan = token_budget_plan(group_ids, row_lens, shared_lens, budget)
    assert sorted(r for rows in plan for r in rows) == list(range(len(group_ids)))
    for rows in plan:
        cost = sum(packed_cost([r for r in rows if group_ids[r] == gid], row_lens, shared_lens)
                   for gid in set(group_ids[r] for r in rows))
        assert cost <= budget
    for members in group_members(group_ids):
        fits = packed_cost(members, row_lens, shared_lens) <= budget
        holders = [i for i, rows in enumerate(plan) if set(rows) & set(members)]
        assert (len(holders) == 1) if fits else (len(holders) >= 2)


def test_token_plan_cuts_a_group_larger_than_the_budget_into_parts_that_fit():
    group_ids = ["g"] * 16
    shared_lens = [2300] * 16
    row_lens = [2300 + 300] * 16  # packed: 2300 + 16 x 300 = 7100
    plan = token_budget_plan(group_ids, row_lens, shared_lens, 5000)
    assert len(plan) == 2 and all(packed_cost(rows, row_lens, shared_lens) <= 5000 for rows in plan)
    with pytest.raises(ValueError, match=r"a row of 2600 tokens exceeds the micro-batch token budget of 2000"):
        token_budget_plan(group_ids, row_lens, shared_lens, 2000)


def test_token_plan_packs_rpo_groups_far_below_their_row_tokens():
    """The 7B reproduction's shape: prompt + prefix ~2.3k, suffixes 1-300, G=16, 10240 tokens per micro-batch."""
    group_ids, row_lens, shared_lens = rpo_rows(10, 16, shared=2300, suffix_max=300)
    plan = token_budget_plan(group_ids, row_lens, shared_lens, 10240)
    packed = sum(packed_cost([r for r in rows if group_ids[r] == gid], row_lens, shared_lens)
                 for rows in plan for gid in set(group_ids[r] for r in rows))
    whole = sum(packed_cost(members, row_lens, shared_lens) for members in group_members(group_ids))
    assert packed == whole and packed / sum(row_lens) < 0.15


def test_row_plan_keeps_order_and_cuts_at_group_boundaries():
    group_ids = ["a"] * 2 + ["b"] * 2 + ["c"] * 2
    assert row_budget_plan(group_ids, 3) == [[0, 1], [2, 3], [4, 5]]
    assert row_budget_plan(group_ids, 4) == [[0, 1, 2, 3], [4, 5]]
    assert row_budget_plan(["a"] * 5 + ["b"], 2) == [[0, 1], [2, 3], [4, 5]]  # "a" is cut anyway
    assert row_budget_plan(["a"] * 5 + ["b"], 3) == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="must be >= 1"):
        row_budget_plan(group_ids, 0)


def test_spread_reaches_the_agreed_count():
    group_ids = ["a"] * 4 + ["b"] * 4
    ordered = spread_to_count([[0, 1, 2, 3, 4, 5, 6, 7]], 3, group_ids, keep_order=True)
    assert len(ordered) == 3 and [r for rows in ordered for r in rows] == list(range(8))
    assert ordered[0] == [0, 1, 2, 3] or ordered[-1] == [4, 5, 6, 7], "the first cut is at the group boundary"
    regrouped = spread_to_count([[0, 4, 1, 5, 2, 6, 3, 7]], 2, group_ids, keep_order=False)
    assert sorted(map(sorted, regrouped)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(spread_to_count([[0], [1, 2]], 3, ["a", "a", "a"], keep_order=True)) == 3
    with pytest.raises(ValueError, match="4 micro-batches requested from 3 rows"):
        spread_to_count([[0, 1, 2]], 4, ["a"] * 3, keep_order=True)
