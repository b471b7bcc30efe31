"""The arms of the learning experiment: every arm runs from the same warm start, seeds, data order and budget, and
differs from the others only in its hydra overrides (``{suffix_budget}`` is the run's RPO suffix budget)."""

from __future__ import annotations

from typing import NamedTuple


class Arm(NamedTuple):
    """One arm of the experiment: how it differs from the shared settings (hydra overrides of the recipe config)."""

    label: str
    color: str
    overrides: tuple[str, ...]


BASELINE = "full"
# The paper's RPO is ``rpo``; ``rpo_null`` sends every row through the RPO path as a fresh full-length rollout (G full
# answers per
# prompt, the cache never written), so it must match ``full`` within noise: the plumbing alone changes nothing.
ARMS: dict[str, Arm] = {
    BASELINE: Arm("full-path GRPO", "tab:blue", ("rpo.enable=false",)),
    "rpo": Arm("RPO-GRPO (tail cut)", "tab:orange", ("rpo.enable=true",)),
    "rpo_null": Arm(
        "RPO path, no reuse", "tab:gray", ("rpo.enable=true", "rpo.cold_start=full_group", "rpo.cache.update=false")
    ),
    "rpo_uniform": Arm("RPO-GRPO, uniform cut", "tab:green", ("rpo.enable=true", "rpo.truncation.mode=uniform")),
    "rpo_correct_only": Arm(
        "RPO-GRPO, correct-only cache", "tab:purple", ("rpo.enable=true", "rpo.cache.correct_only=true")
    ),
    "rpo_prefix_loss": Arm("RPO-GRPO, loss on the prefix", "tab:brown", ("rpo.enable=true", "rpo.loss_on_prefix=true")),
    "rpo_slack": Arm("RPO-GRPO, suffix slack", "tab:red", ("rpo.enable=true", "rpo.truncation.slack={suffix_budget}")),
    "rpo_verified": Arm(
        "RPO-GRPO, verified cut",
        "tab:olive",
        (
            "rpo.enable=true",
            "rpo.truncation.mode=verified",
            "rpo.cache.store_logprobs=true",
            "actor_rollout_ref.rollout.calculate_log_probs=true",
        ),
    ),
}
DEFAULT_ARMS = ("full", "rpo", "rpo_null", "rpo_slack", "rpo_verified")
