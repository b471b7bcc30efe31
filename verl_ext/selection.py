"""Which of a group's G new answers replaces the prompt's cache entry after an RPO step.

The rule (RPO paper, section "cache update"): with probability ``p_best`` keep the best answer of the group, otherwise
one drawn uniformly at random, so the cache improves without collapsing onto the greedy choice. Two defects of the
authors' code are fixed here:

- they draw the random member with ``randint(0, G-1)``, whose upper bound is exclusive, so the last member is never
  picked; here every member has probability ``1/G``;
- ``argmax`` always returns the first of several equally good answers (with 0/1 rewards, usually several), which
  biases the cache towards low group positions; here ties are broken uniformly at random.

``correct_only`` restricts both branches to members whose ``acc`` is True, so a wrong answer never enters the cache;
a group with no correct member keeps its old entry (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from verl.base_config import BaseConfig

SelectionMetric = Literal["score", "acc"]
SELECTION_METRICS: tuple[str, ...] = get_args(SelectionMetric)


@dataclass(kw_only=True)
class ReplacementConfig(BaseConfig):
    """The replacement rule's part of ``rpo.cache`` (``CacheConfig`` in ``verl_ext.rpo_config`` extends it with the
    cache's other options, so the YAML keys and these fields are the same names). Frozen through verl's
    ``BaseConfig``."""

    select_metric: str = "score"
    """What "best" means: the reward score, or accuracy (True above False/None); one of :data:`SELECTION_METRICS`."""
    p_best: float = 0.5
    """Probability of taking the best member; otherwise a uniform draw among the candidates."""
    correct_only: bool = False
    """Only members with ``acc=True`` are candidates; no correct member keeps the old entry."""

    def __post_init__(self) -> None:
        if isinstance(self.p_best, bool) or not isinstance(self.p_best, (int, float)) or not 0.0 <= self.p_best <= 1.0:
            raise ValueError(f"rpo.cache.p_best must be a number in [0, 1], got {self.p_best!r}")
        if self.select_metric not in SELECTION_METRICS:
            raise ValueError(f"rpo.cache.select_metric must be one of {list(SELECTION_METRICS)}, "
                             f"got {self.select_metric!r}")


def choose_replacement(scores: Sequence[float], accs: Sequence[bool | None] | None, cfg: ReplacementConfig,
                       rng: np.random.Generator) -> int | None:
    """Return the position (0..G-1) of the group member that replaces the cache entry, or None to keep the old one.

    Args:
        scores: the G members' reward scores (finite or infinite, never NaN).
        accs: the G members' accuracies (None where the reward gave none), or None when the reward reports no
            accuracy at all; required by ``correct_only`` and by ``select_metric="acc"``.
        cfg: the replacement rule.
        rng: the generator to draw from.

    Raises:
        ValueError: an empty group, a NaN score, ``accs`` of another length than ``scores``, or ``accs`` missing
            when the config needs it.
    """
    group_size = len(scores)
    if group_size == 0:
        raise ValueError("cannot choose a cache replacement from an empty group")
    if any(math.isnan(score) for score in scores):
        raise ValueError(f"cache replacement: a reward score is NaN in {list(scores)}; fix the reward function")
    if accs is not None and len(accs) != group_size:
        raise ValueError(f"cache replacement: {len(accs)} accuracies for a group of {group_size} scores")
    if accs is None and (cfg.correct_only or cfg.select_metric == "acc"):
        raise ValueError("cache replacement with correct_only=True or select_metric='acc' needs per-answer accuracies, "
                         "but the reward returned none (accs=None)")

    correct = [acc is not None and bool(acc) for acc in accs] if accs is not None else [False] * group_size
    candidates = [i for i in range(group_size) if correct[i]] if cfg.correct_only else list(range(group_size))
    if not candidates:
        return None

    if rng.random() < cfg.p_best:
        values = [float(correct[i]) if cfg.select_metric == "acc" else float(scores[i]) for i in candidates]
        best_value = max(values)
        candidates = [i for i, value in zip(candidates, values, strict=True) if value == best_value]
    return int(candidates[rng.integers(len(candidates))])
