"""Entry point of the ``verl.plugins`` group: verl imports this module from its ``__init__`` in every process.

It does nothing unless ``VERL_PLATFORM=cpu``: on a GPU node the module is imported and returns at once, and no
platform is registered, no verl, vLLM or torch internal is touched.
"""

from verl_ext.cpu import PLATFORM_NAME, cpu_platform_selected

if cpu_platform_selected():
    import logging

    from verl.plugin.platform.platform_manager import PlatformRegistry

    from verl_ext.cpu.platform import PlatformCPU
    from verl_ext.cpu.verl_patches import (
        patch_engine_logprobs,
        patch_fsdp2_offload_pinning,
        patch_process_group_backend,
        patch_vllm_version_lookup,
        patch_worker_threads,
        register_fsdp_engines_for_cpu,
    )
    from verl_ext.verl_compat import BackendCompatibilityError

    PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)
    try:
        patch_vllm_version_lookup()
        patch_process_group_backend()
        register_fsdp_engines_for_cpu()
        patch_fsdp2_offload_pinning()
        patch_worker_threads()
        patch_engine_logprobs()
    except BackendCompatibilityError as exc:
        # verl imports plugins under `except Exception` and logs their failures at DEBUG only: say it at ERROR.
        logging.getLogger(__name__).error("%s", exc)
        raise
