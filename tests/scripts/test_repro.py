"""The reproduction scripts (scripts/repro/): they parse, their dry runs compose the configs the paper's runs need,
and each RPO run differs from its baseline only in rpo.* and the experiment name. No Ray, no GPU, no model or data."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from omegaconf import OmegaConf

from verl_ext.training.topology import check_topology

REPO = Path(__file__).resolve().parents[2]
REPRO = REPO / "scripts" / "repro"
DATA_DIR = "/data/rpo"
BENCHMARKS = ["aime2024", "aime2025", "amc2023", "math500"]
SIZES = {"1.5b": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1), "7b": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 2)}
RUNS = [f"run_{algo}_{size}_{variant}" for algo, size, variant in
        itertools.product(("grpo", "dapo"), SIZES, ("rpo", "baseline"))]

# Keys whose resolved value is derived from another key (verl interpolations), next to the key they follow.
DERIVED = {
    "trainer.experiment_name": {"trainer.default_local_dir", "actor_rollout_ref.rollout.trace.experiment_name"},
    "actor_rollout_ref.model.path": {"actor_rollout_ref.rollout.prometheus.served_model_name"},
    "actor_rollout_ref.actor.loss_agg_mode": {"critic.loss_agg_mode"},
}


def script_env(tmp_home: Path, **env: str) -> dict[str, str]:
    """A clean environment: only what the scripts need, so the developer's own knobs cannot leak in."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_home), "PYTHON": sys.executable, "DATA_DIR": DATA_DIR,
            "DRY_RUN": "1", **env}


def dry_run_nested(script: str, tmp_home: Path, *args: str, topology_may_fail: bool = False,
                   **env: str) -> dict[str, Any]:
    """The config a script's dry run prints. The dry run then runs the start-up topology check and exits with 1 if
    it fails; ``topology_may_fail`` leaves that verdict to the caller."""
    result = subprocess.run(["bash", str(REPRO / script), *args], env=script_env(tmp_home, **env),
                            capture_output=True, text=True, timeout=300, check=False)
    refused = result.returncode == 1 and "the trainer would stop at the first step" in result.stderr
    assert result.returncode == 0 or (topology_may_fail and refused), result.stderr[-3000:]
    return yaml.safe_load(result.stdout)


def dry_run(script: str, tmp_home: Path, *args: str, **env: str) -> dict[str, Any]:
    """The flattened config a script's dry run prints."""
    return flatten(dry_run_nested(script, tmp_home, *args, **env))


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {"a.b.c": leaf}; an empty mapping is a leaf."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def differing(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


def with_derived(keys: set[str]) -> set[str]:
    return keys.union(*(DERIVED.get(key, set()) for key in keys))


@pytest.fixture(scope="module")
def nested_configs(tmp_path_factory) -> dict[tuple[str, str], dict[str, Any]]:
    """The dry-run config of each of the eight runs with SHARED_PREFIX=1 (the default) and 0, composed concurrently
    (each is a few seconds of hydra)."""
    home = tmp_path_factory.mktemp("home")
    keys = list(itertools.product(RUNS, ("1", "0")))
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(
            zip(
                keys,
                pool.map(
                    lambda key: dry_run_nested(f"{key[0]}.sh", home, topology_may_fail=True, SHARED_PREFIX=key[1]), keys
                ),
                strict=True,
            )
        )


@pytest.fixture(scope="module")
def configs(nested_configs) -> dict[str, dict[str, Any]]:
    """The flattened dry-run config of each of the eight runs as users run them (SHARED_PREFIX's default: 1 for the
    RPO runs, 0 for the baselines)."""
    return {run: flatten(nested_configs[(run, "1" if run.endswith("_rpo") else "0")]) for run in RUNS}


@pytest.mark.parametrize("shared_prefix", ["1", "0"])
@pytest.mark.parametrize("run", RUNS)
def test_topology_every_script_holds_on_the_gpus_it_names(nested_configs, run, shared_prefix):
    """What the trainer would stop on at step 1 on the script's 8 GPUs (84 groups of 16 rows, dynamic batch size):
    the check the trainer runs at start-up, on the config the script composes. Before the recipe balanced ranks
    itself, SHARED_PREFIX=1 failed here: verl's group balancing needs 84 % 8 == 0."""
    config = nested_configs[(run, shared_prefix)]
    assert config["trainer"]["n_gpus_per_node"] == 8 and config["rpo"]["shared_prefix"] is (shared_prefix == "1")
    check_topology(OmegaConf.create(config), source=f"{run}.sh SHARED_PREFIX={shared_prefix}")


