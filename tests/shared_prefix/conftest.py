"""What the shared-prefix batching tests share: RPO-shaped batches of row and shared-part lengths."""

from __future__ import annotations

import random
from typing import Callable

import pytest


def _rpo_rows(groups: int, group_size: int, seed: int = 0, shared: int = 2300, suffix_max: int = 300):
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


@pytest.fixture
def rpo_rows() -> Callable[..., tuple[list, list, list]]:
    """``rpo_rows(groups, group_size, seed=0, shared=2300, suffix_max=300)``: (group ids, row lengths, shared
    lengths) of an RPO batch, one shared part per group and suffixes of 1..suffix_max tokens."""
    return _rpo_rows
