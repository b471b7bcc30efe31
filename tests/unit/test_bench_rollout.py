"""scripts/bench_rollout.py's pure parts: the step plan, pairing, ratio statistics, the JSON summary and the CLI.

The benchmark run itself (Ray, vLLM, the trainer) is a script, not a test; nothing here imports verl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest



@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_rollout")


ARMS = ("rpo", "full", "full_shared")


def _line(bench, step, arm, warmup, tokens, gen_s, step_s, update_s=10.0):
    data = {
        "training/global_step": step, "bench/arm": list(bench.ARMS).index(arm), "bench/warmup": int(warmup),
        "rpo/generated_tokens": tokens, "timing_s/gen": gen_s, "timing_s/step": step_s,
        "timing_s/update_actor": update_s, "bench/engine_call_s": gen_s - 0.1,
    }
    return {"step": step, "data": data}


def _run_lines(bench, warmup=1, rounds=3):
    """File-logger lines of a run that followed the plan: RPO costs 10% of the tokens and 15..25% of the rollout
    time; the shared-prefix arms update in 4 s against the full path's 10 s."""
    lines = []
    for step in range(1, bench.total_steps(warmup, rounds, ARMS) + 1):
        phase, arm = bench.step_plan(step, warmup, ARMS)
        counted = step - warmup
        if phase == "warmup":
            lines.append(_line(bench, step, "rpo", True, 9000, 40.0, 60.0))
        elif arm == "rpo":
            lines.append(_line(bench, step, arm, False, 800 + counted, 4.0 + counted, 20.0, update_s=4.0))
        elif arm == "full_shared":
            lines.append(_line(bench, step, arm, False, 8000, 40.0, 45.0, update_s=4.0))
        else:
            lines.append(_line(bench, step, arm, False, 8000, 40.0, 50.0))
    return lines


def test_step_plan_warms_up_then_cycles_through_the_arms(bench):
    plan = [bench.step_plan(step, 2, ARMS) for step in range(1, bench.total_steps(2, 2, ARMS) + 1)]
    assert plan == [
        ("warmup", "rpo"), ("warmup", "rpo"),
        ("counted", "rpo"), ("counted", "full"), ("counted", "full_shared"),
        ("counted", "rpo"), ("counted", "full"), ("counted", "full_shared"),
    ]
    assert bench.total_steps(1, 3, ("rpo", "full")) == 7
    with pytest.raises(ValueError):
        bench.step_plan(0, 1)


def test_step_records_keep_arm_phase_and_metrics(bench):
    lines = [{"step": 0, "data": {"val-core/acc": 0.1}}, *_run_lines(bench, rounds=1)]
    lines.append({"step": 2, "data": {"training/global_step": 2}})  # no bench/arm: not a benchmark step record
    records = bench.step_records(lines)
    assert [(r["step"], r["phase"], r["arm"]) for r in records] == [
        (1, "warmup", "rpo"), (2, "counted", "rpo"), (3, "counted", "full"), (4, "counted", "full_shared")
    ]
    assert records[1]["generated_tokens"] == 801 and records[1]["rollout_s"] == 5.0 and records[1]["step_s"] == 20.0
    assert records[1]["slowest_request_s"] is None  # not logged in this record


def test_rounds_hold_each_arm_once_in_step_order(bench):
    records = bench.step_records(_run_lines(bench, warmup=1, rounds=3))
    rounds = bench.round_steps(records, ARMS)
    assert [sorted(r[arm]["step"] for arm in ARMS) for r in rounds] == [[2, 3, 4], [5, 6, 7], [8, 9, 10]]


def test_trailing_incomplete_round_is_dropped_and_a_broken_round_raises(bench):
    records = bench.step_records(_run_lines(bench, rounds=2))
    assert len(bench.round_steps(records[:-1], ARMS)) == 1
    broken = [dict(r) for r in records]
    broken[2]["arm"] = "rpo"
    with pytest.raises(ValueError, match="not a round"):
        bench.round_steps(broken, ARMS)


