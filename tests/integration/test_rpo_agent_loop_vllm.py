"""RPOAgentLoop through verl's own agent-loop machinery against a real vLLM (CPU build) server on the tiny model.

No trainer: verl's ``LLMServerManager`` starts a standalone rollout replica (``init_standalone``: vLLM loads the
weights from disk), ``RewardLoopManager`` starts the streaming reward worker with RPO's ``compute_score``, and
``AgentLoopManager`` runs the batch, finding ``rpo_agent`` through ``agent_loop_config_path`` as the trainer does.
The batch carries the columns PartialRollout writes (prefix ids as an object array of int32 arrays, budgets, loss
flags, cached log-probs), so this checks the whole column -> engine -> DataProto path that unit tests fake: the
layout of prompts, responses, response_mask, rollout_log_probs and rm_scores the trainer's loss and cache read.

verl selects its platform at import time, so the rollout runs in a child process started with VERL_PLATFORM=cpu
(this file is also that child's script) and hands its output back through a file. The child starts its own local
Ray cluster and shuts it down; whatever it leaves behind (vLLM's EngineCore can outlive its Ray actor) is killed
by session id, never by name.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from verl_ext.tiny.arithmetic import problem_for

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPT_LENGTH = 64
RESPONSE_LENGTH = 40
TIMEOUT_S = 600

PROBLEM = problem_for(23, 19)
MESSAGES = [{"role": "user", "content": PROBLEM.question}]
GROUND_TRUTH = str(PROBLEM.answer)
# The worked answer up to its boxed number: "<think>\n3+9+0=12 -> 2\n2+1+1=4 -> 42\n</think>\n<answer>\\boxed{".
ANSWER_OPENING = PROBLEM.worked_solution[: PROBLEM.worked_solution.index("\\boxed{") + len("\\boxed{")]
# (name, prefix text, rpo_max_new_tokens, loss_on_prefix, cached prefix log-probs?)
ROWS: list[tuple[str, str, int, bool, bool]] = [
    # Cut right before the boxed number: the room left in R (40 - 34 = 6) binds, not the request (8).
    ("cut_at_answer", ANSWER_OPENING, 8, False, True),
    # Early cut: the request binds; the prefix also enters the loss.
    ("cut_early", "<think>\n3+9", 4, True, False),
    # Cold start: no prefix, the full budget R.
    ("seed", "", RESPONSE_LENGTH, False, False),
]


def prefix_ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) if text else []


def cached_logprobs(n: int) -> np.ndarray:
    """Stand-in cached behaviour log-probs, exactly representable in float32."""
    return np.asarray([-0.5 - 0.25 * i for i in range(n)], dtype=np.float32)


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


# --- child process: start the server, the reward worker and the agent-loop worker, generate one batch -----------


def generate(model_dir: str, out_path: str) -> None:
    """Runs in the VERL_PLATFORM=cpu child; writes the generated DataProto's tensors and columns to ``out_path``."""
    import ray
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl import DataProto
    from verl.experimental.agent_loop import AgentLoopManager
    from verl.experimental.reward_loop import RewardLoopManager, migrate_legacy_reward_impl
    from verl.workers.rollout.llm_server import LLMServerManager

    from verl_ext.rollout.agent_loop import (
        LOSS_ON_PREFIX,
        MAX_NEW_TOKENS,
        PREFIX_IDS,
        PREFIX_LOGPROBS,
        RPO_AGENT_NAME,
        agent_loop_config_path,
    )

    with initialize_config_module(config_module="verl_ext.cpu.config", version_base=None):
        config = compose(
            "ppo_trainer_cpu",
            overrides=[
                f"actor_rollout_ref.model.path={model_dir}",
                f"data.max_prompt_length={PROMPT_LENGTH}",
                f"data.max_response_length={RESPONSE_LENGTH}",
                # Standalone replica: its own resource pool of one (logical) accelerator on this node.
                "actor_rollout_ref.rollout.nnodes=1",
                "actor_rollout_ref.rollout.calculate_log_probs=true",
                f"actor_rollout_ref.rollout.agent.agent_loop_config_path={agent_loop_config_path()}",
                "reward.custom_reward_function.path=pkg://verl_ext.rewards",
                "reward.custom_reward_function.name=compute_score",
            ],
        )
    config = migrate_legacy_reward_impl(config)
    ray_init = OmegaConf.to_container(config.ray_kwargs.ray_init, resolve=True)
    # "local": always a fresh cluster of our own, never one another job started on this machine.
    ray.init(address="local", include_dashboard=False, **{k: v for k, v in ray_init.items() if v is not None})
    try:
        servers = LLMServerManager.create(config=config, worker_group=None)
        rewards = RewardLoopManager(config=config)
        agents = AgentLoopManager.create(
            config=config,
            llm_client=servers.get_client(),
            reward_loop_worker_handles=rewards.reward_loop_worker_handles,
        )

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        prefixes = [np.asarray(prefix_ids(tokenizer, text), dtype=np.int32) for _, text, *_ in ROWS]
        n = len(ROWS)
        batch = DataProto.from_dict(
            non_tensors={
                "raw_prompt": _objects([MESSAGES] * n),
                "data_source": _objects(["tiny_arith"] * n),
                "reward_model": _objects([{"style": "rule", "ground_truth": GROUND_TRUTH}] * n),
                "extra_info": _objects([{"index": i, "split": "test"} for i in range(n)]),
                "uid": _objects([name for name, *_ in ROWS]),
                "agent_name": _objects([RPO_AGENT_NAME] * n),
                PREFIX_IDS: _objects(prefixes),
                MAX_NEW_TOKENS: np.asarray([budget for _, _, budget, _, _ in ROWS], dtype=np.int64),
                LOSS_ON_PREFIX: np.asarray([loss for *_, loss, _ in ROWS], dtype=bool),
                PREFIX_LOGPROBS: _objects(
                    [
                        cached_logprobs(len(p)) if cached else None
                        for p, (*_, cached) in zip(prefixes, ROWS, strict=True)
                    ]
                ),
            }
        )
        output = agents.generate_sequences(batch)
        torch.save(
            {
                "batch": {key: output.batch[key] for key in output.batch.keys()},
                "non_tensor": dict(output.non_tensor_batch),
                "reward_extra_keys": list(output.meta_info.get("reward_extra_keys", [])),
            },
            out_path,
        )
    finally:
        ray.shutdown()


