"""Every verl internal this project touches, in one place, each checked against the version it was written for.

verl 0.9.1 offers no public hook for a few things RPO needs; each of them is reached through this module, which checks
the name and the signature it relies on. An upgrade that changes one stops the process with a message naming the
function, the version the code was written for and the installed one, instead of silently doing something of another
shape. The CPU backend's patches (``verl_ext/cpu/verl_patches.py``, ``verl_ext/cpu/vllm_plugin.py``) check their
verl, vLLM and torch targets with the same guards (:func:`require_parameters`, :func:`require_attribute`).

verl internals of the shared-prefix engine (``verl_ext/shared_prefix/engine.py``), resolved on first use so that
importing this module imports no verl engine code (the CPU plugin imports it before verl has picked a platform):

* ``transformer_impl._scale_logits_by_temperature`` and ``_is_scalar_unit_temperature``: verl's own temperature
  scaling of the logits, so that the packed path scales exactly as verl's does;
* ``EngineRegistry._engines`` (also read by the CPU backend's engine registration): verl's registry refuses a second
registration for a key, so the shared-prefix engine
  replaces ``FSDPEngineWithLMHead`` in place (only in processes where ``rpo.shared_prefix`` is on, see
  ``verl_ext/shared_prefix/verl_plugin.py``);
* ``transformer_impl.prepare_micro_batches``: the name ``FSDPEngine.forward_backward_batch`` forms its micro-batches
  with; the engine points it at the group-aware plan for the duration of one shared-prefix pass.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, Sequence

VERL_WRITTEN_FOR = "0.9.1"


class BackendCompatibilityError(RuntimeError):
    """A verl, vLLM or torch internal no longer has the shape this project was written for."""


def installed_version(distribution: str) -> str:
    if distribution == "python":  # the interpreter is no distribution; and its version() may be what changed
        return platform.python_version()
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def require_parameters(
    func: Callable[..., Any],
    expected: Sequence[str],
    *,
    qualname: str,
    distribution: str,
    written_for: str,
    component: str = "verl_ext",
) -> None:
    """Raise BackendCompatibilityError unless ``func`` takes exactly the leading parameters ``expected``;
    ``component`` names the part of this package that relies on it."""
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError) as exc:
        raise BackendCompatibilityError(
            f"{component} cannot inspect {qualname} ({exc}); the patch was written for {distribution} "
            f"{written_for}, installed: {installed_version(distribution)}."
        ) from exc
    if params[: len(expected)] != list(expected):
        raise BackendCompatibilityError(
            f"{component} relies on {qualname}, written for {distribution} {written_for} where its parameters "
            f"start with {tuple(expected)}; the installed {distribution} {installed_version(distribution)} has "
            f"{tuple(params)}. Update {component} for this version or install {distribution}=={written_for}."
        )


def require_attribute(
    owner: Any, name: str, *, qualname: str, distribution: str, written_for: str, component: str = "verl_ext"
) -> Any:
    """Return ``owner.name`` or raise BackendCompatibilityError naming what disappeared."""
    if not hasattr(owner, name):
        raise BackendCompatibilityError(
            f"{component} expects {qualname} (written for {distribution} {written_for}); the installed "
            f"{distribution} {installed_version(distribution)} has no such attribute."
        )
    return getattr(owner, name)


def verl_attribute(owner: Any, name: str, qualname: str, component: str = "verl_ext") -> Any:
    """``owner.name`` of the verl this project was written for, or a BackendCompatibilityError naming it."""
    return require_attribute(
        owner, name, qualname=qualname, distribution="verl", written_for=VERL_WRITTEN_FOR, component=component
    )


def verl_parameters(
    func: Callable[..., Any], expected: Sequence[str], qualname: str, component: str = "verl_ext"
) -> None:
    """A BackendCompatibilityError unless verl's ``func`` takes the leading parameters ``expected``."""
    require_parameters(
        func, expected, qualname=qualname, distribution="verl", written_for=VERL_WRITTEN_FOR, component=component
    )


# ------------------------------------------------------------------------------------- the shared-prefix engine's

ENGINE_COMPONENT = "verl_ext.shared_prefix"
_ENGINE_FUNCTIONS = {
    "_scale_logits_by_temperature": ("logits", "temperature", "is_unit_temperature"),
    "_is_scalar_unit_temperature": ("temperature",),
    "prepare_micro_batches": (
        "data",
        "dp_group",
        "num_batches_divided_by",
        "same_micro_num_in_dp",
        "min_num_micro_batch",
        "use_dynamic_bsz_balance",
    ),
}


@functools.cache
def _transformer_impl() -> Any:
    """verl's FSDP engine module, with every function the engine relies on checked once."""
    from verl.workers.engine.fsdp import transformer_impl

    for name, expected in _ENGINE_FUNCTIONS.items():
        qualname = f"verl.workers.engine.fsdp.transformer_impl.{name}"
        verl_parameters(
            verl_attribute(transformer_impl, name, qualname, ENGINE_COMPONENT), expected, qualname, ENGINE_COMPONENT
        )
    return transformer_impl


def engine_registry() -> dict:
    """verl's ``EngineRegistry._engines``: model type -> backend -> device (or (device, vendor)) -> engine class."""
    from verl.workers.engine.base import EngineRegistry

    return verl_attribute(
        EngineRegistry, "_engines", "verl.workers.engine.base.EngineRegistry._engines", ENGINE_COMPONENT
    )


def check_engine_internals() -> None:
    """Resolve and check every internal the shared-prefix engine uses (the engine calls it when imported)."""
    _transformer_impl()
    engine_registry()


def scale_logits_by_temperature(logits: Any, temperature: Any, is_unit: bool) -> Any:
    return _transformer_impl()._scale_logits_by_temperature(logits, temperature, is_unit_temperature=is_unit)


def is_scalar_unit_temperature(temperature: Any) -> bool:
    return bool(_transformer_impl()._is_scalar_unit_temperature(temperature))


def replace_registered_engine(verl_cls: type, replacement: type) -> None:
    """Put ``replacement`` wherever verl registered ``verl_cls`` as a language-model engine (idempotent); an entry
    holding another class (another plugin's engine) is left alone."""
    for by_device in engine_registry().get("language_model", {}).values():
        for key, engine_cls in list(by_device.items()):
            if engine_cls is verl_cls:
                by_device[key] = replacement


def registered_engines() -> dict[str, dict[str, type]]:
    """verl's language-model engines by device and backend."""
    return {device: dict(by_backend) for device, by_backend in engine_registry().get("language_model", {}).items()}


@contextmanager
def micro_batches_planned_by(planner: Callable[..., tuple[list, Any]]) -> Iterator[None]:
    """Within the block, ``FSDPEngine.forward_backward_batch`` forms its micro-batches with ``planner`` (same
    arguments and return value as verl's ``prepare_micro_batches``)."""
    module = _transformer_impl()
    original = module.prepare_micro_batches
    module.prepare_micro_batches = planner
    try:
        yield
    finally:
        module.prepare_micro_batches = original
