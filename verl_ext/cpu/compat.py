"""Guards for the few verl/vLLM/torch internals the CPU backend patches.

Each patch states the signature it was written against. If an upgrade changes it, the backend stops with a
message naming the function, the version the patch was written for and the installed one, instead of silently
patching something of another shape.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import platform
from typing import Any, Callable, Sequence


class BackendCompatibilityError(RuntimeError):
    """A patched internal no longer has the shape the CPU backend was written for."""


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
    component: str = "verl_ext.cpu",
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


def require_attribute(owner: Any, name: str, *, qualname: str, distribution: str, written_for: str,
                      component: str = "verl_ext.cpu") -> Any:
    """Return ``owner.name`` or raise BackendCompatibilityError naming what disappeared."""
    if not hasattr(owner, name):
        raise BackendCompatibilityError(
            f"{component} expects {qualname} (written for {distribution} {written_for}); the installed "
            f"{distribution} {installed_version(distribution)} has no such attribute."
        )
    return getattr(owner, name)
