"""Micro-batches that keep a group's rows together, sized by what the shared-prefix pass computes.

verl forms micro-batches from each row's own length (``rearrange_micro_batches`` with ``use_dynamic_bsz``) or as
contiguous chunks of ``micro_batch_size_per_gpu`` rows. Neither knows that the rows of a group share their prompt
and cached prefix: the dynamic splitter spreads a group's rows over several micro-batches, and every part packs the
shared part again (at the 7B reproduction's shape the packed tokens stay at ~0.8-0.9 of the row tokens instead of
~0.12). The plans here count what the packed pass computes instead:

* :func:`token_budget_plan` (``use_dynamic_bsz=true``): a group is one unit of ``shared + sum(suffixes)`` tokens; a
  group larger than the budget is cut into as few parts as first-fit gives, each part under the budget. Units go
  into micro-batches first-fit decreasing, so groups stay whole wherever the budget holds them.
* :func:`row_budget_plan` (a fixed micro-batch size): contiguous chunks of at most the micro-batch size, cut at group
  boundaries where the size allows; the order of the rows is kept, because verl restores the row order only for
  dynamic micro-batches.

Every rank must run the same number of micro-batches (FSDP gathers parameters in each forward), so the engine
agrees on the largest count over the data-parallel group and :func:`spread_to_count` splits micro-batches until a
plan has that many. Plain Python: tested without verl or torch.
"""

from __future__ import annotations

from typing import Sequence

from verl_ext.shared_prefix.rank_balance import group_members, packed_cost

Plan = list[list[int]]
"""Row indices per micro-batch."""


def _split_group(rows: list[int], row_lens: Sequence[int], shared_lens: Sequence[int], max_tokens: int) -> Plan:
    """A group too large for one micro-batch, in parts of at most ``max_tokens`` packed tokens (first-fit, longest
    rows first); every part packs the shared part again."""
    parts: Plan = []
    for row in sorted(rows, key=lambda r: (-int(row_lens[r]), r)):
        if int(row_lens[row]) > max_tokens:
            raise ValueError(
                f"a row of {int(row_lens[row])} tokens exceeds the micro-batch token budget of {max_tokens} "
                f"(*_max_token_len_per_gpu must hold prompt + response)"
            )
        for part in parts:
            if packed_cost([*part, row], row_lens, shared_lens) <= max_tokens:
                part.append(row)
                break
        else:
            parts.append([row])
    return [sorted(part) for part in parts]


def token_budget_plan(group_ids: Sequence, row_lens: Sequence[int], shared_lens: Sequence[int],
                      max_tokens: int) -> Plan:
    """Micro-batches of at most ``max_tokens`` packed tokens, groups whole where the budget holds them."""
    units: Plan = []
    for rows in group_members(group_ids):
        if packed_cost(rows, row_lens, shared_lens) <= max_tokens:
            units.append(rows)
        else:
            units.extend(_split_group(rows, row_lens, shared_lens, max_tokens))
    units.sort(key=lambda rows: (-packed_cost(rows, row_lens, shared_lens), rows[0]))
    bins: Plan = []
    loads: list[int] = []
    for rows in units:
        cost = packed_cost(rows, row_lens, shared_lens)
        for index, load in enumerate(loads):
            if load + cost <= max_tokens:
                bins[index].extend(rows)
                loads[index] += cost
                break
        else:
            bins.append(list(rows))
            loads.append(cost)
    return bins


def row_budget_plan(group_ids: Sequence, max_rows: int) -> Plan:
    """Contiguous chunks of at most ``max_rows`` rows in the rows' own order, each cut at a group boundary unless
    one group alone has more rows than ``max_rows``."""
    if max_rows < 1:
        raise ValueError(f"the micro-batch size must be >= 1, got {max_rows}")
    runs: Plan = []
    for row, gid in enumerate(group_ids):
        if runs and group_ids[runs[-1][-1]] == gid:
            runs[-1].append(row)
        else:
            runs.append([row])
    chunks: Plan = []
    current: list[int] = []
    for run in runs:
        if len(current) + len(run) <= max_rows:
            current.extend(run)
            continue
        if current:
            chunks.append(current)
        while len(run) > max_rows:
            chunks.append(run[:max_rows])
            run = run[max_rows:]
        current = list(run)
    if current:
        chunks.append(current)
    return chunks


def _halve(rows: list[int], group_ids: Sequence, keep_order: bool) -> tuple[list[int], list[int]]:
    """Two halves of one micro-batch: at the group boundary nearest its middle, or in the middle of its rows when
    it holds one group."""
    middle = len(rows) // 2
    if keep_order:
        boundaries = [i for i in range(1, len(rows)) if group_ids[rows[i]] != group_ids[rows[i - 1]]]
        cut = min(boundaries, key=lambda i: (abs(i - middle), i)) if boundaries else middle
        return rows[:cut], rows[cut:]
    groups = group_members([group_ids[row] for row in rows])
    if len(groups) == 1:
        return rows[:middle], rows[middle:]
    first: list[int] = []
    for members in sorted(groups, key=len, reverse=True):
        if len(first) + len(members) <= middle or not first:
            first.extend(members)
    chosen = set(first)
    return [rows[i] for i in sorted(chosen)], [rows[i] for i in range(len(rows)) if i not in chosen]


def spread_to_count(plan: Plan, count: int, group_ids: Sequence, keep_order: bool) -> Plan:
    """``plan`` split, largest micro-batch first, until it has ``count`` micro-batches (``keep_order``: halves stay
    contiguous and in place)."""
    plan = [list(rows) for rows in plan]
    rows_total = sum(len(rows) for rows in plan)
    if count > rows_total:
        raise ValueError(f"{count} micro-batches requested from {rows_total} rows")
    while len(plan) < count:
        index = max(range(len(plan)), key=lambda i: (len(plan[i]), -i))
        first, second = _halve(plan[index], group_ids, keep_order)
        plan[index:index + 1] = [first, second]
    return plan
