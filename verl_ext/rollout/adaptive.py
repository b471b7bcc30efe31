"""The adaptive cut (``rpo.truncation.mode=adaptive``): each prompt regenerates a fraction of its cached answer that
moves with its groups' outcomes, under the run's token budget.

Why: the tail cut regenerates the last few lines of an answer and never the rest, so a slip early in a cached answer
makes every suffix of the group wrong, a clean prefix makes nearly all of them right, and in both cases the group
scores all alike and carries no gradient (the learning testbed's diagnostics: 87% of tail-cut groups against 7% on
the full path, ``docs/evidence/learning/summary.md``). A group carries the most signal when about half its answers are
right. With a per-line error rate ``e`` and ``m`` regenerated lines after a right prefix, each answer succeeds with
probability ``p = (1 - e)^m`` and the group is mixed with probability ``1 - p^G - (1 - p)^G``, highest at ``p = 1/2``;
a depth that adapts per prompt looks for the ``m`` where the group is mixed instead of fixing it for every prompt.
The rule follows the adaptive-prefix literature (AdaBack, arXiv 2506.18110, moves each sample's
prefix fraction by its reward; R3, arXiv 2402.05808, moves the start point from the end of a trace toward its start)
and SPEC-RL's finding (arXiv 2509.23232) that the cut point decides whether partial regeneration keeps accuracy.

State: one number per prompt, its depth ``d`` (the fraction of the answer to regenerate), stored in the prompt's cache
entry (``CacheEntry.cut_state``, saved with checkpoints) and starting at ``depth_init``.

Cut: the visit regenerates ``f = d * depth_factor ** u`` of the answer, ``u ~ U(-1/2, 1/2)`` (neighbouring depths are
tried, within a factor ``sqrt(depth_factor)`` either way), i.e. ``r = clip(ceil(f * L), 1, L)`` tokens of an answer of
``L``; the prefix keeps ``L - r`` tokens and the suffix may run ``r + max_new_tokens`` tokens (plus ``slack``, capped
by the response length), so that an answer cut early can be finished and can grow. A run-level token budget
(``rpo.truncation.token_share``, ``verl_ext/rollout/token_budget.py``) sets how many regenerated tokens the step may
plan; when the drawn ``r`` sum to more, every ``r`` is scaled down by the same factor (at least one token each).

Update after the group is scored (``right`` of ``G`` answers right):

- mixed group (``0 < right < G``): ``d`` stays, the depth gives signal;
- all right: ``d *= depth_factor`` (deeper: regenerate more of the answer, a harder continuation);
- all wrong after a prefix cut from a right answer: ``d /= depth_factor`` (shallower: less left to get wrong);
- all wrong after a prefix cut from a wrong answer (or one of unknown correctness): ``d *= depth_factor`` (deeper:
  the slip may be in the kept prefix, so regenerate past it);

and ``d`` is clipped to ``[depth_min, 1]``; at ``d = 1`` half the visits regenerate the whole answer (a plain GRPO
group) and the others at least ``1 / sqrt(depth_factor)`` of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from verl_ext.rollout.truncation import CachedAnswers, CutDraw, GroupOutcome, register_cut_policy

if TYPE_CHECKING:
    from verl_ext.config import TruncationConfig


def depth_of(state: Optional[np.ndarray], cfg: TruncationConfig) -> float:
    """A prompt's depth: the stored one, or ``depth_init`` for a prompt the policy has not updated yet."""
    return cfg.depth_init if state is None else float(state[0])


def update_depth(state: Optional[np.ndarray], outcome: GroupOutcome, cfg: TruncationConfig) -> np.ndarray:
    """The prompt's depth after a visit (the module docstring's rule), as the one-element state to store."""
    depth = depth_of(state, cfg)
    if outcome.mixed:
        new_depth = depth
    elif outcome.right == outcome.size or not outcome.cut_answer_right:
        new_depth = depth * cfg.depth_factor
    else:
        new_depth = depth / cfg.depth_factor
    return np.array([min(max(new_depth, cfg.depth_min), 1.0)])


def within_allowance(regenerated: np.ndarray, allowance: Optional[float]) -> np.ndarray:
    """Scale ``regenerated`` (tokens per answer, each >= 1 where the answer has any) down by one common factor so that
    they sum to at most ``allowance`` (never below one token per non-empty answer); unchanged without a budget or
    when they already fit."""
    total = float(regenerated.sum())
    if allowance is None or total <= allowance or total == 0:
        return regenerated
    scaled = np.floor(regenerated * (max(allowance, 0.0) / total)).astype(np.int64)
    return np.where(regenerated > 0, np.maximum(scaled, 1), 0)


@register_cut_policy("adaptive", update=update_depth, budgeted=True)
def adaptive_cut(answers: CachedAnswers, cfg: TruncationConfig, rng: np.random.Generator) -> CutDraw:
    """Regenerate about each prompt's depth of its answer (jittered within ``sqrt(depth_factor)``), within the
    budget's allowance; the suffix may run what was cut plus ``max_new_tokens``."""
    lengths = answers.lengths
    states = answers.states if answers.states is not None else (None,) * len(lengths)
    depths = np.array([depth_of(state, cfg) for state in states], dtype=np.float64)
    fractions = depths * cfg.depth_factor ** rng.uniform(-0.5, 0.5, size=lengths.shape)
    regenerated = np.clip(np.ceil(np.minimum(fractions, 1.0) * lengths), np.minimum(lengths, 1), lengths)
    regenerated = within_allowance(regenerated.astype(np.int64), answers.allowance)
    prefix_len = lengths - regenerated
    return CutDraw(prefix_len, regenerated + cfg.max_new_tokens)
