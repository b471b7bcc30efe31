"""The arms of the learning experiment: every arm runs from the same warm start, seeds, data order and budget, and
differs from the others only in its hydra overrides (``{suffix_budget}`` is the run's RPO suffix budget,
``{response_length}`` its response budget R)."""

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
# The loss-normalisation confound: verl's token-mean divides by the mini-batch's loss tokens, ~11x fewer on RPO's
# suffixes than on full answers, so each RPO token weighs ~11x more. seq-mean-token-sum-norm divides every arm by the
# same constant (R), so a token weighs the same in RPO and full path.
FIXED_NORMALISER = ("actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
                    "actor_rollout_ref.actor.loss_scale_factor={response_length}")
# The adaptive cut under a run-level budget of 0.3 of the full path's tokens (the goal is <= 0.35, seeding
# included); the suffix may run what was cut plus the suffix budget.
ADAPTIVE = ("rpo.enable=true", "rpo.truncation.mode=adaptive", "rpo.truncation.token_share=0.3")
ARMS.update({
    "adaptive": Arm("RPO-GRPO, adaptive depth", "tab:cyan", ADAPTIVE),
    "adaptive_heal": Arm("RPO-GRPO, adaptive depth + healing cache", "tab:pink",
                         (*ADAPTIVE, "rpo.cache.keep_counterpart=true", "rpo.cache.refresh_all_wrong=true")),
    "adaptive_free": Arm("RPO-GRPO, adaptive depth, no budget", "teal",
                         ("rpo.enable=true", "rpo.truncation.mode=adaptive")),
    "uniform_finish": Arm("RPO-GRPO, uniform cut, budget to finish", "limegreen",
                          ("rpo.enable=true", "rpo.truncation.mode=uniform",
                           "rpo.truncation.max_new_tokens={response_length}")),
    "tail64": Arm("RPO-GRPO, tail cut 64 + slack", "gold",
                  ("rpo.enable=true", "rpo.truncation.max_new_tokens=64", "rpo.truncation.slack={suffix_budget}")),
    "tail128": Arm("RPO-GRPO, tail cut 128 + slack", "darkorange",
                   ("rpo.enable=true", "rpo.truncation.max_new_tokens=128", "rpo.truncation.slack={suffix_budget}")),
    "full_fixed_norm": Arm("full-path GRPO, fixed normaliser", "navy", ("rpo.enable=false", *FIXED_NORMALISER)),
    "rpo_fixed_norm": Arm("RPO-GRPO (tail cut), fixed normaliser", "sienna", ("rpo.enable=true", *FIXED_NORMALISER)),
    "verified_same_budget": Arm(
        "RPO-GRPO, verified cut, tail's budget",
        "olive",
        (*ARMS["rpo_verified"].overrides, "rpo.truncation.verify_max_new_tokens={suffix_budget}"),
    ),
})
DEFAULT_ARMS = ("full", "rpo", "adaptive", "adaptive_heal", "full_fixed_norm", "rpo_fixed_norm", "verified_same_budget",
                "uniform_finish", "tail64", "tail128", "adaptive_free")
HEADLINE_ARMS = ("full", "rpo", "adaptive")
"""The arms the experiment runs on every seed of ``--seeds`` (5 by default); the others run on its first
``--other-arm-seeds`` (3 by default)."""
