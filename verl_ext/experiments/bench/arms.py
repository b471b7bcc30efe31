"""The benchmark's arms, a registry as verl's ``core_algos`` keeps its estimators: what one counted step runs, and
which step runs which arm (:func:`step_plan`). Plain Python, no verl import."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence


class Arm(NamedTuple):
    """What one benchmark step runs: RPO or the full path, whether the training passes share prefixes, and how they
    form micro-batches."""

    rpo: bool
    shared_prefix: bool
    verified: bool = False
    """RPO with ``rpo.truncation.mode=verified`` instead of ``--truncation-mode``."""
    dynamic_bsz: bool = True
    """Dynamic batch size (the run's token budgets, as scripts/repro); False: ``--micro-batch-size`` rows."""
    baseline: str = "full"
    """The arm whose value is the denominator of this arm's ratios (the full path with the same micro-batching)."""
    whole_rows: bool = False
    """The training passes through the shared-prefix engine with each row its own group: nothing shared, one causal
    attention per row, no mask and no padding (``StepSettings.whole_row_groups``)."""


ARMS: dict[str, Arm] = {
    "rpo": Arm(rpo=True, shared_prefix=True),
    "full": Arm(rpo=False, shared_prefix=False),
    "full_shared": Arm(rpo=False, shared_prefix=True),
    "rpo_unshared": Arm(rpo=True, shared_prefix=False),
    "rpo_verified": Arm(rpo=True, shared_prefix=True, verified=True),
    "rpo_static": Arm(rpo=True, shared_prefix=True, dynamic_bsz=False, baseline="full_static"),
    "full_static": Arm(rpo=False, shared_prefix=False, dynamic_bsz=False, baseline="full_static"),
    "full_rows": Arm(rpo=False, shared_prefix=True, whole_rows=True),
}
DEFAULT_ARMS = ("rpo", "full", "full_shared")
BASELINE_ARM = "full"
"""The denominator of the default arms' ratios: the full path as verl runs it (``*_static`` arms: ``full_static``)."""
FAST_BASELINE_ARM = "full_rows"
"""The second denominator, when the run includes it: the full path with the fastest exact attention this machine
has for whole rows. On CPU verl's full path runs its CPU preset (padded rows, a 4-D mask that sends sdpa to its
slower masked kernels) while RPO's packed passes run causal sdpa without a mask: part of a ratio against ``full``
is kernel choice, not RPO; against ``full_rows`` it is not. On a GPU verl's own path (flash-attention varlen, remove
padding) already is the fastest exact one."""


def step_plan(step: int, warmup_steps: int, arms: Sequence[str] = DEFAULT_ARMS) -> tuple[str, str]:
    """(phase, arm) of 1-based training step ``step``: warm-up steps run ``rpo`` (they fill the cache); counted steps
    cycle through ``arms``, so counted steps ``k*len(arms)+1 .. (k+1)*len(arms)`` form round k+1."""
    if step < 1:
        raise ValueError(f"steps are 1-based, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if step <= warmup_steps:
        return "warmup", "rpo"
    return "counted", arms[(step - warmup_steps - 1) % len(arms)]


def total_steps(warmup_steps: int, rounds: int, arms: Sequence[str] = DEFAULT_ARMS) -> int:
    return warmup_steps + len(arms) * rounds


def static_batching(micro_batch_size: int) -> dict[str, Any]:
    """What a ``*_static`` step puts in its batch's meta-info: verl's workers take ``use_dynamic_bsz`` and
    ``micro_batch_size_per_gpu`` from the batch when it carries them (``TrainingWorker.train_batch`` and
    ``infer_batch`` fill in only what is missing), so every training pass of the step runs fixed micro-batches."""
    return {"use_dynamic_bsz": False, "micro_batch_size_per_gpu": micro_batch_size}
