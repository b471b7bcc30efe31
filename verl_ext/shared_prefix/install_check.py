"""Start-up proof that verl's workers will build the shared-prefix engine, so that a broken install is an error.

verl loads its ``verl.plugins`` entry points when it is imported, in every process, and swallows any exception a
plugin raises (it logs it at DEBUG). Without the plugin the workers build verl's own ``FSDPEngineWithLMHead``, which
ignores the shared-prefix columns: a run with ``rpo.shared_prefix=true`` would train on the unshared path and say
nothing. The ways that happens are checked here, in the trainer's process (same environment as its Ray workers):
the package is not installed (the entry point is missing, e.g. the recipe run from a checkout on ``PYTHONPATH``),
``VERL_USE_EXTERNAL_PLUGINS`` leaves it out, or the plugin fails to import. The trainer also refuses a training
pass whose workers report no packing (``packing_metrics.require_packing``), which covers a worker environment that
differs from the trainer's.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from importlib.metadata import EntryPoint, entry_points

ENGINE_ENV_VAR = "RPO_SHARED_PREFIX_ENGINE"
"""``1`` in the processes of a run with ``rpo.shared_prefix=true``: the plugin installs the engine only there."""
PLUGIN_GROUP = "verl.plugins"
PLUGIN_MODULE = "verl_ext.shared_prefix.verl_plugin"
_FIX = "install this repository as a package (scripts/install.sh, or pip install -e .) or set rpo.shared_prefix=false"


def engine_requested() -> bool:
    """True in a process whose run asked for the shared-prefix engine (:data:`ENGINE_ENV_VAR` is ``1``)."""
    return os.environ.get(ENGINE_ENV_VAR, "").strip() == "1"


def request_engine(env_vars: MutableMapping[str, str]) -> None:
    """Ask for the engine in a process environment (``os.environ``) or a Ray runtime env's ``env_vars``."""
    env_vars[ENGINE_ENV_VAR] = "1"


class SharedPrefixEngineMissing(RuntimeError):
    """verl's workers would not build the shared-prefix engine."""


def plugin_entry_point() -> EntryPoint:
    found = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.value == PLUGIN_MODULE]
    if not found:
        raise SharedPrefixEngineMissing(
            f"rpo.shared_prefix=true: no {PLUGIN_GROUP!r} entry point loads {PLUGIN_MODULE} in this environment, so "
            f"verl's workers would train with verl's unshared passes; {_FIX}"
        )
    return found[0]


def check_engine_plugin() -> None:
    """Raise :class:`SharedPrefixEngineMissing` naming the cause unless verl will load the engine."""
    if not engine_requested():
        raise SharedPrefixEngineMissing(
            f"rpo.shared_prefix=true but {ENGINE_ENV_VAR} is not 1 in this process, so the plugin leaves verl's "
            "engine in place; start the run with python -m recipe.rpo.main_rpo (which sets it for the Ray job) or "
            f"set {ENGINE_ENV_VAR}=1 for the driver and every worker"
        )
    entry = plugin_entry_point()
    policy = os.environ.get("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower()
    allowed = {name.strip() for name in policy.split(",") if name.strip()}
    if policy == "none" or (policy != "auto" and entry.name not in allowed):
        raise SharedPrefixEngineMissing(
            f"rpo.shared_prefix=true: VERL_USE_EXTERNAL_PLUGINS={policy!r} keeps verl from loading the plugin "
            f"{entry.name!r}; add it to the list or unset the variable, or set rpo.shared_prefix=false"
        )
    try:
        entry.load().install_if_requested()
    except Exception as error:  # verl would swallow exactly this
        raise SharedPrefixEngineMissing(
            f"rpo.shared_prefix=true: the plugin {entry.name!r} ({PLUGIN_MODULE}) fails to import: {error!r}"
        ) from error
    from verl_ext.shared_prefix.engine import SharedPrefixFSDPEngine
    from verl_ext.verl_compat import registered_engines

    if not any(cls is SharedPrefixFSDPEngine for by_backend in registered_engines().values()
               for cls in by_backend.values()):
        raise SharedPrefixEngineMissing(
            f"rpo.shared_prefix=true: the plugin {entry.name!r} loaded but verl's engine registry holds no "
            f"SharedPrefixFSDPEngine (registered: {registered_engines()})"
        )