def test_topology_refusal_stops_the_dry_run(tmp_path):
    result = subprocess.run(
        ["bash", str(REPRO / "run_grpo_1.5b_rpo.sh")],
        env=script_env(tmp_path, TRAIN_BATCH_SIZE="3", GROUP_SIZE="3"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot run on its 8 GPUs; the trainer would stop at the first step" in result.stderr
    assert "9 rows per step (data.train_batch_size=3 x actor_rollout_ref.rollout.n=3)" in result.stderr


def test_every_script_parses():
    scripts = sorted((REPO / "scripts").rglob("*.sh"))
    assert len(scripts) >= 12
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_eight_runs_pair_each_rpo_run_with_its_baseline():
    assert sorted(path.stem for path in REPRO.glob("run_*.sh")) == sorted(RUNS)


@pytest.mark.parametrize("run", RUNS)
def test_dry_run_composes_the_papers_settings(configs, run):
    _, algo, size, variant = run.split("_")
    config = configs[run]
    model_path, tensor_parallel = SIZES[size]
    dapo = algo == "dapo"
    expected = {
        "actor_rollout_ref.model.path": model_path,
        "data.train_files": f"{DATA_DIR}/open_rs.parquet",
        "data.val_files": [f"{DATA_DIR}/{name}.parquet" for name in BENCHMARKS],
        "actor_rollout_ref.rollout.n": 16,
        "data.max_prompt_length": 512,
        "data.max_response_length": 2048,
        "actor_rollout_ref.rollout.prompt_length": 512,
        "actor_rollout_ref.rollout.response_length": 2048,
        "actor_rollout_ref.rollout.temperature": 0.7,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": tensor_parallel,
        "actor_rollout_ref.actor.optim.lr": 1e-6,
        "actor_rollout_ref.actor.optim.lr_scheduler_type": "cosine",
        "actor_rollout_ref.actor.optim.min_lr_ratio": 0.1,
        "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": 0.1,
        "actor_rollout_ref.actor.use_kl_loss": not dapo,
        "actor_rollout_ref.actor.kl_loss_coef": 0.04,
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
        "actor_rollout_ref.actor.loss_agg_mode": "token-mean" if dapo else "seq-mean-token-mean",
        "actor_rollout_ref.actor.clip_ratio_high": 0.28 if dapo else 0.2,
        "algorithm.adv_estimator": "grpo",
        "algorithm.filter_groups.enable": dapo,
        "algorithm.filter_groups.metric": "acc",
        "reward.reward_manager.name": "dapo" if dapo else "naive",
        "reward.reward_kwargs.overlong_buffer_cfg.enable": dapo,
        "reward.custom_reward_function.path": "pkg://verl_ext.rewards",
        "rpo.enable": variant == "rpo",
        "rpo.truncation.max_new_tokens": 300,
        "trainer.n_gpus_per_node": 8,
        "trainer.nnodes": 1,
        "trainer.project_name": "rpo-repro",
        "trainer.experiment_name": f"{algo}-{size}-{variant}",
        "trainer.logger": ["console", "wandb", "file"],
        "trainer.total_epochs": 100 if dapo else 4,
    }
    assert {key: config[key] for key in expected} == expected
    if dapo:
        assert config["data.gen_batch_size"] > config["data.train_batch_size"]
        assert config["trainer.total_training_steps"] == 7000 // 84 * 4
        assert config["reward.reward_kwargs.overlong_buffer_cfg.len"] == 512
        assert config["reward.reward_kwargs.overlong_buffer_cfg.penalty_factor"] == 1.0


@pytest.mark.parametrize(("algo", "size"), list(itertools.product(("grpo", "dapo"), SIZES)))
def test_rpo_and_baseline_differ_only_in_rpo_the_shared_prefix_option_and_the_experiment_name(configs, algo, size):
    rpo, baseline = configs[f"run_{algo}_{size}_rpo"], configs[f"run_{algo}_{size}_baseline"]
    assert differing(rpo, baseline) == with_derived({"rpo.enable", "rpo.shared_prefix", "trainer.experiment_name"})
    assert (rpo["rpo.shared_prefix"], baseline["rpo.shared_prefix"]) == (True, False)
    for config in (rpo, baseline):  # verl's default attention (flash_attention_2) in both arms
        assert "actor_rollout_ref.model.override_config.attn_implementation" not in config
        assert config["actor_rollout_ref.model.use_remove_padding"] is True
    assert baseline["trainer.default_local_dir"].endswith(f"/{algo}-{size}-baseline")


@pytest.mark.parametrize(("size", "variant"), list(itertools.product(SIZES, ("rpo", "baseline"))))
def test_grpo_and_dapo_differ_in_the_dapo_knobs(configs, size, variant):
    grpo, dapo = configs[f"run_grpo_{size}_{variant}"], configs[f"run_dapo_{size}_{variant}"]
    assert differing(grpo, dapo) == with_derived(
        {
            "actor_rollout_ref.actor.use_kl_loss",
            "actor_rollout_ref.actor.loss_agg_mode",
            "actor_rollout_ref.actor.clip_ratio_high",
            "algorithm.filter_groups.enable",
            "data.gen_batch_size",
            "reward.reward_manager.name",
            "reward.reward_kwargs.overlong_buffer_cfg.enable",
            "reward.reward_kwargs.overlong_buffer_cfg.len",
            "reward.reward_kwargs.overlong_buffer_cfg.penalty_factor",
            "trainer.total_epochs",
            "trainer.total_training_steps",
            "trainer.experiment_name",
        }
    )


@pytest.mark.parametrize(("algo", "variant"), list(itertools.product(("grpo", "dapo"), ("rpo", "baseline"))))
def test_model_sizes_differ_in_the_model_and_its_memory_settings(configs, algo, variant):
    small, large = configs[f"run_{algo}_1.5b_{variant}"], configs[f"run_{algo}_7b_{variant}"]
    assert differing(small, large) == with_derived(
        {
            "actor_rollout_ref.model.path",
            "actor_rollout_ref.rollout.tensor_model_parallel_size",
            "actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
            "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu",
            "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu",
            "actor_rollout_ref.ref.fsdp_config.param_offload",
            "trainer.experiment_name",
        }
    )


def test_environment_and_extra_overrides_reach_the_config(tmp_path):
    config = dry_run(
        "run_dapo_1.5b_rpo.sh",
        tmp_path,
        "trainer.save_freq=7",
        MODEL_PATH="/models/r1-1.5b",
        RESPONSE_LENGTH="4096",
        N_GPUS="4",
        RPO_CACHE_INIT="/caches/open_rs.parquet",
        RPO_MAX_NEW_TOKENS="200",
    )
    assert config["actor_rollout_ref.model.path"] == "/models/r1-1.5b"
    assert config["data.max_response_length"] == config["actor_rollout_ref.rollout.response_length"] == 4096
    assert config["reward.reward_kwargs.overlong_buffer_cfg.len"] == 1024
    assert config["trainer.n_gpus_per_node"] == 4
    assert config["rpo.cache.init_path"] == "/caches/open_rs.parquet"
    assert config["rpo.truncation.max_new_tokens"] == 200
    assert config["trainer.experiment_name"] == "dapo-1.5b-rpo-r4096"
    assert config["trainer.save_freq"] == 7


@pytest.mark.parametrize(("cut", "expected"), [
    ("adaptive", {"rpo.truncation.mode": "adaptive", "rpo.truncation.token_share": 0.25,
                  "trainer.experiment_name": "grpo-1.5b-rpo-adaptive"}),
    ("verified", {"rpo.truncation.mode": "verified", "rpo.cache.store_logprobs": True,
                  "actor_rollout_ref.rollout.calculate_log_probs": True,
                  "trainer.experiment_name": "grpo-1.5b-rpo-verified"}),
])
def test_adaptive_and_other_cuts_are_one_variable_away_and_the_default_is_the_papers(tmp_path, cut, expected):
    config = dry_run("run_grpo_1.5b_rpo.sh", tmp_path, RPO_CUT=cut, RPO_TOKEN_SHARE="0.25")
    assert {key: config[key] for key in expected} == expected
    default = dry_run("run_grpo_1.5b_rpo.sh", tmp_path)
    assert default["rpo.truncation.mode"] == "tail" and default["rpo.truncation.token_share"] is None
    assert default["trainer.experiment_name"] == "grpo-1.5b-rpo"
    # The baseline has no cut: RPO_CUT leaves it as it is.
    assert dry_run("run_grpo_1.5b_baseline.sh", tmp_path, RPO_CUT=cut)["trainer.experiment_name"] == (
        "grpo-1.5b-baseline")


@pytest.mark.parametrize(("env", "mode"), [({}, "offline"), ({"WANDB_API_KEY": "k"}, "online"),
                                          ({"WANDB_MODE": "disabled"}, "disabled")])
def test_compare_inputs_wandb_is_online_only_with_a_key_and_the_file_logger_writes_beside_it(tmp_path, env, mode):
    result = subprocess.run(["bash", str(REPRO / "run_grpo_1.5b_baseline.sh")],
                            env=script_env(tmp_path, RUNS_ROOT="/runs", **env), capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"scripts/repro: wandb {mode}; metrics also in /runs/rpo-repro/grpo-1.5b-baseline/metrics.jsonl" in (
        result.stderr)


def test_invalid_choices_stop_with_a_message(tmp_path):
    result = subprocess.run(
        ["bash", str(REPRO / "train.sh")],
        env=script_env(tmp_path, ALGO="ppo"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "ALGO must be grpo or dapo, got 'ppo'" in result.stderr
    result = subprocess.run(["bash", str(REPRO / "train.sh")], env=script_env(tmp_path, RPO_CUT="head"),
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "RPO_CUT must be tail, adaptive, uniform or verified, got 'head'" in (
        result.stderr)


def test_eval_dry_run_is_verl_validation_with_the_authors_sampling(tmp_path):
    config = dry_run("eval.sh", tmp_path, MODEL_SIZE="7b", MODEL_PATH="/ckpt/merged", EVAL_N="16")
    expected = {
        "actor_rollout_ref.model.path": "/ckpt/merged",
        "actor_rollout_ref.rollout.tensor_model_parallel_size": 2,
        "data.val_files": [f"{DATA_DIR}/{name}.parquet" for name in BENCHMARKS],
        "data.max_response_length": 32768,
        "actor_rollout_ref.rollout.val_kwargs.n": 16,
        "actor_rollout_ref.rollout.val_kwargs.temperature": 0.6,
        "actor_rollout_ref.rollout.val_kwargs.top_p": 0.95,
        "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
        "trainer.val_only": True,
        "trainer.val_before_train": True,
        "trainer.resume_mode": "disable",
        "rpo.enable": False,
        "trainer.experiment_name": "eval-7b-merged",
    }
    assert {key: config[key] for key in expected} == expected


def test_prepare_data_writes_the_files_the_runs_read(tmp_path):
    data_dir = tmp_path / "data"
    result = subprocess.run(
        ["bash", str(REPRO / "prepare_data.sh")],
        env={
            **script_env(tmp_path, DATA_DIR=str(data_dir), HUB_COPY_DIR=str(REPO / "tests" / "fixtures" / "hub")),
            "DRY_RUN": "0",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = dry_run("run_grpo_1.5b_rpo.sh", tmp_path, DATA_DIR=str(data_dir))
    for path in [config["data.train_files"], *config["data.val_files"]]:
        assert pq.read_metadata(path).num_rows > 0


@pytest.mark.slow
def test_dry_run_prints_what_hydra_composes_for_main_rpo(tmp_path):
    """compose.py finds verl's configs by file instead of importing verl: it must agree with hydra's own
    ``--cfg job --resolve`` on the recipe's entry point, given the overrides the script passes."""
    argv_file = tmp_path / "argv"
    recorder = tmp_path / "record_argv.sh"
    recorder.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {argv_file}\n")
    recorder.chmod(0o755)
    expected = dry_run("run_dapo_7b_rpo.sh", tmp_path)
    subprocess.run(
        ["bash", str(REPRO / "run_dapo_7b_rpo.sh")],
        env=script_env(tmp_path, PYTHON=str(recorder)),
        capture_output=True,
        check=True,
    )
    compose_script, *overrides = argv_file.read_text().splitlines()
    assert compose_script.endswith("compose.py")
    result = subprocess.run(
        [sys.executable, "-m", "recipe.rpo.main_rpo", "--cfg", "job", "--resolve", *overrides],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert flatten(yaml.safe_load(result.stdout)) == expected


def test_scripts_use_the_project_venv_without_activation(tmp_path):
    """A user who never activated .venv (a bare PATH, no PYTHON) still gets the interpreter with verl and hydra."""
    venv_python = REPO / ".venv" / "bin" / "python"
    if not venv_python.exists():
        pytest.skip("the project's .venv is not in the repository root (RPO_VENV elsewhere)")
    bare_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DRY_RUN": "1", "DATA_DIR": DATA_DIR}
    result = subprocess.run(
        ["bash", str(REPRO / "run_grpo_1.5b_rpo.sh")],
        env=bare_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"scripts/repro: using {venv_python}" in result.stderr
    assert flatten(yaml.safe_load(result.stdout))["rpo.enable"] is True


def test_shared_prefix_is_on_in_the_rpo_arm_off_in_the_baseline_and_either_way_on_request(tmp_path):
    defaults = {run: dry_run(f"{run}.sh", tmp_path) for run in ("run_grpo_1.5b_rpo", "run_grpo_1.5b_baseline")}
    assert defaults["run_grpo_1.5b_rpo"]["rpo.shared_prefix"] is True
    assert defaults["run_grpo_1.5b_baseline"]["rpo.shared_prefix"] is False
    for run in defaults:
        assert dry_run(f"{run}.sh", tmp_path, SHARED_PREFIX="1")["rpo.shared_prefix"] is True
        off = dry_run(f"{run}.sh", tmp_path, SHARED_PREFIX="0")
        assert off["rpo.shared_prefix"] is False
        assert "actor_rollout_ref.model.override_config.attn_implementation" not in off
