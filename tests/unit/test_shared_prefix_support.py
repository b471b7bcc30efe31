"""Which models and installs the shared-prefix passes accept (``support``, ``install_check``) and how a pass
reports its sharing (``packing_metrics``)."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from transformers import CONFIG_MAPPING

from verl_ext.shared_prefix import install_check
from verl_ext.shared_prefix.packing_metrics import (
    PACKED_TOKENS,
    ROW_TOKENS,
    PassMetricsTap,
    frac_metric,
    packed_token_frac,
    pop_packing_metrics,
    require_packing,
)
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


def entry(name="verl_ext_shared_prefix", value=install_check.PLUGIN_MODULE):
    return EntryPoint(name=name, value=value, group=install_check.PLUGIN_GROUP)


def test_the_installed_package_provides_the_engine_plugin(monkeypatch):
    monkeypatch.delenv("VERL_USE_EXTERNAL_PLUGINS", raising=False)
    install_check.check_engine_plugin()


def test_a_missing_entry_point_is_an_error_naming_the_fix(monkeypatch):
    monkeypatch.setattr(install_check, "entry_points", lambda group: [])
    with pytest.raises(install_check.SharedPrefixEngineMissing, match=r"no 'verl.plugins' entry point loads "
                       r"verl_ext.shared_prefix.verl_plugin.*scripts/install.sh"):
        install_check.check_engine_plugin()


@pytest.mark.parametrize("policy", ["none", "verl_ext_cpu", " other , another "])
def test_a_plugin_policy_that_leaves_it_out_is_an_error(monkeypatch, policy):
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", policy)
    with pytest.raises(install_check.SharedPrefixEngineMissing, match="VERL_USE_EXTERNAL_PLUGINS"):
        install_check.check_engine_plugin()
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "verl_ext_cpu,verl_ext_shared_prefix")
    install_check.check_engine_plugin()


def test_a_plugin_that_fails_to_import_is_an_error_with_its_exception(monkeypatch):
    monkeypatch.delenv("VERL_USE_EXTERNAL_PLUGINS", raising=False)
    monkeypatch.setattr(install_check, "entry_points", lambda group: [entry(value="verl_ext.no_such_module")])
    monkeypatch.setattr(install_check, "PLUGIN_MODULE", "verl_ext.no_such_module")
    with pytest.raises(install_check.SharedPrefixEngineMissing, match="fails to import: ModuleNotFoundError"):
        install_check.check_engine_plugin()


def test_packed_token_frac_sums_nested_per_rank_and_per_mini_batch_reports():
    update = {f"actor/{PACKED_TOKENS}": [[30, 10], [20, 40]], f"actor/{ROW_TOKENS}": [[100, 50], [50, 100]],
              "actor/pg_loss": [0.1]}
    assert packed_token_frac(update, prefix="actor/") == pytest.approx(100 / 300)
    assert pop_packing_metrics(update, prefix="actor/") == pytest.approx(100 / 300)
    assert update == {"actor/pg_loss": [0.1]}
    assert packed_token_frac({}) is None
    assert frac_metric("update") == "rpo/shared_prefix/packed_token_frac/update"
    with pytest.raises(ValueError, match="unknown pass"):
        frac_metric("critic")


def test_a_pass_without_a_packing_report_is_an_error():
    assert require_packing({PACKED_TOKENS: [5], ROW_TOKENS: [10]}, "old_log_prob") == 0.5
    with pytest.raises(RuntimeError, match="the ref pass reported no packed micro-batches.*verl_ext_shared_prefix"):
        require_packing({"mfu": 0.1}, "ref")


def test_the_tap_keeps_the_last_calls_metrics_once():
    tap = PassMetricsTap(lambda output: output["metrics"])
    method = tap.wrap(lambda batch: {"metrics": {PACKED_TOKENS: [batch]}, "log_probs": batch})
    assert method(3) == {"metrics": {PACKED_TOKENS: [3]}, "log_probs": 3}
    assert tap.take() == {PACKED_TOKENS: [3]}
    assert tap.take() == {}
