"""The verl internals the shared-prefix engine relies on, in one place, each checked against the verl it was written
for: an upgrade that changes one stops the engine with a message naming it instead of packing wrongly.

* ``transformer_impl._scale_logits_by_temperature`` and ``_is_scalar_unit_temperature``: verl's own temperature
  scaling of the logits, so that the packed path scales exactly as verl's does;
* ``EngineRegistry._engines``: verl's registry refuses a second registration for a key, so the shared-prefix engine
  replaces ``FSDPEngineWithLMHead`` in place;
* ``transformer_impl.prepare_micro_batches``: the name ``FSDPEngine.forward_backward_batch`` forms its micro-batches
  with; the engine points it at the group-aware plan for the duration of one shared-prefix pass.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp import transformer_impl

from ..cpu.compat import require_attribute, require_parameters

WRITTEN_FOR = "0.9.1"
COMPONENT = "verl_ext.shared_prefix"


def _attribute(owner: Any, name: str, qualname: str) -> Any:
    return require_attribute(owner, name, qualname=qualname, distribution="verl", written_for=WRITTEN_FOR,
                             component=COMPONENT)


def _parameters(func: Callable[..., Any], expected: tuple[str, ...], qualname: str) -> None:
    require_parameters(func, expected, qualname=qualname, distribution="verl", written_for=WRITTEN_FOR,
                       component=COMPONENT)


def _function(name: str, expected: tuple[str, ...]) -> Callable[..., Any]:
    """``transformer_impl.<name>``, checked to take the leading parameters ``expected``."""
    qualname = f"verl.workers.engine.fsdp.transformer_impl.{name}"
    function = _attribute(transformer_impl, name, qualname)
    _parameters(function, expected, qualname)
    return function


_scale = _function("_scale_logits_by_temperature", ("logits", "temperature", "is_unit_temperature"))
_is_unit = _function("_is_scalar_unit_temperature", ("temperature",))
_function("prepare_micro_batches", ("data", "dp_group", "num_batches_divided_by", "same_micro_num_in_dp",
                                    "min_num_micro_batch", "use_dynamic_bsz_balance"))
_engines = _attribute(EngineRegistry, "_engines", "verl.workers.engine.base.EngineRegistry._engines")


def scale_logits_by_temperature(logits: torch.Tensor, temperature: torch.Tensor, is_unit: bool) -> torch.Tensor:
    return _scale(logits, temperature, is_unit_temperature=is_unit)


def is_scalar_unit_temperature(temperature: Any) -> bool:
    return bool(_is_unit(temperature))


def replace_registered_engine(verl_cls: type, replacement: type) -> None:
    """Put ``replacement`` wherever verl registered ``verl_cls`` as a language-model engine (idempotent); an entry
    holding another class (another plugin's engine) is left alone."""
    for by_device in _engines.get("language_model", {}).values():
        for key, engine_cls in list(by_device.items()):
            if engine_cls is verl_cls:
                by_device[key] = replacement


def registered_engines() -> dict[str, dict[str, type]]:
    """verl's language-model engines by device and backend."""
    return {device: dict(by_backend) for device, by_backend in _engines.get("language_model", {}).items()}


@contextmanager
def micro_batches_planned_by(planner: Callable[..., tuple[list, Any]]) -> Iterator[None]:
    """Within the block, ``FSDPEngine.forward_backward_batch`` forms its micro-batches with ``planner`` (same
    arguments and return value as verl's ``prepare_micro_batches``)."""
    original = transformer_impl.prepare_micro_batches
    transformer_impl.prepare_micro_batches = planner
    try:
        yield
    finally:
        transformer_impl.prepare_micro_batches = original
