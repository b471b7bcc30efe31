"""The start-up proof that verl's workers will build the shared-prefix engine
(``verl_ext/shared_prefix/install_check.py``)."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from verl_ext.shared_prefix import install_check


def entry(name="verl_ext_shared_prefix", value=install_check.PLUGIN_MODULE):
    return EntryPoint(name=name, value=value, group=install_check.PLUGIN_GROUP)


@pytest.fixture
def engine_requested(monkeypatch):
    """This process belongs to a run with rpo.shared_prefix=true (main_rpo sets the variable for the Ray job)."""
    monkeypatch.setenv(install_check.ENGINE_ENV_VAR, "1")


def test_the_installed_package_provides_the_engine_plugin(monkeypatch, engine_requested):
    monkeypatch.delenv("VERL_USE_EXTERNAL_PLUGINS", raising=False)
    install_check.check_engine_plugin()


def test_a_process_whose_run_did_not_ask_for_the_engine_is_an_error(monkeypatch):
    monkeypatch.delenv(install_check.ENGINE_ENV_VAR, raising=False)
    with pytest.raises(install_check.SharedPrefixEngineMissing, match="RPO_SHARED_PREFIX_ENGINE is not 1"):
        install_check.check_engine_plugin()
    env: dict[str, str] = {}
    install_check.request_engine(env)
    assert env == {install_check.ENGINE_ENV_VAR: "1"}


def test_a_missing_entry_point_is_an_error_naming_the_fix(monkeypatch, engine_requested):
    monkeypatch.setattr(install_check, "entry_points", lambda group: [])
    with pytest.raises(install_check.SharedPrefixEngineMissing, match=r"no 'verl.plugins' entry point loads "
                       r"verl_ext.shared_prefix.verl_plugin.*scripts/install.sh"):
        install_check.check_engine_plugin()


@pytest.mark.parametrize("policy", ["none", "verl_ext_cpu", " other , another "])
def test_a_plugin_policy_that_leaves_it_out_is_an_error(monkeypatch, policy, engine_requested):
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", policy)
    with pytest.raises(install_check.SharedPrefixEngineMissing, match="VERL_USE_EXTERNAL_PLUGINS"):
        install_check.check_engine_plugin()
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "verl_ext_cpu,verl_ext_shared_prefix")
    install_check.check_engine_plugin()


def test_a_plugin_that_fails_to_import_is_an_error_with_its_exception(monkeypatch, engine_requested):
    monkeypatch.delenv("VERL_USE_EXTERNAL_PLUGINS", raising=False)
    monkeypatch.setattr(install_check, "entry_points", lambda group: [entry(value="verl_ext.no_such_module")])
    monkeypatch.setattr(install_check, "PLUGIN_MODULE", "verl_ext.no_such_module")
    with pytest.raises(install_check.SharedPrefixEngineMissing, match="fails to import: ModuleNotFoundError"):
        install_check.check_engine_plugin()
