"""verl_ext.cpu.device_module: the ``get_torch_device()`` of the CPU platform.

verl calls ``get_torch_device().<name>`` in ~80 places; ``torch.cpu`` lacks several of those names, and each gap is a
crash deep inside a Ray worker. These tests pin that every name verl 0.9.1 uses exists here and answers like the
CUDA module would (sensible memory figures, a reproducible RNG, a device usable where verl puts it).
"""

from __future__ import annotations

import psutil
import pytest
import torch

from verl_ext.cpu.device_module import cpu_device_module as dm

# Every `get_torch_device().<name>` in verl 0.9.1's source (grep of /tmp/verl_src/verl), plus the memory queries
# named in the design note (reset_peak_*, memory_stats) and what PlatformCPU forwards (manual_seed*, current_device).
VERL_DEVICE_API = (
    "empty_cache", "synchronize", "is_available", "current_stream", "set_device", "mem_get_info", "stream",
    "Stream", "set_rng_state", "get_rng_state", "set_per_process_memory_fraction", "ipc_collect", "device_count",
    "memory_reserved", "memory_allocated", "max_memory_reserved", "max_memory_allocated", "get_device_name",
    "Event", "reset_peak_memory_stats", "reset_max_memory_allocated", "memory_stats", "manual_seed",
    "manual_seed_all", "current_device", "get_device_capability",
)


@pytest.mark.parametrize("name", VERL_DEVICE_API)
def test_every_name_verl_calls_is_callable(name: str) -> None:
    """A missing name is an AttributeError inside a Ray worker; catch it here, per name."""
    assert callable(getattr(dm, name))


def test_unknown_attribute_raises_attribute_error() -> None:
    """verl and transformers probe device modules with hasattr(); the torch.cpu fallthrough must not answer all."""
    assert not hasattr(dm, "definitely_not_a_device_api")


def test_fallthrough_names_are_torch_cpu_own() -> None:
    """Streams, events and synchronize are delegated to torch.cpu rather than faked."""
    assert dm.synchronize is torch.cpu.synchronize
    assert dm.Stream is torch.cpu.Stream
    assert dm.Event is torch.cpu.Event


def test_device_identity_answers() -> None:
    """One always-available device, no compute capability: what verl's CUDA-vs-other branches key on."""
    assert dm.is_available() is True
    assert dm.device_count() == 1
    assert dm.get_device_capability() == (None, None)
    name = dm.get_device_name()
    assert isinstance(name, str) and name


@pytest.mark.parametrize("make", [torch.device, lambda dev: torch.empty(2, device=dev).device,
                                  lambda dev: torch.ones(2).to(dev).device])
def test_current_device_is_usable_as_a_device(make) -> None:
    """verl passes current_device() straight to torch.device / device= / .to(); an int would mean cuda:N."""
    assert make(dm.current_device()).type == "cpu"


def test_set_device_accepts_a_local_rank() -> None:
    """Worker.__init__ calls set_device(int(local_rank)) for every worker; it must not raise on CPU."""
    dm.set_device(0)
    assert torch.empty(1).device.type == "cpu"


def test_streams_and_events_work() -> None:
    """Activation offload waits streams on each other and enters ``stream(...)`` contexts."""
    side = dm.Stream()
    side.wait_stream(dm.current_stream())
    with dm.stream(side):
        out = torch.ones(3) * 2
    dm.current_stream().wait_stream(side)
    event = dm.Event()
    event.record()
    event.synchronize()
    dm.synchronize()
    assert torch.equal(out, torch.full((3,), 2.0))
    assert event.query() is True


def test_no_op_cache_and_allocator_controls() -> None:
    """empty_cache / ipc_collect / memory fractions have nothing to do on CPU, and must say so by returning None."""
    assert dm.empty_cache() is None
    assert dm.ipc_collect() is None
    assert dm.set_per_process_memory_fraction(0.9) is None


def test_mem_get_info_is_system_memory() -> None:
    """vLLM and verl size caches from (free, total): free must be positive and at most the machine's total RAM."""
    free, total = dm.mem_get_info()
    assert 0 < free <= total
    assert total == psutil.virtual_memory().total


def test_memory_figures_follow_real_allocations() -> None:
    """memory_allocated/reserved are the process RSS, so a touched 64 MiB tensor must show; the peak keeps it
    after the tensor is freed, until reset_peak_memory_stats (verl logs both around each step)."""
    dm.reset_peak_memory_stats()
    before = dm.memory_allocated()
    block = torch.ones(16 * 1024 * 1024, dtype=torch.float32)  # 64 MiB, written so the pages are resident
    during = dm.memory_allocated()
    assert during - before >= 32 * 1024 * 1024
    assert dm.memory_reserved() >= during - 16 * 1024 * 1024
    assert dm.max_memory_allocated() >= during
    assert dm.max_memory_reserved() >= during
    stats = dm.memory_stats()
    assert stats["allocated_bytes.all.current"] > 0
    assert stats["reserved_bytes.all.current"] > 0
    del block
    assert dm.max_memory_allocated() >= during
    dm.reset_max_memory_allocated()
    assert dm.max_memory_allocated() < during - 32 * 1024 * 1024  # a 64 MiB block is mmap'd, so freeing returns it


def test_rng_state_round_trip_reproduces_torch_rand() -> None:
    """Checkpoint resume saves and restores the device RNG; restoring must replay the same random numbers."""
    state = dm.get_rng_state()
    first = torch.rand(8)
    dm.set_rng_state(state)
    assert torch.equal(torch.rand(8), first)


def test_manual_seed_seeds_torch_global_generator() -> None:
    """Platform.manual_seed goes through here; the seed must govern torch's CPU generator."""
    dm.manual_seed(1234)
    first = torch.rand(4)
    dm.manual_seed_all(1234)
    assert torch.equal(torch.rand(4), first)
    torch.manual_seed(1234)
    assert torch.equal(torch.rand(4), first)
