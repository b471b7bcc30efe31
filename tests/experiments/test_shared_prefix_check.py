"""scripts/check_shared_prefix.py (verl_ext.experiments.shared_prefix_check.main): the flash option on a machine
without flash-attn or CUDA, and the reference kernel's run of the flash layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from verl_ext.experiments import shared_prefix_check

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_shared_prefix.py"


def test_flash_check_help_lists_both_attentions_and_the_reference_kernel():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "--attn {sdpa,flash_attention_2}" in result.stdout and "--reference-kernel" in result.stdout


def test_flash_check_without_flash_attn_says_it_needs_cuda_and_offers_the_reference(capsys):
    try:
        import flash_attn  # noqa: F401
        pytest.skip("flash-attn is installed here")
    except ImportError:
        pass
    with pytest.raises(SystemExit) as stop:
        shared_prefix_check.main(["--attn", "flash_attention_2"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "needs the flash-attn package and a CUDA device" in err and "--reference-kernel" in err


def test_flash_check_runs_the_layout_through_the_reference_kernel_on_cpu(capsys):
    assert shared_prefix_check.main(["--attn", "flash_attention_2", "--reference-kernel", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "attention rpo_varlen_reference, float32, tolerance 1e-05" in out
    assert out.count(" seed 0: ") == len(shared_prefix_check.TINY_MODELS)
    assert "per-row" in out and "packed" in out and out.rstrip().endswith("PASS")
