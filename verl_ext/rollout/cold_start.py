"""What a prompt with no cache entry gets in an RPO step (``rpo.cold_start``): a registry of peer policies.

A cold prompt has nothing to cut. Each policy receives the step's cold prompts and a ``seed`` callable that generates
one full-length answer for the given prompts and writes it into the cache (``PartialRollout._seed`` in
``verl_ext/rollout/partial.py``); whatever is still cold afterwards gets a full-length rollout for all G samples of
its group in the step's G-way pass. Registered as verl's ``core_algos`` registers advantage estimators, so a user adds
a policy without touching the rollout.
"""

from __future__ import annotations

from typing import Callable

SeedFn = Callable[[list[int]], None]
ColdStartPolicy = Callable[[list[int], SeedFn], None]
"""``policy(cold, seed)``: ``cold`` are the batch positions of the prompts without an entry."""

COLD_START_POLICIES: dict[str, ColdStartPolicy] = {}


def register_cold_start(name: str) -> Callable[[ColdStartPolicy], ColdStartPolicy]:
    """Register a cold-start policy under ``rpo.cold_start=<name>``."""

    def decorator(policy: ColdStartPolicy) -> ColdStartPolicy:
        if name in COLD_START_POLICIES and COLD_START_POLICIES[name] is not policy:
            raise ValueError(f"cold-start policy {name!r} is already registered "
                             f"({COLD_START_POLICIES[name].__qualname__})")
        COLD_START_POLICIES[name] = policy
        return policy

    return decorator


def get_cold_start(name: str) -> ColdStartPolicy:
    """The policy registered as ``name``; a ``ValueError`` listing the registered ones otherwise."""
    if name not in COLD_START_POLICIES:
        raise ValueError(f"rpo.cold_start must be one of {sorted(COLD_START_POLICIES)}, got {name!r}")
    return COLD_START_POLICIES[name]


@register_cold_start("seed_then_partial")
def seed_then_partial(cold: list[int], seed: SeedFn) -> None:
    """The paper's cold start: one full answer per cold prompt first, then the prompt is cut like any other."""
    seed(cold)


@register_cold_start("full_group")
def full_group(cold: list[int], seed: SeedFn) -> None:
    """No seeding: a cold prompt's G samples are all full-length rollouts (a full-path GRPO group) this step."""
