"""verl_ext.cpu.platform.PlatformCPU: verl's ``cpu`` platform.

verl routes every device decision through ``get_platform()``. These tests pin the answers the CPU trainer depends on
(gloo, the ``GPU`` Ray resource the preset declares, no CUDA IPC) and that the class is a complete PlatformBase, so a
verl upgrade that adds an abstract method fails here rather than at platform creation inside a worker.
"""

from __future__ import annotations

import pytest
import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry, _detect_platform_name

from verl_ext.cpu.device_module import cpu_device_module
from verl_ext.cpu.platform import PlatformCPU


@pytest.fixture
def platform() -> PlatformCPU:
    return PlatformCPU()


def test_every_abstract_method_of_platform_base_is_implemented() -> None:
    """An abstract method left to PlatformBase makes PlatformCPU() raise TypeError when verl creates the platform."""
    abstract = PlatformBase.__abstractmethods__
    assert abstract, "verl's PlatformBase is expected to declare abstract methods"
    assert not PlatformCPU.__abstractmethods__
    assert sorted(name for name in abstract if name not in PlatformCPU.__dict__) == []


def test_identity(platform: PlatformCPU) -> None:
    """device_name keys verl's engine registry and config checks; the module is the CPU device shim."""
    assert isinstance(platform, PlatformBase)
    assert platform.device_name == "cpu"
    assert platform.vendor_name == "cpu"
    assert platform.device_module is cpu_device_module
    assert platform.is_available() is True
    assert platform.device_count() == 1
    assert platform.get_device_capability() == (None, None)
    assert platform.cudart() is None


def test_communication_is_gloo_without_ipc(platform: PlatformCPU) -> None:
    """NCCL does not exist on CPU, and without IPC verl's weight sync must take its copy path."""
    assert platform.communication_backend_name() == "gloo"
    assert platform.is_ipc_supported() is False


def test_ray_resources_are_logical_gpu_slots(platform: PlatformCPU) -> None:
    """The preset declares ``num_gpus`` to Ray; the resource name must match or placement never becomes ready."""
    assert platform.ray_resource_name() == "GPU"
    assert platform.ray_resource_options(1) == {"num_gpus": 1}
    assert platform.visible_devices_envvar() == "CUDA_VISIBLE_DEVICES"
    assert platform.ray_noset_envvars() == ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]


def test_current_device_is_usable_as_a_device(platform: PlatformCPU) -> None:
    """verl's get_device_id() returns this and uses it in ``.to(...)``; an int would address cuda:N."""
    device = platform.current_device()
    assert torch.empty(2, device=device).device.type == "cpu"
    assert torch.ones(2).to(device).device.type == "cpu"


def test_device_controls_are_harmless(platform: PlatformCPU) -> None:
    """Workers call these unconditionally; each must be a no-op that returns normally on CPU."""
    assert platform.set_device(0) is None
    assert platform.synchronize() is None
    assert platform.set_allocator_settings("expandable_segments:True") is None
    assert platform.empty_cache() is None
    assert platform.profiler_start() is None
    assert platform.profiler_stop() is None
    with platform.nvtx_range("step"):
        value = torch.ones(1).sum().item()
    assert value == 1.0


def test_manual_seed_reproduces(platform: PlatformCPU) -> None:
    """verl seeds through the platform; the seed must make torch's CPU generator deterministic."""
    platform.manual_seed(7)
    first = torch.rand(4)
    platform.manual_seed_all(7)
    assert torch.equal(torch.rand(4), first)


def test_get_device_uuid(platform: PlatformCPU, monkeypatch: pytest.MonkeyPatch) -> None:
    """verl's vLLM replicas match workers to devices by this id; it must be derived from Ray's visible slots."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert platform.get_device_uuid(0) == "GPU-0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert platform.get_device_uuid(1) == "GPU5"


def test_never_claimed_by_auto_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every machine has a CPU: were the platform auto-detectable, a GPU node with this package could pick it.

    It is put first in the registry so that verl's probe would return it before any real accelerator.
    """
    assert PlatformCPU().is_platform_available() is False
    assert PlatformCPU().is_platform_available(use_smi_check=True) is False
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    monkeypatch.setattr(PlatformRegistry, "_platforms", {"cpu": PlatformCPU, **PlatformRegistry._platforms})
    assert _detect_platform_name() != "cpu"