# --- the test -------------------------------------------------------------------------------------------------------


def _session_members(session_id: int) -> list[int]:
    """Pids whose session is ``session_id`` (the child was started in a new session, so that is what it spawned)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp session ...
        if int(fields[3]) == session_id:
            members.append(int(entry.name))
    return members


def _kill_session(session_id: int) -> None:
    for pid in _session_members(session_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_child(model_dir: Path, out_path: Path, log_path: Path) -> int:
    env = {**os.environ, "VERL_PLATFORM": "cpu", "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [sys.executable, __file__, str(model_dir), str(out_path)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return child.wait(timeout=TIMEOUT_S)
        finally:
            _kill_session(child.pid)
            child.wait()


@pytest.fixture(scope="module")
def rollout(tiny_assets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("rpo_agent_loop_vllm")
    out_path, log_path = work / "output.pt", work / "child.log"
    returncode = run_child(tiny_assets.model_dir, out_path, log_path)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
    assert returncode == 0 and out_path.exists(), f"rollout child failed (rc={returncode}):\n{tail}"
    return torch.load(out_path, weights_only=False)


@pytest.fixture(scope="module")
def tokenizer(tiny_assets):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_assets.model_dir)


def test_rpo_rows_through_verl_agent_loop_and_vllm(rollout: dict[str, Any], tokenizer) -> None:
    from verl_ext.rewards import compute_score

    batch, columns = rollout["batch"], rollout["non_tensor"]
    prompts, responses = batch["prompts"], batch["responses"]
    response_mask, attention_mask = batch["response_mask"], batch["attention_mask"]
    logprobs, rm_scores = batch["rollout_log_probs"], batch["rm_scores"]
    assert prompts.shape == (len(ROWS), PROMPT_LENGTH)
    assert responses.shape == response_mask.shape == logprobs.shape == rm_scores.shape == (len(ROWS), RESPONSE_LENGTH)
    assert torch.equal(batch["input_ids"], torch.cat([prompts, responses], dim=1))
    assert "acc" in rollout["reward_extra_keys"]

    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    eos = tokenizer.eos_token_id
    for i, (name, text, requested, loss_on_prefix, cached) in enumerate(ROWS):
        prefix = prefix_ids(tokenizer, text)
        budget = min(requested, RESPONSE_LENGTH - len(prefix))
        if name == "cut_at_answer":
            assert budget < requested, "premise: this row's budget is bound by the room left in R"
        valid = int(attention_mask[i, PROMPT_LENGTH:].sum())
        generated = valid - len(prefix)
        where = f"row {name}"

        # The prompt alone, left-padded, in the prompt slot; prefix + suffix right-padded in the response slot.
        assert prompts[i, PROMPT_LENGTH - len(prompt) :].tolist() == list(prompt), where
        assert attention_mask[i, :PROMPT_LENGTH].tolist() == [0] * (PROMPT_LENGTH - len(prompt)) + [1] * len(prompt)
        assert attention_mask[i, PROMPT_LENGTH:].tolist() == [1] * valid + [0] * (RESPONSE_LENGTH - valid), where
        assert 1 <= generated <= budget, f"{where}: {generated} tokens generated, budget {budget}"
        assert responses[i, : len(prefix)].tolist() == prefix, f"{where}: prefix not reproduced verbatim"
        assert int(columns["rpo_prefix_len"][i]) == len(prefix), where
        assert int(columns["rpo_generated_tokens"][i]) == generated, where

        # Loss mask: the prefix only with loss_on_prefix, every generated token, no padding.
        expected_mask = [int(loss_on_prefix)] * len(prefix) + [1] * generated + [0] * (RESPONSE_LENGTH - valid)
        assert response_mask[i].tolist() == expected_mask, where

        # vLLM stops at the first EOS: one before the budget ran out must be the last valid token.
        suffix = responses[i, len(prefix) : valid].tolist()
        assert eos not in suffix[:-1], where
        if generated < budget:
            assert suffix[-1] == eos, f"{where}: stopped early at {generated}/{budget} without EOS"

        # Rollout log-probs: cached values (or 0) on the prefix, the engine's on the suffix, 0 on padding.
        prefix_logprobs = cached_logprobs(len(prefix)).tolist() if cached else [0.0] * len(prefix)
        assert logprobs[i, : len(prefix)].tolist() == prefix_logprobs, where
        suffix_logprobs = logprobs[i, len(prefix) : valid].tolist()
        assert all(math.isfinite(x) and x <= 0.0 for x in suffix_logprobs), f"{where}: {suffix_logprobs}"
        assert any(x < 0.0 for x in suffix_logprobs), f"{where}: a sampled suffix of a random model has log-prob 0"
        assert logprobs[i, valid:].abs().sum() == 0, where

        # Streaming reward: RPO's compute_score on the decoded prefix + suffix, placed at the last valid token.
        full_text = tokenizer.decode(responses[i, :valid].tolist(), skip_special_tokens=True)
        expected = compute_score("tiny_arith", full_text, GROUND_TRUTH)
        assert rm_scores[i, valid - 1].item() == pytest.approx(expected["score"], abs=1e-6), where
        assert torch.count_nonzero(torch.cat([rm_scores[i, : valid - 1], rm_scores[i, valid:]])) == 0, where
        assert bool(columns["acc"][i]) == expected["acc"], where
        if prefix:
            # Premise that makes the check above discriminating: the suffix alone would score differently.
            suffix_text = tokenizer.decode(suffix, skip_special_tokens=True)
            assert compute_score("tiny_arith", suffix_text, GROUND_TRUTH)["score"] != expected["score"], where


def _child_main(argv: list[str]) -> None:
    from verl_ext.cpu import cpu_platform_selected

    if not cpu_platform_selected():
        raise SystemExit("run with VERL_PLATFORM=cpu (verl picks its platform at import time)")
    model_dir, out_path = argv
    generate(model_dir, out_path)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
