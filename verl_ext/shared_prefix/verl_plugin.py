"""Entry point of the ``verl.plugins`` group: puts :class:`~verl_ext.shared_prefix.engine.SharedPrefixFSDPEngine`
in verl's engine registry in every process, so that the actor and reference workers build it.

The engine behaves as verl's own unless a micro-batch carries the shared-prefix columns. The CPU backend's plugin is
imported first so that its CPU registrations, when ``VERL_PLATFORM=cpu``, are replaced too whatever order verl
loads plugins in."""

from ..cpu import verl_plugin as _cpu_backend_first  # noqa: F401
from .engine import install_shared_prefix_engine

install_shared_prefix_engine()
