"""The build CLI and ensure_tiny_assets: complete output, and a second call with the same parameters is a no-op."""

import json
import subprocess
import sys

import pandas as pd

from verl_ext.tiny import TinyAssets, ensure_tiny_assets
from verl_ext.tiny.__main__ import main
from verl_ext.tiny.assets import STAMP_NAME

SMALL_BUILD = ["--n-train", "8", "--n-val", "4", "--n-sft", "16", "--seed", "1"]


def _mtimes(assets: TinyAssets) -> dict:
    return {path: path.stat().st_mtime_ns for path in assets.model_dir.parent.rglob("*") if path.is_file()}


def test_build_then_second_call_does_nothing(tmp_path, capsys):
    out_dir = tmp_path / "tiny"
    main(["build", "--out", str(out_dir), *SMALL_BUILD])
    assert "built" in capsys.readouterr().out
    assets = TinyAssets.at(out_dir)
    assert (assets.model_dir / "config.json").is_file() and (assets.model_dir / "tokenizer.json").is_file()
    assert [len(pd.read_parquet(p)) for p in (assets.train_path, assets.val_path, assets.sft_path)] == [8, 4, 16]
    assert json.loads((out_dir / STAMP_NAME).read_text())["n_sft"] == 16
    before = _mtimes(assets)

    second = subprocess.run(
        [sys.executable, "-m", "verl_ext.tiny", "build", "--out", str(out_dir), *SMALL_BUILD],
        capture_output=True, text=True, check=True,
    )
    assert "nothing to do" in second.stdout
    assert ensure_tiny_assets(out_dir, n_train=8, n_val=4, n_sft=16, seed=1) == assets
    assert _mtimes(assets) == before


def test_changed_parameters_rebuild(tmp_path, capsys):
    out_dir = tmp_path / "tiny"
    main(["build", "--out", str(out_dir), *SMALL_BUILD])
    capsys.readouterr()
    main(["build", "--out", str(out_dir), *SMALL_BUILD, "--n-val", "6"])
    assert capsys.readouterr().out.startswith("built")
    assert len(pd.read_parquet(TinyAssets.at(out_dir).val_path)) == 6


def test_interrupted_build_is_redone(tmp_path):
    out_dir = tmp_path / "tiny"
    params = {"n_train": 8, "n_val": 4, "n_sft": 16}
    assets = ensure_tiny_assets(out_dir, **params)
    assets.sft_path.unlink()
    assert ensure_tiny_assets(out_dir, **params).sft_path.is_file()


def test_max_positions_option_and_old_stamps_stay_current(tmp_path, capsys):
    out_dir = tmp_path / "tiny"
    main(["build", "--out", str(out_dir), *SMALL_BUILD, "--max-positions", "4096"])
    assets = TinyAssets.at(out_dir)
    assert json.loads((assets.model_dir / "config.json").read_text())["max_position_embeddings"] == 4096
    assert json.loads((assets.model_dir / "tokenizer_config.json").read_text())["model_max_length"] == 4096
    assert json.loads((out_dir / STAMP_NAME).read_text())["max_positions"] == 4096
    capsys.readouterr()
    main(["build", "--out", str(out_dir), *SMALL_BUILD])  # the default context is another build
    assert capsys.readouterr().out.startswith("built")
    assert json.loads((assets.model_dir / "config.json").read_text())["max_position_embeddings"] == 1024

    # A build stamped before max_positions existed (format 1, no such key) is still current at the default.
    stamp = json.loads((out_dir / STAMP_NAME).read_text())
    assert "max_positions" not in stamp
    assert ensure_tiny_assets(out_dir, n_train=8, n_val=4, n_sft=16, seed=1) == assets


def test_task_option_builds_the_chain_and_the_default_stamp_stays_unchanged(tmp_path):
    out_dir = tmp_path / "tiny"
    main(["build", "--out", str(out_dir), *SMALL_BUILD, "--task", "chain"])
    assets = TinyAssets.at(out_dir)
    questions = pd.read_parquet(assets.train_path)["extra_info"].map(lambda extra: extra["question"])
    assert questions.str.fullmatch(r"Chain: \d{4}").all()
    assert json.loads((out_dir / STAMP_NAME).read_text())["task"] == "chain"
    main(["build", "--out", str(out_dir), *SMALL_BUILD])  # the default task is another build, stamped as before
    assert "task" not in json.loads((out_dir / STAMP_NAME).read_text())
    assert pd.read_parquet(assets.train_path)["extra_info"].map(lambda e: e["question"]).str.startswith("Add: ").all()


def test_sft_slip_rate_option_changes_the_demonstrations_only(tmp_path):
    clean_dir, slipped_dir = tmp_path / "clean", tmp_path / "slipped"
    main(["build", "--out", str(clean_dir), *SMALL_BUILD, "--task", "chain"])
    main(["build", "--out", str(slipped_dir), *SMALL_BUILD, "--task", "chain", "--sft-slip-rate", "0.5"])
    assert json.loads((slipped_dir / STAMP_NAME).read_text())["sft_slip_rate"] == 0.5
    assert "sft_slip_rate" not in json.loads((clean_dir / STAMP_NAME).read_text())
    clean, slipped = TinyAssets.at(clean_dir), TinyAssets.at(slipped_dir)
    assert pd.read_parquet(clean.train_path).equals(pd.read_parquet(slipped.train_path))
    assert pd.read_parquet(clean.val_path).equals(pd.read_parquet(slipped.val_path))
    answers = [pd.read_parquet(assets.sft_path)["messages"].map(lambda turns: turns[1]["content"])
               for assets in (clean, slipped)]
    assert (answers[0] != answers[1]).any()
