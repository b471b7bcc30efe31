"""Entry point of the ``verl.plugins`` group: puts :class:`~verl_ext.shared_prefix.engine.SharedPrefixFSDPEngine`
in verl's engine registry, in the processes of a run with ``rpo.shared_prefix=true`` only.

verl loads every ``verl.plugins`` entry point in every process that imports it. This one does nothing unless
:data:`ENGINE_ENV_VAR` is ``1``, which ``recipe/rpo/main_rpo.py`` sets for the run's Ray job (driver and workers)
when ``rpo.shared_prefix`` is on; elsewhere verl keeps its own engine. Even when installed, the engine behaves as
verl's own unless a micro-batch carries the shared-prefix columns. The CPU backend's plugin is imported first so that
its CPU registrations, when ``VERL_PLATFORM=cpu``, are replaced too whatever order verl loads plugins in."""

from verl_ext.cpu import verl_plugin as _cpu_backend_first  # noqa: F401
from verl_ext.shared_prefix.install_check import engine_requested


def install_if_requested() -> bool:
    """Install the engine when this process's run asked for it (idempotent); True when it did."""
    if not engine_requested():
        return False
    from verl_ext.shared_prefix.engine import install_shared_prefix_engine

    install_shared_prefix_engine()
    return True


install_if_requested()