def test_ratio_stats(bench):
    assert bench.ratio_stats([0.3, 0.1, 0.2]) == {"min": 0.1, "median": 0.2, "max": 0.3, "n": 3}
    assert bench.ratio_stats([0.1, 0.2, None, 0.4, 0.3])["median"] == pytest.approx(0.25)
    assert bench.ratio_stats([None]) == {"min": None, "median": None, "max": None, "n": 0}
    assert bench.ratio(1.0, 0.0) is None and bench.ratio(None, 2.0) is None and bench.ratio(1.0, 4.0) == 0.25


def test_summary_json_keys_and_medians(bench, tmp_path):
    records = bench.step_records(_run_lines(bench, warmup=1, rounds=3))
    summary = bench.summarize(records, {"response_length": 2048}, {"cpu_model": "x", "cpu_count": 2}, wall_s=12.0,
                              arms=ARMS)
    # Rounds: RPO (801, 5.0 s), (804, 8.0 s), (807, 11.0 s) against (8000, 40 s); step 20 s against 50 s.
    assert summary["rounds"] == 3 and summary["arms"] == list(ARMS)
    assert summary["generated_token_ratio"] == pytest.approx(804 / 8000)
    assert summary["rollout_time_ratio"] == pytest.approx(8.0 / 40.0)
    assert summary["step_time_ratio"] == pytest.approx(0.4)
    assert summary["update_actor_ratio"] == pytest.approx(0.4)
    assert summary["full_shared/step_time_ratio"] == pytest.approx(0.9)
    assert summary["full_shared/update_actor_ratio"] == pytest.approx(0.4)
    stats = summary["ratio_stats"]["rollout_time_ratio"]
    assert (stats["min"], stats["max"]) == (pytest.approx(5.0 / 40.0), pytest.approx(11.0 / 40.0))
    assert [r["steps"]["rpo"] for r in summary["round_ratios"]] == [2, 5, 8]
    assert len(summary["steps"]) == 10 and summary["settings"] == {"response_length": 2048}
    assert summary["machine"]["cpu_count"] == 2
    breakdown = summary["time_breakdown"]
    assert breakdown["full"]["rollout_s"] == pytest.approx(40.0)
    assert breakdown["full"]["driver_side_s"] == pytest.approx(0.1)
    assert breakdown["full_shared"]["update_actor_s"] == pytest.approx(4.0)

    out = tmp_path / "bench.json"
    out.write_text(json.dumps(summary))  # plain JSON: no NaN, numpy or tuples
    loaded = json.loads(out.read_text())
    for key in ("generated_token_ratio", "rollout_time_ratio", "rounds", "ratio_stats", "steps", "settings", "machine"):
        assert key in loaded

    table = bench.markdown_table(summary)
    assert "| generated_token_ratio | 0.100 | 0.101 | 0.101 |" in table
    assert "| full_shared/step_time_ratio | 0.900 | 0.900 | 0.900 |" in table
    assert table.count("| counted | rpo |") == 3 and table.count("| counted | full |") == 3


def test_summary_without_rounds(bench):
    records = bench.step_records(_run_lines(bench, rounds=1))[:2]
    summary = bench.summarize(records, {}, {}, arms=ARMS)
    assert summary["rounds"] == 0 and summary["generated_token_ratio"] is None
    assert "rounds counted: 0" in bench.markdown_table(summary)


