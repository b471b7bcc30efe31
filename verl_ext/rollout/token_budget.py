"""The run's token budget (``rpo.truncation.token_share``): it steers what RPO generates toward at most that share of
what the full path would have generated over the same visits, whatever depths a budgeted cut policy
(``verl_ext/rollout/adaptive.py``) asks for.

The budget counts, over the run so far:

- ``generated``: every token the RPO rollout generated (seed and refresh answers, suffixes);
- ``full_estimate``: what the full path would have generated for the same prompt visits, G times the length of the
  answer each visit was cut from (the policy's own recent answer to that prompt);
- ``planned`` and ``suffix``: the regenerated tokens the cuts planned (G per prompt) and the suffix tokens those rows
  then generated; their ratio (``overrun``) corrects the plan for suffixes that run past the cut or stop before it.

Before each cut it allows the step's cuts ``allowance`` regenerated tokens (summed over the step's prompts, one answer
each): as many as keep ``generated / full_estimate`` at most ``share`` after the step, spending what earlier steps
saved. It is a target, not a bound: every non-empty answer still regenerates one token, a suffix may run past its cut
(by ``max_new_tokens`` and ``slack``), the overrun correction is an average over the run, and seeds, refreshes and the
full rollouts of ``full_group`` cold prompts are counted but not limited (``rpo/budget_token_share`` shows where the
run stands). The state is a few floats, saved with every checkpoint (``verl_ext/cache/checkpoint.py``), so a resumed
run keeps its budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

MIN_OVERRUN = 0.05
"""The overrun is never taken below this, so suffixes that all stopped at once cannot make the allowance infinite."""


@dataclass
class TokenBudget:
    """The budget's state; see the module docstring."""

    share: float
    generated: float = 0.0
    full_estimate: float = 0.0
    planned: float = 0.0
    suffix: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float)) or not 0.0 < self.share <= 1.0:
            raise ValueError(f"rpo.truncation.token_share must be a number in (0, 1], got {self.share!r}")

    @property
    def overrun(self) -> float:
        """Suffix tokens generated per regenerated token planned so far (1.0 before any)."""
        return max(self.suffix / self.planned, MIN_OVERRUN) if self.planned > 0 else 1.0

    @property
    def spent_share(self) -> float:
        """``generated / full_estimate`` so far (0.0 before any visit)."""
        return self.generated / self.full_estimate if self.full_estimate > 0 else 0.0

    def allowance(self, *, step_full_estimate: float, step_generated: float, group_size: int) -> float:
        """Regenerated tokens per answer, summed over the step's prompts, that the step's cuts may plan so that the
        run stays within its share after the step: ``step_full_estimate`` is the full path's estimate for the step's
        visits, ``step_generated`` what the step already generated (seeds, refreshes)."""
        room = self.share * (self.full_estimate + step_full_estimate) - self.generated - step_generated
        return max(room, 0.0) / (group_size * self.overrun)

    def call_allowance(self, *, cut_lengths: Sequence[int], uncut_prompts: int, group_size: int,
                       response_length: int, step_generated: float) -> float:
        """:meth:`allowance` for one generation call: ``cut_lengths`` are the (clipped) lengths of the answers it cuts;
        ``uncut_prompts`` prompts without an answer (``full_group`` cold starts) will generate G full rollouts each,
        expected at ``response_length`` tokens, generated and estimated alike."""
        uncut = group_size * uncut_prompts * response_length
        return self.allowance(step_full_estimate=group_size * sum(cut_lengths) + uncut,
                              step_generated=step_generated + uncut, group_size=group_size)

    def record_call(self, *, cut_lengths: Sequence[int], regenerated: Sequence[int], cut_suffix_tokens: float,
                    uncut_tokens: float, step_generated: float, group_size: int) -> None:
        """Count one generation call: per cut answer its (clipped) length and the tokens its cut regenerates, the
        suffix tokens their G rows generated, the tokens of the rows that had no answer to cut, and the seeds and
        refreshes generated before the cut."""
        self.record(generated=step_generated + cut_suffix_tokens + uncut_tokens,
                    full_estimate=group_size * sum(cut_lengths) + uncut_tokens,
                    planned=group_size * sum(regenerated), suffix=cut_suffix_tokens)

    def record(self, *, generated: float, full_estimate: float, planned: float, suffix: float) -> None:
        """Add one generation call's counts (see the module docstring)."""
        self.generated += generated
        self.full_estimate += full_estimate
        self.planned += planned
        self.suffix += suffix

    def state_dict(self) -> dict[str, float]:
        """The counters (the share is configuration, not state: a resumed run takes the configured one)."""
        return {name: value for name, value in asdict(self).items() if name != "share"}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], share: float) -> TokenBudget:
        """The budget whose counters :meth:`state_dict` saved, with the configured ``share``; a missing or unknown
        counter is a ``ValueError`` naming it."""
        names = {field.name for field in fields(cls)} - {"share"}
        if set(state) != names:
            raise ValueError(f"token budget state has fields {sorted(state)}, expected {sorted(names)}")
        return cls(share, **{name: float(value) for name, value in state.items()})
