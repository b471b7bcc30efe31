"""DAPO's dynamic sampling: keep only groups whose answers disagree, so every kept group has a gradient.

A group whose G answers all got the same value of the filter metric has zero GRPO advantage everywhere and only
dilutes the batch. Filter on accuracy (``acc``), not on a shaped score: with format and length terms in the score,
an all-wrong group still has score variance and would survive.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np


def informative_rows(uids: Sequence[Any], values: Sequence[float]) -> np.ndarray:
    """Row indices of the groups (rows sharing a uid) whose metric has non-zero spread, or that have one row."""
    if len(uids) != len(values):
        raise ValueError(f"{len(uids)} uids but {len(values)} metric values")
    by_group: dict[Any, list[int]] = {}
    for row, uid in enumerate(uids):
        by_group.setdefault(uid, []).append(row)
    vals = np.asarray(values, dtype=np.float64)
    kept = [rows for rows in by_group.values() if len(rows) == 1 or np.std(vals[rows]) > 0]
    return np.asarray(sorted(row for rows in kept for row in rows), dtype=np.int64)


def group_count(uids: Sequence[Any]) -> int:
    return len(set(uids))


def no_signal_group_count(uids: Sequence[Any], values: Sequence[float]) -> int:
    """Groups of two or more rows whose values are all equal: zero GRPO advantage, no gradient."""
    return group_count(uids) - group_count(np.asarray(uids, dtype=object)[informative_rows(uids, values)])


def filter_values(batch: Any, metric: Optional[str]) -> np.ndarray:
    """Per row of a verl ``DataProto``, the value ``algorithm.filter_groups.metric`` names: the sequence reward
    (None, ``seq_reward``, ``reward``) or a reward extra field (e.g. ``acc``); a ``KeyError`` listing the fields."""
    if metric in (None, "seq_reward", "reward"):
        return batch.batch["token_level_scores"].sum(-1).float().cpu().numpy()
    if metric not in batch.non_tensor_batch:
        raise KeyError(
            f"algorithm.filter_groups.metric={metric!r} is not a reward extra field of this reward function; "
            f"available: {sorted(k for k in batch.non_tensor_batch if not k.startswith('rpo_'))}"
        )
    return np.asarray(batch.non_tensor_batch[metric], dtype=np.float64)
