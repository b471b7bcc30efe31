"""The rollout benchmark's pure parts (verl_ext/experiments/bench): the step plan, pairing, ratio statistics, the JSON
summary and the CLI; and the per-step settings its trainer hands RayRPOTrainer.

The benchmark run itself (Ray, vLLM, the trainer) is a script, not a test; nothing here imports verl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verl_ext.experiments.bench import arms, rollout
from verl_ext.experiments.bench import records as bench_records

ARMS = ("rpo", "full", "full_shared")


def _line(step, arm, warmup, tokens, gen_s, step_s, update_s=10.0):
    data = {
        "training/global_step": step, "bench/arm": list(arms.ARMS).index(arm), "bench/warmup": int(warmup),
        "rpo/generated_tokens": tokens, "timing_s/gen": gen_s, "timing_s/step": step_s,
        "timing_s/update_actor": update_s, "bench/engine_call_s": gen_s - 0.1,
    }
    return {"step": step, "data": data}


def _run_lines(warmup=1, rounds=3):
    """File-logger lines of a run that followed the plan: RPO costs 10% of the tokens and 15..25% of the rollout
    time; the shared-prefix arms update in 4 s against the full path's 10 s."""
    lines = []
    for step in range(1, arms.total_steps(warmup, rounds, ARMS) + 1):
        phase, arm = arms.step_plan(step, warmup, ARMS)
        counted = step - warmup
        if phase == "warmup":
            lines.append(_line(step, "rpo", True, 9000, 40.0, 60.0))
        elif arm == "rpo":
            lines.append(_line(step, arm, False, 800 + counted, 4.0 + counted, 20.0, update_s=4.0))
        elif arm == "full_shared":
            lines.append(_line(step, arm, False, 8000, 40.0, 45.0, update_s=4.0))
        else:
            lines.append(_line(step, arm, False, 8000, 40.0, 50.0))
    return lines


def test_step_plan_warms_up_then_cycles_through_the_arms():
    plan = [arms.step_plan(step, 2, ARMS) for step in range(1, arms.total_steps(2, 2, ARMS) + 1)]
    assert plan == [
        ("warmup", "rpo"), ("warmup", "rpo"),
        ("counted", "rpo"), ("counted", "full"), ("counted", "full_shared"),
        ("counted", "rpo"), ("counted", "full"), ("counted", "full_shared"),
    ]
    assert arms.total_steps(1, 3, ("rpo", "full")) == 7
    with pytest.raises(ValueError):
        arms.step_plan(0, 1)


def test_step_records_keep_arm_phase_and_metrics():
    lines = [{"step": 0, "data": {"val-core/acc": 0.1}}, *_run_lines(rounds=1)]
    lines.append({"step": 2, "data": {"training/global_step": 2}})  # no bench/arm: not a benchmark step record
    records = bench_records.step_records(lines)
    assert [(r["step"], r["phase"], r["arm"]) for r in records] == [
        (1, "warmup", "rpo"), (2, "counted", "rpo"), (3, "counted", "full"), (4, "counted", "full_shared")
    ]
    assert records[1]["generated_tokens"] == 801 and records[1]["rollout_s"] == 5.0 and records[1]["step_s"] == 20.0
    assert records[1]["slowest_request_s"] is None  # not logged in this record


def test_rounds_hold_each_arm_once_in_step_order():
    records = bench_records.step_records(_run_lines(warmup=1, rounds=3))
    rounds = bench_records.round_steps(records, ARMS)
    assert [sorted(r[arm]["step"] for arm in ARMS) for r in rounds] == [[2, 3, 4], [5, 6, 7], [8, 9, 10]]


def test_trailing_incomplete_round_is_dropped_and_a_broken_round_raises():
    records = bench_records.step_records(_run_lines(rounds=2))
    assert len(bench_records.round_steps(records[:-1], ARMS)) == 1
    broken = [dict(r) for r in records]
    broken[2]["arm"] = "rpo"
    with pytest.raises(ValueError, match="not a round"):
        bench_records.round_steps(broken, ARMS)


def test_ratio_stats():
    assert bench_records.ratio_stats([0.3, 0.1, 0.2]) == {"min": 0.1, "median": 0.2, "max": 0.3, "n": 3}
    assert bench_records.ratio_stats([0.1, 0.2, None, 0.4, 0.3])["median"] == pytest.approx(0.25)
    assert bench_records.ratio_stats([None]) == {"min": None, "median": None, "max": None, "n": 0}
    assert (
        bench_records.ratio(1.0, 0.0) is None
        and bench_records.ratio(None, 2.0) is None
        and bench_records.ratio(1.0, 4.0) == 0.25
    )


