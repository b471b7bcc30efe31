"""A ``torch.<device>``-style module for the CPU that answers every question verl asks its device module.

verl reaches the accelerator through ``get_torch_device()`` (``torch.cuda`` on GPUs) and asks it for memory
statistics, RNG state, streams and a device name. ``torch.cpu`` has streams and ``synchronize`` but no memory or
RNG API, so verl fails with ``module 'torch.cpu' has no attribute 'memory_reserved'``. This module answers from
``torch.cpu`` where it can, from the process's resident memory (psutil) for memory figures, and from torch's global
generator for RNG state. Anything else falls through to ``torch.cpu``.
"""

from __future__ import annotations

import platform
import sys
import types
from typing import Any

import psutil
import torch
import torch.cpu

_peak_rss_bytes = 0


def _rss_bytes() -> int:
    """Resident memory of this process: the CPU's closest analogue of 'allocated device memory'."""
    global _peak_rss_bytes
    rss = psutil.Process().memory_info().rss
    _peak_rss_bytes = max(_peak_rss_bytes, rss)
    return rss


def memory_allocated(device: Any = None) -> int:
    return _rss_bytes()


def memory_reserved(device: Any = None) -> int:
    return _rss_bytes()


def max_memory_allocated(device: Any = None) -> int:
    _rss_bytes()
    return _peak_rss_bytes


max_memory_reserved = max_memory_allocated


def reset_peak_memory_stats(device: Any = None) -> None:
    global _peak_rss_bytes
    _peak_rss_bytes = 0


reset_max_memory_allocated = reset_peak_memory_stats


def mem_get_info(device: Any = None) -> tuple[int, int]:
    """(free, total) bytes of system memory, the pool vLLM's CPU backend and the FSDP engine share."""
    vm = psutil.virtual_memory()
    return vm.available, vm.total


def memory_stats(device: Any = None) -> dict[str, int]:
    rss = _rss_bytes()
    return {"allocated_bytes.all.current": rss, "reserved_bytes.all.current": rss}


def empty_cache() -> None:
    """The CPU allocator returns memory to the OS itself; nothing to release."""


def ipc_collect() -> None:
    """No CUDA IPC handles exist on CPU."""


def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
    """Memory fractions are a device-allocator notion; the CPU has none to cap."""


def get_device_name(device: Any = None) -> str:
    return platform.processor() or platform.machine() or "cpu"


def get_device_capability(device: Any = None) -> tuple[None, None]:
    return None, None


def manual_seed(seed: int) -> None:
    torch.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    torch.manual_seed(seed)


def get_rng_state(device: Any = None) -> torch.Tensor:
    return torch.get_rng_state()


def set_rng_state(state: torch.Tensor, device: Any = None) -> None:
    torch.set_rng_state(state)


def current_device() -> str:
    """``"cpu"``, torch.cpu's own answer: verl passes it straight to ``.to(...)``, ``torch.device(...)`` and
    ``device=...``, where an integer would mean a CUDA device."""
    return torch.cpu.current_device()


def device_count() -> int:
    return 1


def is_available() -> bool:
    return True


def __getattr__(name: str) -> Any:
    """Everything verl does not need special answers for (Stream, Event, synchronize, ...) is torch.cpu's."""
    return getattr(torch.cpu, name)


cpu_device_module: types.ModuleType = sys.modules[__name__]
