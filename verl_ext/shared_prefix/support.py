"""Which models the shared-prefix passes can serve, decided from the model's config before anything is packed.

The packed layout is exact only when attention is the only operation that mixes tokens across positions and when
every attention layer goes through the grouped attention (``attention.py``). A hybrid model (linear-attention or
state-space layers) would let one suffix see another's tokens through the recurrent state; sliding-window layers
would see a window of the packed sequence instead of the row; attention dropout would share one dropout mask
between the G rows of a group. So the families are an allow-list of those whose exactness the repository tests
(``check.TINY_MODELS``: every family here has a tiny config that ``tests/shared_prefix/test_layout.py`` checks
token for token and gradient for gradient against per-row passes), and the rest is refused with the reason.

Torch and transformers only (no verl): the trainer checks at start-up, the engine again on the config its workers
loaded.
"""

from __future__ import annotations

from typing import Any

SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "llama", "mistral", "gemma", "phi3", "olmo2")
"""``model_type`` of the families whose every layer mixes positions through full self-attention only."""


class UnsupportedModelError(ValueError):
    """The model's config rules out the shared-prefix passes."""


def _text_config(hf_config: Any) -> Any:
    getter = getattr(hf_config, "get_text_config", None)
    return getter() if callable(getter) else hf_config


def model_refusals(hf_config: Any) -> list[str]:
    """Why the shared-prefix passes cannot serve this model (empty when they can)."""
    config = _text_config(hf_config)
    model_type = getattr(config, "model_type", None)
    reasons = []
    if model_type not in SUPPORTED_MODEL_TYPES:
        reasons.append(
            f"model_type={model_type!r} is not among the families whose layers mix tokens only through full "
            f"self-attention and whose packed passes are tested ({', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(kind != "full_attention" for kind in layer_types):
        reasons.append(f"layer_types {sorted(set(layer_types))} include layers other than full_attention")
    elif not layer_types and getattr(config, "sliding_window", None) is not None:
        reasons.append(f"sliding_window={config.sliding_window} (a window over the packed sequence is not the row's)")
    dropout = float(getattr(config, "attention_dropout", 0.0) or 0.0)
    if dropout > 0:
        reasons.append(f"attention_dropout={dropout} (one dropout mask would be shared by the rows of a group)")
    return reasons


def check_model_supported(hf_config: Any, source: str) -> None:
    """Raise :class:`UnsupportedModelError` naming ``source`` (the model path) and every reason."""
    reasons = model_refusals(hf_config)
    if reasons:
        raise UnsupportedModelError(
            f"rpo.shared_prefix=true cannot serve the model at {source}: " + "; ".join(reasons)
            + ". Set rpo.shared_prefix=false to train it with verl's own passes."
        )


def attention_layer_count(hf_config: Any) -> int:
    """Self-attention calls one forward of a supported model makes: one per decoder layer."""
    return int(_text_config(hf_config).num_hidden_layers)

