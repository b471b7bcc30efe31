"""verl's ``cpu`` platform: what verl's device-agnostic code needs to run its trainer on CPU-only machines."""

from __future__ import annotations

from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterator, Optional

from verl.plugin.platform.platform_base import PlatformBase

from verl_ext.cpu import PLATFORM_NAME
from verl_ext.cpu.device_module import cpu_device_module


class PlatformCPU(PlatformBase):
    """CPU platform for verl 0.9.1's ``PlatformRegistry`` (selected with ``VERL_PLATFORM=cpu``).

    Ray schedules verl's workers on accelerator slots; on CPU the preset declares logical ``GPU`` slots to Ray
    (``ray_kwargs.ray_init.num_gpus``), so the resource name stays ``GPU`` and verl's resource pools, placement
    groups and ``get_accelerator_ids()`` lookups work unchanged. Collectives use gloo; there is no CUDA IPC, so
    verl's weight sync takes its non-IPC path.
    """

    @property
    def device_name(self) -> str:
        return PLATFORM_NAME

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return cpu_device_module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        """Never claimed by auto-detection: the CPU platform is only ever selected explicitly."""
        return False

    def current_device(self) -> str:  # type: ignore[override]  # verl uses it as a device, and CPU has no index
        return cpu_device_module.current_device()

    def device_count(self) -> int:
        return cpu_device_module.device_count()

    def set_device(self, device_index: int) -> None:
        """A CPU process has one device; there is nothing to select."""

    def synchronize(self, device_index: Optional[int] = None) -> None:
        """CPU kernels run synchronously."""

    def manual_seed(self, seed: int) -> None:
        cpu_device_module.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        cpu_device_module.manual_seed_all(seed)

    def set_allocator_settings(self, settings: str) -> None:
        """Allocator settings (expandable segments, ...) are CUDA caching-allocator options."""

    def empty_cache(self) -> None:
        cpu_device_module.empty_cache()

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        """Ray sets this for actors holding logical GPU slots; on CPU it selects nothing but keeps verl's
        bookkeeping."""
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str) -> Iterator[None]:
        yield

    def profiler_start(self) -> None:
        """No device profiler on CPU (torch.profiler still works through verl's global_profiler)."""

    def profiler_stop(self) -> None:
        """See profiler_start."""

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