def test_cli_defaults_and_acceptance_interface(bench, tmp_path):
    args = bench.parse_args(["--response-length", "2048", "--suffix-budget", "256", "--json", "OUT.json"])
    assert (args.response_length, args.suffix_budget, args.device, args.answers) == (2048, 256, "cpu", "budget")
    assert Path(args.json_path).is_absolute() and args.json_path.endswith("OUT.json")
    defaults = bench.parse_args([])
    assert (defaults.response_length, defaults.suffix_budget, defaults.rounds, defaults.warmup_steps) == (1024, 128, 3, 1)
    assert defaults.arms == ["rpo", "full", "full_shared"]
    args = bench.parse_args(["--arms", "rpo", "full", "--response-length", "4096", "--rounds", "2", "--group-size",
                             "8", "trainer.seed=3"])
    assert args.overrides == ["trainer.seed=3"]
    overrides = bench.recipe_overrides(args, "/m", "/d.parquet", tmp_path)
    assert "rpo.truncation.max_new_tokens=128" in overrides and "actor_rollout_ref.rollout.n=8" in overrides
    assert "data.max_response_length=4096" in overrides and "trainer.total_training_steps=5" in overrides
    assert f"actor_rollout_ref.rollout.max_model_len={args.max_prompt_length + 4096}" in overrides
    assert "actor_rollout_ref.rollout.enable_prefix_caching=true" in overrides
    assert "actor_rollout_ref.rollout.ignore_eos=true" in overrides
    assert overrides[-1] == "trainer.seed=3"  # user overrides win
    verified = bench.parse_args(["--arms", "rpo", "full", "rpo_verified"])
    overrides = bench.recipe_overrides(verified, "/m", "/d.parquet", tmp_path)
    assert "rpo.cache.store_logprobs=true" in overrides
    assert "actor_rollout_ref.rollout.calculate_log_probs=true" in overrides
    for bad in (["--suffix-budget", "4096"], ["--rounds", "0"], ["--warmup-steps", "0"], ["not-an-override"],
                ["--arms", "rpo", "full_shared"], ["--arms", "rpo", "full", "rpo"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_passes_use_the_scripts_dynamic_batch_size_and_static_arms_switch_per_step(bench, tmp_path):
    """The run uses scripts/repro's settings (dynamic batch size, 6 x prompt + response per GPU, log-prob passes
    twice that); a *_static step puts fixed micro-batches in its batch; --gpus: ranks and rollout replicas."""
    args = bench.parse_args(["--response-length", "2048", "--max-prompt-length", "64", "--gpus", "2"])
    overrides = bench.recipe_overrides(args, "/m", "/d.parquet", tmp_path)
    assert "trainer.n_gpus_per_node=2" in overrides
    assert {"actor_rollout_ref.actor.use_dynamic_bsz=true", "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true",
            "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=true",
            "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=12672",
            "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=25344",
            "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=25344"} <= set(overrides)
    assert bench.static_batching(8) == {"use_dynamic_bsz": False, "micro_batch_size_per_gpu": 8}
    assert bench.parse_args(["--arms", "rpo", "full", "rpo_static", "full_static"]).micro_batch_size == 8
    for bad in (["--gpus", "0"], ["--arms", "rpo", "full", "rpo_static"], ["--micro-batch-size", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_static_arms_are_divided_by_the_static_full_path(bench):
    records = []
    for step, (arm, seconds) in enumerate([("rpo", 2.0), ("full", 10.0), ("rpo_static", 3.0), ("full_static", 12.0)],
                                          start=2):
        records.append({"step": step, "phase": "counted", "arm": arm,
                        **{field: seconds for field in bench.RECORD_METRICS}})
    summary = bench.summarize(records, {}, {}, arms=["rpo", "full", "rpo_static", "full_static"])
    assert summary["step_time_ratio"] == pytest.approx(0.2)
    assert summary["rpo_static/step_time_ratio"] == pytest.approx(0.25)
    assert "full_static/step_time_ratio" not in summary


def test_tiny_context_covers_the_budget(bench):
    assert bench.tiny_max_positions(2048 + 64) == 8192
    assert bench.tiny_max_positions(8192 + 64) == 9216


def test_the_bench_trainer_overrides_keep_the_recipe_trainers_signatures(bench):
    """The benchmark subclasses RayRPOTrainer; a changed hook signature there must fail here, not in a 6-minute run."""
    import inspect

    from recipe.rpo.rpo_ray_trainer import RayRPOTrainer

    def parameters(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    trainer_cls = bench._bench_classes().trainer_cls
    for name in ("_collect_batch", "_update_policy"):
        assert parameters(getattr(trainer_cls, name)) == parameters(getattr(RayRPOTrainer, name)), name
