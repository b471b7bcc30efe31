"""A cache that heals: when a prompt's cached answer is replaced by a fresh full one, which answer a visit cuts, and
what a prompt's new entry carries over from its old one.

Why: under a tail cut an entry's prefix is never regenerated, so a slip early in the seed answer stays in every later
answer of the prompt (the learning testbed's ``rpo/cached_acc_frac`` stays flat over four epochs,
``docs/evidence/learning/summary.md``). Three options (``rpo.cache.*``) let the cache recover:

- ``refresh_prob`` / ``refresh_after`` / ``refresh_all_wrong``: before cutting, a prompt's answer is replaced by one
  fresh full answer (as a cold prompt is seeded), with a probability per visit, once it has been reused
  ``refresh_after`` RPO steps since it was last generated in full, or after its group scored all wrong;
- ``keep_counterpart``: each prompt also keeps its latest answer of the other correctness, and a visit cuts it with
  probability ``counterpart_prob``, so a right prefix and a wrong one both get regenerated from.

The per-prompt fields (the cut policy's state, the reuse count, the last group's right share, the counterpart) belong
to the prompt, so a new answer inherits them through :func:`successor`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Optional

import numpy as np

from verl_ext.cache.store import CacheEntry

if TYPE_CHECKING:
    from verl_ext.config import CacheConfig


def refresh_due(entries: Sequence[Optional[CacheEntry]], cfg: CacheConfig, rng: np.random.Generator) -> list[int]:
    """Positions of the entries to replace by a fresh full answer before this visit's cut (None entries never are).
    Draws one uniform per entry from ``rng`` only when ``refresh_prob > 0``."""
    draws = rng.random(len(entries)) if cfg.refresh_prob > 0 else np.ones(len(entries))
    due = []
    for position, (entry, draw) in enumerate(zip(entries, draws, strict=True)):
        if entry is None:
            continue
        if (draw < cfg.refresh_prob or (cfg.refresh_after > 0 and entry.reuses >= cfg.refresh_after)
                or (cfg.refresh_all_wrong and entry.last_right_frac == 0.0)):
            due.append(position)
    return due


def answers_to_cut(entries: Sequence[Optional[CacheEntry]], cfg: CacheConfig, rng: np.random.Generator,
                   fresh: Collection[int] = ()) -> list[Optional[CacheEntry]]:
    """Per prompt, the answer this visit cuts: the entry's own, or with ``keep_counterpart`` its counterpart with
    probability ``counterpart_prob`` when it has one. Positions in ``fresh`` (answers refreshed this visit) always
    cut their new answer, which the visit paid a full generation for. Draws one uniform per entry, only with
    ``keep_counterpart``."""
    if not cfg.keep_counterpart:
        return list(entries)
    draws = rng.random(len(entries))
    return [entry.counterpart if entry is not None and entry.counterpart is not None and draw < cfg.counterpart_prob
            and position not in fresh else entry
            for position, (entry, draw) in enumerate(zip(entries, draws, strict=True))]


def answer_only(entry: CacheEntry) -> CacheEntry:
    """``entry`` without the per-prompt fields, as a counterpart is stored."""
    return replace(entry, cut_state=None, reuses=0, last_right_frac=None, counterpart=None)


def successor(old: Optional[CacheEntry], new: CacheEntry, *, cut_state: Optional[np.ndarray],
              last_right_frac: Optional[float], reuses: int, others: Sequence[CacheEntry], keep_counterpart: bool,
              rng: np.random.Generator) -> CacheEntry:
    """The prompt's entry after a visit: ``new`` (the answer that replaces ``old``, or ``old`` itself) with the given
    per-prompt fields and, with ``keep_counterpart``, a counterpart of the other correctness: one of ``others`` (the
    visit's other answers) drawn uniformly, else the old answer or the old counterpart when of the other correctness,
    else none. An answer of unknown correctness has no counterpart. Draws from ``rng`` only when several of
    ``others`` qualify."""
    counterpart = None
    if keep_counterpart and new.acc is not None:
        opposite = [answer for answer in others if answer.acc is not None and answer.acc != new.acc]
        previous = [answer for answer in (old, None if old is None else old.counterpart)
                    if answer is not None and answer.acc is not None and answer.acc != new.acc]
        if len(opposite) > 1:
            counterpart = opposite[int(rng.integers(len(opposite)))]
        elif opposite or previous:
            counterpart = (opposite or previous)[0]
    return replace(new, cut_state=cut_state, reuses=reuses, last_right_frac=last_right_frac,
                   counterpart=None if counterpart is None else answer_only(counterpart))