def test_summary_json_keys_and_medians(tmp_path):
    records = bench_records.step_records(_run_lines(warmup=1, rounds=3))
    summary = bench_records.summarize(
        records, {"response_length": 2048}, {"cpu_model": "x", "cpu_count": 2}, wall_s=12.0, arms=ARMS
    )
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

    table = bench_records.markdown_table(summary)
    assert "| generated_token_ratio | 0.100 | 0.101 | 0.101 |" in table
    assert "| full_shared/step_time_ratio | 0.900 | 0.900 | 0.900 |" in table
    assert table.count("| counted | rpo |") == 3 and table.count("| counted | full |") == 3


def test_flash_fair_denominator_full_rows_gets_ratios_beside_verls_default():
    """With ``full_rows`` in the run every dynamic arm is also divided by it; ``full``'s own ratio to it is the
    kernel gap that a ratio against ``full`` alone hides. Static arms keep their one denominator."""
    run_arms = ("rpo", "full", "full_rows", "rpo_static", "full_static")
    lines, step_s = [], {"rpo": 20.0, "full": 50.0, "full_rows": 40.0, "rpo_static": 25.0, "full_static": 60.0}
    for step in range(1, arms.total_steps(1, 2, run_arms) + 1):
        phase, arm = arms.step_plan(step, 1, run_arms)
        lines.append(_line(step, arm, phase == "warmup", 800 if arm.startswith("rpo") else 8000, 10.0, step_s[arm],
                           update_s=step_s[arm] / 2))
    summary = bench_records.summarize(bench_records.step_records(lines), {}, {}, arms=run_arms)
    assert summary["step_time_ratio"] == pytest.approx(20.0 / 50.0)
    assert summary["step_time_ratio_vs_full_rows"] == pytest.approx(20.0 / 40.0)
    assert summary["update_actor_ratio_vs_full_rows"] == pytest.approx(0.5)
    assert summary["full/step_time_ratio_vs_full_rows"] == pytest.approx(50.0 / 40.0)
    assert summary["full_rows/step_time_ratio"] == pytest.approx(40.0 / 50.0)
    assert summary["rpo_static/step_time_ratio"] == pytest.approx(25.0 / 60.0)
    assert not any(key.startswith("rpo_static/") and key.endswith("_vs_full_rows") for key in summary)
    assert "full_rows/step_time_ratio_vs_full_rows" not in summary
    assert arms.ARMS["full_rows"] == arms.Arm(rpo=False, shared_prefix=True, whole_rows=True)


def test_summary_without_rounds():
    records = bench_records.step_records(_run_lines(rounds=1))[:2]
    summary = bench_records.summarize(records, {}, {}, arms=ARMS)
    assert summary["rounds"] == 0 and summary["generated_token_ratio"] is None
    assert "rounds counted: 0" in bench_records.markdown_table(summary)


def test_cli_defaults_and_acceptance_interface(tmp_path):
    args = rollout.parse_args(["--response-length", "2048", "--suffix-budget", "256", "--json", "OUT.json"])
    assert (args.response_length, args.suffix_budget, args.device, args.answers) == (2048, 256, "cpu", "budget")
    assert Path(args.json_path).is_absolute() and args.json_path.endswith("OUT.json")
    defaults = rollout.parse_args([])
    assert (defaults.response_length, defaults.suffix_budget, defaults.rounds, defaults.warmup_steps) == (
        1024,
        128,
        3,
        1,
    )
    assert defaults.arms == ["rpo", "full", "full_shared"]
    args = rollout.parse_args(
        ["--arms", "rpo", "full", "--response-length", "4096", "--rounds", "2", "--group-size", "8", "trainer.seed=3"]
    )
    assert args.overrides == ["trainer.seed=3"]
    overrides = rollout.recipe_overrides(args, "/m", "/d.parquet", tmp_path)
    assert "rpo.truncation.max_new_tokens=128" in overrides and "actor_rollout_ref.rollout.n=8" in overrides
    assert "data.max_response_length=4096" in overrides and "trainer.total_training_steps=5" in overrides
    assert f"actor_rollout_ref.rollout.max_model_len={args.max_prompt_length + 4096}" in overrides
    assert "actor_rollout_ref.rollout.enable_prefix_caching=true" in overrides
    assert "actor_rollout_ref.rollout.ignore_eos=true" in overrides
    assert overrides[-1] == "trainer.seed=3"  # user overrides win
    verified = rollout.parse_args(["--arms", "rpo", "full", "rpo_verified"])
    overrides = rollout.recipe_overrides(verified, "/m", "/d.parquet", tmp_path)
    assert "rpo.cache.store_logprobs=true" in overrides
    assert "actor_rollout_ref.rollout.calculate_log_probs=true" in overrides
    for bad in (
        ["--suffix-budget", "4096"],
        ["--rounds", "0"],
        ["--warmup-steps", "0"],
        ["not-an-override"],
        ["--arms", "rpo", "full_shared"],
        ["--arms", "rpo", "full", "rpo"],
    ):
        with pytest.raises(SystemExit):
            rollout.parse_args(bad)


