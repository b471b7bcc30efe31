"""verl_ext.cache.offline and data_prep/build_cache.py without vLLM: reading and keying the training set, rendering
prompts as verl's agent loop does, building and saving the cache from a stand-in generator, and the error messages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoTokenizer

from verl_ext.cache.keys import DatasetKeyError
from verl_ext.cache.offline import (
    Generation,
    OfflineCacheError,
    build_cache,
    read_training_prompts,
    render_prompts,
)
from verl_ext.cache.store import ExperienceCache, tokenizer_fingerprint
from verl_ext.tiny.arithmetic import worked_solution

REPO = Path(__file__).resolve().parents[2]


def load_cli():
    spec = importlib.util.spec_from_file_location("rpo_build_cache_cli", REPO / "data_prep" / "build_cache.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer(tiny_assets):
    return AutoTokenizer.from_pretrained(tiny_assets.model_dir)


def write_rows(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def row(index, question="Add: 1+2", truth="3", data_source="math") -> dict:
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": question}],
        "reward_model": {"style": "rule", "ground_truth": truth},
        "extra_info": {"index": index},
    }


def test_reads_one_keyed_prompt_per_row_in_file_order(tiny_assets):
    prompts = read_training_prompts([tiny_assets.train_path], "index")
    frame = pd.read_parquet(tiny_assets.train_path)
    assert [p.key for p in prompts] == [f"tiny_arith:{i}" for i in range(len(frame))]
    assert prompts[0].messages == [dict(m) for m in frame["prompt"][0]]
    assert prompts[0].ground_truth == frame["reward_model"][0]["ground_truth"]
    assert len(read_training_prompts([tiny_assets.train_path], "index", max_samples=4)) == 4


def test_several_files_concatenate_and_content_keys_share_one_entry(tmp_path):
    first = write_rows(tmp_path / "a.parquet", [row(0, "Add: 1+2"), row(1, "Add: 2+2", "4")])
    second = write_rows(tmp_path / "b.parquet", [row(0, "Add: 1+2", data_source="other")])
    assert [p.key for p in read_training_prompts([first, second], "index")] == ["math:0", "math:1", "other:0"]

    repeated = write_rows(tmp_path / "c.parquet", [row(0, "Add: 1+2"), row(1, "Add: 1+2"), row(2, "Add: 5+5", "10")])
    assert len(read_training_prompts([repeated], "content")) == 2


def test_prompts_are_rendered_as_verl_sends_them_to_the_engine(tiny_assets, tokenizer):
    prompts = read_training_prompts([tiny_assets.train_path], "index", max_samples=3)
    expected = [tokenizer.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=True, return_dict=False)
                for p in prompts]
    assert render_prompts(prompts, tokenizer, "qwen2") == expected


def test_cache_holds_one_scored_offline_entry_per_prompt(tiny_assets, tokenizer, tmp_path):
    prompts = read_training_prompts([tiny_assets.train_path], "index", max_samples=3)
    eos = tokenizer.eos_token_id
    correct = tokenizer.encode(worked_solution(*map(int, prompts[0].messages[-1]["content"][5:].split("+"))))
    answers = [
        Generation(correct + [eos]),  # a finished, correct answer
        Generation([5, 6, 7, eos], [-0.5, -1.0, -0.25, -0.1]),  # finished, wrong, with log-probs
        Generation([8] * 32),  # cut off by the response length
    ]
    seen_prompts: list[list[int]] = []

    def generate(prompt_ids: list[list[int]]) -> list[Generation]:
        seen_prompts.extend(prompt_ids)
        return answers

    prompt_ids = render_prompts(prompts, tokenizer, "qwen2")
    cache = build_cache(prompts, prompt_ids, generate, tokenizer, key_mode="index", max_tokens=len(correct) + 1)
    assert seen_prompts == prompt_ids

    path = tmp_path / "cache.parquet"
    cache.save(path)
    loaded = ExperienceCache.load(path, expected_tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
                                  expected_key_mode="index")
    assert loaded == cache and list(loaded) == [p.key for p in prompts]
    entries = [loaded.get(p.key) for p in prompts]
    assert all(e.source == "offline" and e.step == 0 for e in entries)
    assert [e.finished for e in entries] == [True, True, False]
    assert [e.acc for e in entries] == [True, False, False]
    assert entries[0].score > entries[1].score
    assert list(entries[1].logprobs) == pytest.approx([-0.5, -1.0, -0.25, -0.1])
    assert entries[0].logprobs is None
    assert list(entries[2].response_ids) == [8] * 32


def test_an_answer_longer_than_the_response_length_is_refused(tiny_assets, tokenizer):
    prompts = read_training_prompts([tiny_assets.train_path], "index", max_samples=1)
    with pytest.raises(OfflineCacheError, match="more than the response length 4"):
        build_cache(prompts, [[1]], lambda ids: [Generation([1, 2, 3, 4, 5])], tokenizer, key_mode="index",
                    max_tokens=4)


def test_errors_name_the_file_and_the_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet does not exist"):
        read_training_prompts([tmp_path / "missing.parquet"], "index")

    no_reward = write_rows(tmp_path / "no_reward.parquet", [{k: v for k, v in row(0).items() if k != "reward_model"}])
    with pytest.raises(OfflineCacheError, match=r"no_reward.parquet: column\(s\) \['reward_model'\] missing"):
        read_training_prompts([no_reward], "index")

    no_truth = write_rows(tmp_path / "no_truth.parquet", [row(0), {**row(1), "reward_model": {"style": "rule"}}])
    with pytest.raises(OfflineCacheError, match=r"no_truth.parquet: row 1 has no reward_model.ground_truth"):
        read_training_prompts([no_truth], "index")

    no_index = write_rows(tmp_path / "no_index.parquet", [row(0), {**row(1), "extra_info": {"split": "train"}}])
    with pytest.raises(DatasetKeyError, match=r"no_index.parquet[\s\S]*1 rows have no extra_info.index"):
        read_training_prompts([no_index], "index")


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    cli = load_cli()
    args = ["--model", "unused", "--out", str(tmp_path / "cache.parquet"), "--response-length", "32"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--data", str(tmp_path / "missing.parquet")])
    assert exit_info.value.code == 2
    assert "error: training file" in capsys.readouterr().err

    data = write_rows(tmp_path / "train.parquet", [row(0)])
    with pytest.raises(SystemExit):
        cli.main(["--model", "unused", "--data", str(data), "--out", str(tmp_path / "no_dir" / "c.parquet"),
                  "--response-length", "32"])
    assert "directory" in capsys.readouterr().err
