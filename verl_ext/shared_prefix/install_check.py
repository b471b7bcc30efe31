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
from importlib.metadata import EntryPoint, entry_points

PLUGIN_GROUP = "verl.plugins"
PLUGIN_MODULE = "verl_ext.shared_prefix.verl_plugin"
_FIX = "install this repository as a package (scripts/install.sh, or pip install -e .) or set rpo.shared_prefix=false"


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
    entry = plugin_entry_point()
    policy = os.environ.get("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower()
    allowed = {name.strip() for name in policy.split(",") if name.strip()}
    if policy == "none" or (policy != "auto" and entry.name not in allowed):
        raise SharedPrefixEngineMissing(
            f"rpo.shared_prefix=true: VERL_USE_EXTERNAL_PLUGINS={policy!r} keeps verl from loading the plugin "
            f"{entry.name!r}; add it to the list or unset the variable, or set rpo.shared_prefix=false"
        )
    try:
        entry.load()
    except Exception as error:  # verl would swallow exactly this
        raise SharedPrefixEngineMissing(
            f"rpo.shared_prefix=true: the plugin {entry.name!r} ({PLUGIN_MODULE}) fails to import: {error!r}"
        ) from error
    from .engine import SharedPrefixFSDPEngine
    from .verl_compat import registered_engines

    if not any(cls is SharedPrefixFSDPEngine for by_backend in registered_engines().values()
               for cls in by_backend.values()):
        raise SharedPrefixEngineMissing(
            f"rpo.shared_prefix=true: the plugin {entry.name!r} loaded but verl's engine registry holds no "
            f"SharedPrefixFSDPEngine (registered: {registered_engines()})"
        )
