"""The warm-up's bookkeeping, without running verl: the idempotence stamp, the command line it hands to torchrun
and the loss parsing of verl's console output."""

import json
from pathlib import Path

import pytest

from verl_ext.tiny import warmup
from verl_ext.tiny.__main__ import main
from verl_ext.tiny.assets import STAMP_NAME as BUILD_STAMP_NAME
from verl_ext.tiny.assets import TinyAssets

PARAMS = warmup.WarmupParams(steps=3, batch_size=4)


def _fake_build(assets_dir: Path, seed: int = 0) -> None:
    assets_dir.mkdir(parents=True, exist_ok=True)
    (assets_dir / BUILD_STAMP_NAME).write_text(json.dumps({"format": 1, "preset": "tiny", "seed": seed}))


def _fake_warm(assets_dir: Path, params: warmup.WarmupParams) -> None:
    """What a finished warm-up leaves: weights and the stamp (written by warm_up itself)."""
    out_dir = warmup.warm_dir(assets_dir)
    out_dir.mkdir(parents=True)
    (out_dir / warmup.WEIGHTS_NAME).write_bytes(b"weights")
    (out_dir / warmup.STAMP_NAME).write_text(json.dumps(warmup._stamp(assets_dir, params)))


def test_stamp_matches_only_the_same_build_and_parameters(tmp_path: Path) -> None:
    _fake_build(tmp_path)
    assert not warmup.is_current(tmp_path, PARAMS)
    _fake_warm(tmp_path, PARAMS)
    assert warmup.is_current(tmp_path, PARAMS)
    assert not warmup.is_current(tmp_path, warmup.WarmupParams(steps=4, batch_size=4))
    _fake_build(tmp_path, seed=1)  # the assets were rebuilt with other parameters
    assert not warmup.is_current(tmp_path, PARAMS)


def test_missing_weights_mean_not_current(tmp_path: Path) -> None:
    _fake_build(tmp_path)
    _fake_warm(tmp_path, PARAMS)
    (warmup.warm_dir(tmp_path) / warmup.WEIGHTS_NAME).unlink()
    assert not warmup.is_current(tmp_path, PARAMS)


def test_without_a_build_the_error_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(warmup.WarmupError, match="verl_ext.tiny build"):
        warmup.warm_up(tmp_path, PARAMS)


def test_cli_does_nothing_when_current(tmp_path: Path, monkeypatch, capsys) -> None:
    _fake_build(tmp_path)
    _fake_warm(tmp_path, PARAMS)
    monkeypatch.setattr(warmup, "warm_up", lambda *a, **k: pytest.fail("warm-up ran although it was current"))
    main(["warmup", "--assets", str(tmp_path), "--steps", "3", "--batch-size", "4"])
    assert "nothing to do" in capsys.readouterr().out


def test_epochs_cover_the_requested_steps(tmp_path: Path) -> None:
    """verl stops after total_epochs even before total_training_steps, and then saves no checkpoint."""
    command = warmup.sft_command(TinyAssets.at(tmp_path), warmup.WarmupParams(steps=25, batch_size=8), tmp_path, 70)
    assert "trainer.total_training_steps=25" in command
    assert "trainer.total_epochs=4" in command  # 70 // 8 = 8 full batches per epoch
    assert "checkpoint.save_contents=[hf_model]" in command and "trainer.resume_mode=disable" in command
    with pytest.raises(warmup.WarmupError, match="exceeds"):
        warmup.sft_command(TinyAssets.at(tmp_path), warmup.WarmupParams(batch_size=8), tmp_path, 7)


def test_parse_losses_reads_verl_console_lines() -> None:
    output = (
        "Epoch 1/4:   0%|  | 0/62 [00:00<?, ?it/s]step:1 - perf/max_memory_allocated_gb:1.2 - train/loss:5.575 - "
        "train/grad_norm:12.5 - train/lr:0.001\n"
        "step:2 - train/loss:4.9e-01 - train/lr:0.001\n"
    )
    assert warmup.parse_losses(output) == {1: 5.575, 2: 0.49}


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="lr_scheduler"):
        warmup.WarmupParams(lr_scheduler="linear")
    with pytest.raises(ValueError, match="positive"):
        warmup.WarmupParams(steps=0)


def test_a_relative_assets_dir_reaches_verl_as_an_absolute_model_path(tmp_path: Path, monkeypatch) -> None:
    """verl's trainer runs in the run directory; a relative model path there is read as a hub repo id."""
    import pandas as pd

    _fake_build(tmp_path / "assets")
    TinyAssets.at(tmp_path / "assets").sft_path.parent.mkdir(parents=True)
    pd.DataFrame({"messages": [[]] * 8}).to_parquet(TinyAssets.at(tmp_path / "assets").sft_path)
    seen: list[list[str]] = []

    def fake_run(command, cwd, log_path, console):
        seen.append(command)
        raise warmup.WarmupError("stop here")

    monkeypatch.setattr(warmup, "_run_streaming", fake_run)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(warmup.WarmupError, match="stop here"):
        warmup.warm_up("assets", PARAMS)
    model_path = next(arg.split("=", 1)[1] for arg in seen[0] if arg.startswith("model.path="))
    assert Path(model_path).is_absolute() and Path(model_path) == (tmp_path / "assets" / "model")
