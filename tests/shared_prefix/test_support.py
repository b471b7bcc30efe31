"""Which models the shared-prefix passes accept (``verl_ext/shared_prefix/support.py``)."""

from __future__ import annotations

import pytest
from transformers import CONFIG_MAPPING

from verl_ext.shared_prefix.support import (
    SUPPORTED_MODEL_TYPES,
    UnsupportedModelError,
    attention_layer_count,
    check_model_supported,
    model_refusals,
)


def hf_config(model_type: str, **settings):
    return CONFIG_MAPPING[model_type](num_hidden_layers=3, **settings)


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_supported_families_pass_with_their_default_attention(model_type):
    settings = {"sliding_window": None} if model_type == "mistral" else {}
    assert model_refusals(hf_config(model_type, **settings)) == []
    assert attention_layer_count(hf_config(model_type)) == 3


@pytest.mark.parametrize(("model_type", "settings", "reason"), [
    ("qwen3_next", {}, "model_type='qwen3_next' is not among the families"),
    ("gpt2", {}, "model_type='gpt2' is not among the families"),
    ("mistral", {}, "sliding_window=4096"),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 64, "max_window_layers": 1},
     "include layers other than full_attention"),
    ("gemma2", {}, "include layers other than full_attention"),
    ("llama", {"attention_dropout": 0.1}, "attention_dropout=0.1 (one dropout mask would be shared"),
])
def test_models_that_mix_tokens_outside_full_attention_are_refused_with_the_reason(model_type, settings, reason):
    config = hf_config(model_type, **settings)
    with pytest.raises(UnsupportedModelError, match="rpo.shared_prefix=true cannot serve the model at /models/m") as \
            err:
        check_model_supported(config, source="/models/m")
    assert reason in str(err.value) and "rpo.shared_prefix=false" in str(err.value)