def test_passes_use_the_scripts_dynamic_batch_size_and_static_arms_switch_per_step(tmp_path):
    """The run uses scripts/repro's settings (dynamic batch size, 6 x prompt + response per GPU, log-prob passes
    twice that); a *_static step puts fixed micro-batches in its batch; --gpus: ranks and rollout replicas."""
    args = rollout.parse_args(["--response-length", "2048", "--max-prompt-length", "64", "--gpus", "2"])
    overrides = rollout.recipe_overrides(args, "/m", "/d.parquet", tmp_path)
    assert "trainer.n_gpus_per_node=2" in overrides
    assert {
        "actor_rollout_ref.actor.use_dynamic_bsz=true",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true",
        "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=true",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=12672",
        "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=25344",
        "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=25344",
    } <= set(overrides)
    assert arms.static_batching(8) == {"use_dynamic_bsz": False, "micro_batch_size_per_gpu": 8}
    assert rollout.parse_args(["--arms", "rpo", "full", "rpo_static", "full_static"]).micro_batch_size == 8
    for bad in (["--gpus", "0"], ["--arms", "rpo", "full", "rpo_static"], ["--micro-batch-size", "0"]):
        with pytest.raises(SystemExit):
            rollout.parse_args(bad)


def test_static_arms_are_divided_by_the_static_full_path():
    records = []
    for step, (arm, seconds) in enumerate(
        [("rpo", 2.0), ("full", 10.0), ("rpo_static", 3.0), ("full_static", 12.0)], start=2
    ):
        records.append(
            {"step": step, "phase": "counted", "arm": arm, **{field: seconds for field in bench_records.RECORD_METRICS}}
        )
    summary = bench_records.summarize(records, {}, {}, arms=["rpo", "full", "rpo_static", "full_static"])
    assert summary["step_time_ratio"] == pytest.approx(0.2)
    assert summary["rpo_static/step_time_ratio"] == pytest.approx(0.25)
    assert "full_static/step_time_ratio" not in summary


def test_tiny_context_covers_the_budget():
    assert rollout.tiny_max_positions(2048 + 64) == 8192
    assert rollout.tiny_max_positions(8192 + 64) == 9216


def test_the_bench_trainer_overrides_only_the_recipe_trainers_hooks_with_their_signatures():
    """The benchmark subclasses RayRPOTrainer through its public hooks; a changed hook signature there must fail here,
    not in a 6-minute run, and no private method of the trainer may be overridden."""
    import inspect

    from recipe.rpo.rpo_ray_trainer import RayRPOTrainer
    from verl_ext.experiments.bench.trainer import BenchRPOTrainer, BenchTaskRunner

    def parameters(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert BenchTaskRunner.trainer_cls is BenchRPOTrainer
    overridden = {name for name, value in vars(BenchRPOTrainer).items() if callable(value)}
    assert overridden == {"init_workers", "step_plan", "step_settings", "on_rollout_end"}
    for name in overridden - {"step_plan"}:
        assert parameters(getattr(BenchRPOTrainer, name)) == parameters(getattr(RayRPOTrainer, name)), name


def test_each_arm_gets_its_step_settings():
    """What the trainer runs per step: RPO or the full path, shared passes, the cut policy, fixed micro-batches."""
    from types import SimpleNamespace

    from verl_ext.config import load_rpo_config
    from verl_ext.experiments.bench.trainer import BenchRPOTrainer

    plan = ["rpo", "full", "full_shared", "rpo_unshared", "rpo_verified", "rpo_static", "full_static", "full_rows"]
    config = SimpleNamespace(bench=SimpleNamespace(warmup_steps=1, arms=plan, micro_batch_size=4))
    trainer = SimpleNamespace(config=config, rpo=load_rpo_config({"truncation": {"mode": "uniform"}}))
    trainer.step_plan = lambda step: BenchRPOTrainer.step_plan(trainer, step)
    settings = {arm: BenchRPOTrainer.step_settings(trainer, step) for step, arm in enumerate(["warmup"] + plan, 1)}
    expected = {  # arm: (partial rollout, shared prefix, cut policy, fixed micro-batches)
        "warmup": (True, True, "uniform", False),
        "rpo": (True, True, "uniform", False),
        "full": (False, False, "uniform", False),
        "full_shared": (False, True, "uniform", False),
        "rpo_unshared": (True, False, "uniform", False),
        "rpo_verified": (True, True, "verified", False),
        "rpo_static": (True, True, "uniform", True),
        "full_static": (False, False, "uniform", True),
        "full_rows": (False, True, "uniform", False),
    }
    for arm, (partial, shared, mode, static) in expected.items():
        got = settings[arm]
        assert (got.partial_rollout, got.rpo.shared_prefix, got.rpo.truncation.mode) == (partial, shared, mode), arm
        assert dict(got.training_meta_info) == (arms.static_batching(4) if static else {}), arm
        assert got.whole_row_groups is (arm == "full_rows"), arm
        assert got.rpo.cache == trainer.rpo.cache
