"""Rows of the shared-prefix passes to micro-batches (``verl_ext/shared_prefix/micro_batches.py``). Pure Python,
no verl."""

from __future__ import annotations

import pytest

from verl_ext.shared_prefix.micro_batches import row_budget_plan, spread_to_count, token_budget_plan
from verl_ext.shared_prefix.rank_balance import group_members, packed_cost


@pytest.mark.parametrize("seed", range(5))
def test_token_plan_fits_the_budget_and_keeps_groups_whole_where_they_fit(seed, rpo_rows):
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


def test_token_plan_packs_rpo_groups_far_below_their_row_tokens(rpo_rows):
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
