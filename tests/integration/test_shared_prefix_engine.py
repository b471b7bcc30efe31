"""Exactness of ``rpo.shared_prefix`` through verl's FSDP engine (``verl_ext.experiments.shared_prefix_harness``).

The harness runs in a child started with VERL_PLATFORM=cpu (verl picks its platform when imported): for the tiny
Qwen2 (also with gradient checkpointing, and with ``use_remove_padding=true``) and a tiny Llama, G=2 and G=4, with
fixed-size and dynamic (token-budget) micro-batches, each sized once to hold whole groups and once to cut them
apart (and for Qwen2 and Llama loaded with the flash-attention layout's reference kernel, ``rpo_varlen_reference``),
it runs the old-log-prob/ref pass and the actor update with the option on and off on the same RPO-shaped batch
(left-padded prompts, several groups, cached prefixes of 0-25 tokens, 1-token and EOS-terminated suffixes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def engine_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("shared_prefix") / "results.json"
    env = {**os.environ, "VERL_PLATFORM": "cpu", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "verl_ext.experiments.shared_prefix_harness", "--cases", "exactness",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(Path(out).read_text())


def cases(results: dict, **match) -> list[dict]:
    selected = [c for c in results["cases"] if all(c.get(k) == v for k, v in match.items())]
    assert selected, f"no case matches {match}"
    return selected


MODELS = ["qwen2", "llama", "qwen2_gradient_checkpointing", "qwen2_remove_padding"]


@pytest.mark.parametrize("model", MODELS)
def test_shared_prefix_log_prob_and_entropy_pass_matches_unshared(engine_results, model):
    for case in cases(engine_results, model=model, **{"pass": "forward"}):
        assert case["log_probs_max_rel"] < TOLERANCE, case
        assert case["entropy_max_rel"] < TOLERANCE, case
        assert case["sum_pi_squared_max_rel"] < TOLERANCE, case
    assert {c["group_size"] for c in cases(engine_results, model=model)} == {2, 4}


@pytest.mark.parametrize("model", MODELS)
def test_shared_prefix_update_gradients_match_unshared_for_every_parameter(engine_results, model):
    for case in cases(engine_results, model=model, **{"pass": "update"}):
        assert case["grad_params"] == case["grad_params_on"] > 0, case
        assert case["grad_max_rel"] < TOLERANCE, case


@pytest.mark.parametrize("model", ["qwen2_flash_reference", "llama_flash_reference"])
def test_flash_layout_through_verls_engine_matches_unshared_log_probs_entropy_and_gradients(engine_results, model):
    """The varlen layout (``verl_ext/shared_prefix/varlen.py``) with the pure-torch kernel in flash-attention's
    place, against verl's own passes, every micro-batching and loss aggregation mode."""
    forward, update = cases(engine_results, model=model, **{"pass": "forward"}), cases(engine_results, model=model,
                                                                                      **{"pass": "update"})
    assert len(forward) == 8 and len(update) == 24
    for case in forward:
        assert max(case["log_probs_max_rel"], case["entropy_max_rel"], case["sum_pi_squared_max_rel"]) < TOLERANCE, case
    for case in update:
        assert case["grad_params"] == case["grad_params_on"] > 0 and case["grad_max_rel"] < TOLERANCE, case
        for off, on in case["metrics"].values():
            assert abs(on - off) <= TOLERANCE * max(abs(off), 1e-3), case


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_shared_prefix_policy_kl_and_entropy_losses_match_in_every_aggregation_mode(engine_results, mode):
    for case in cases(engine_results, loss_agg_mode=mode):
        for name in ("actor/pg_loss", "kl_loss", "actor/entropy_loss"):
            off, on = case["metrics"][name]
            assert abs(on - off) <= TOLERANCE * max(abs(off), 1e-3), (name, case)


def test_shared_prefix_micro_batches_that_split_groups_stay_exact(engine_results):
    split = [c for c in engine_results["cases"] if c["batching"].endswith("_split")]
    assert {(c["group_size"], c["dynamic"]) for c in split} == {(2, False), (2, True), (4, False), (4, True)}
    for case in split:
        assert case.get("grad_max_rel", 0.0) < TOLERANCE and case.get("log_probs_max_rel", 0.0) < TOLERANCE, case


@pytest.mark.parametrize("batching", ["rows_whole", "tokens_whole"])
def test_shared_prefix_micro_batches_keep_groups_whole_where_the_budget_allows(engine_results, batching):
    """The engine reports packed over row tokens; with room for whole groups it is the whole-group ideal (every
    shared part computed once), by rows and by tokens, in the log-prob pass and the update."""
    for case in cases(engine_results, batching=batching):
        assert case["packed_token_frac"] == pytest.approx(case["ideal_packed_token_frac"], rel=1e-9), case


def test_shared_prefix_micro_batches_that_cut_groups_report_less_sharing(engine_results):
    for case in [c for c in engine_results["cases"] if c["batching"].endswith("_split")]:
        assert case["ideal_packed_token_frac"] < case["packed_token_frac"] <= 1.0, case


def test_unshared_passes_report_no_packing(engine_results):
    assert all(c["packed_token_frac_off"] is None for c in engine_results["cases"] if c["pass"] == "forward")


def test_shared_prefix_losses_are_not_clamped_so_their_gradients_are_compared(engine_results):
    """The low-variance KL clamps at 10 and the PPO ratio clips: the batch is built so that neither saturates."""
    for case in cases(engine_results, loss_agg_mode="token-mean"):
        assert 0.0 < case["metrics"]["kl_loss"][0] < 5.0, case


def test_shared_prefix_refuses_rows_of_one_uid_that_do_not_share_the_prefix(engine_results):
    mismatch = engine_results["mismatch"]
    assert mismatch["refused"], "a group whose rows differ inside the declared prefix was packed"
    assert "differ at token 10" in mismatch["message"] and "group 0" in mismatch["message"]


def test_the_engine_refuses_a_model_it_cannot_serve_and_a_forward_that_skipped_attention_layers(engine_results):
    refusals = engine_results["refusals"]
    assert "attention_dropout=0.1 (one dropout mask would be shared" in refusals["attention_dropout"]
    assert "reached the grouped attention 2 times for its 3 attention layers" in refusals["attention_calls"]
