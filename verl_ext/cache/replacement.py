"""Which of a group's G new answers replaces the prompt's cache entry after an RPO step (``rpo.cache.replacement``).

Replacement policies are peers in a registry (:func:`register_replacement_policy`), as verl's ``core_algos``
registers advantage estimators; :func:`choose_replacement` checks the group and calls the configured one.

The built-in ``p_best`` rule (RPO paper, section "cache update"): with probability ``p_best`` keep the best answer of
the group, otherwise
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
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

if TYPE_CHECKING:
    from verl_ext.config import ReplacementConfig


ReplacementPolicy = Callable[[Sequence[float], Sequence[bool], "ReplacementConfig", np.random.Generator], Optional[int]]
"""``policy(scores, correct, cfg, rng) -> position or None``: the group's checked scores and per-member correctness
(False where the reward gave no accuracy); None keeps the old entry."""

REPLACEMENT_POLICIES: dict[str, ReplacementPolicy] = {}


def register_replacement_policy(name: str) -> Callable[[ReplacementPolicy], ReplacementPolicy]:
    """Register a replacement policy under ``rpo.cache.replacement=<name>``."""

    def decorator(policy: ReplacementPolicy) -> ReplacementPolicy:
        if name in REPLACEMENT_POLICIES and REPLACEMENT_POLICIES[name] is not policy:
            raise ValueError(
                f"replacement policy {name!r} is already registered ({REPLACEMENT_POLICIES[name].__qualname__})"
            )
        REPLACEMENT_POLICIES[name] = policy
        return policy

    return decorator


def get_replacement_policy(name: str) -> ReplacementPolicy:
    """The policy registered as ``name``; a ``ValueError`` listing the registered ones otherwise."""
    if name not in REPLACEMENT_POLICIES:
        raise ValueError(f"rpo.cache.replacement must be one of {sorted(REPLACEMENT_POLICIES)}, got {name!r}")
    return REPLACEMENT_POLICIES[name]


def choose_replacement(
    scores: Sequence[float], accs: Sequence[bool | None] | None, cfg: ReplacementConfig, rng: np.random.Generator
) -> int | None:
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
        raise ValueError(
            "cache replacement with correct_only=True or select_metric='acc' needs per-answer accuracies, "
            "but the reward returned none (accs=None)"
        )

    correct = [acc is not None and bool(acc) for acc in accs] if accs is not None else [False] * group_size
    return get_replacement_policy(cfg.replacement)(scores, correct, cfg, rng)


@register_replacement_policy("p_best")
def p_best_replacement(
    scores: Sequence[float], correct: Sequence[bool], cfg: ReplacementConfig, rng: np.random.Generator
) -> int | None:
    """With probability ``p_best`` the best candidate (ties uniform), otherwise a uniform draw among them."""
    group_size = len(scores)
    candidates = [i for i in range(group_size) if correct[i]] if cfg.correct_only else list(range(group_size))
    if not candidates:
        return None

    if rng.random() < cfg.p_best:
        values = [float(correct[i]) if cfg.select_metric == "acc" else float(scores[i]) for i in candidates]
        best_value = max(values)
        candidates = [i for i, value in zip(candidates, values, strict=True) if value == best_value]
    return int(candidates[rng.integers(len(candidates))])
