"""Randomly initialised Qwen2 models small enough to train and serve on two CPU cores.

Qwen2 is used because verl, transformers and vLLM all support it natively, so the tiny model exercises the
same code paths as a real Qwen2.5 checkpoint. Every preset keeps head_dim at 64: vLLM's CPU attention kernels
support only a few head sizes and 64 is the smallest of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

HEAD_DIM = 64
# Default context length. RoPE has no position weights, so a longer context (``max_positions``) gives the same
# weights for the same seed; only config.json changes.
MAX_POSITION_EMBEDDINGS = 1024

PresetName = Literal["tiny", "small"]
DtypeName = Literal["float32", "bfloat16"]


@dataclass(frozen=True)
class ModelPreset:
    """Width and depth of one model size; attention heads follow from hidden_size / HEAD_DIM."""

    hidden_size: int
    num_key_value_heads: int
    num_hidden_layers: int
    intermediate_size: int

    @property
    def num_attention_heads(self) -> int:
        return self.hidden_size // HEAD_DIM


PRESETS: dict[str, ModelPreset] = {
    # 0.33M parameters; tests, the demo and the learning experiment: loads and steps in well under a second.
    "tiny": ModelPreset(hidden_size=128, num_key_value_heads=1, num_hidden_layers=2, intermediate_size=256),
    # ~3M parameters: enough capacity to learn column addition in a short supervised warm-up on CPU.
    "small": ModelPreset(hidden_size=256, num_key_value_heads=2, num_hidden_layers=4, intermediate_size=768),
}


def build_config(
    tokenizer: PreTrainedTokenizerBase,
    preset: PresetName,
    dtype: DtypeName,
    max_positions: int = MAX_POSITION_EMBEDDINGS,
) -> Qwen2Config:
    """The Qwen2 config for ``preset``, its vocabulary exactly the tokenizer's so no model id lacks a token.

    ``max_positions`` is the context length (max_position_embeddings), which also caps vLLM's max_model_len: the
    rollout benchmark needs prompt + response > 1024 for 2048- and 4096-token response budgets.

    bos_token_id is the pad token, as in Qwen2.5's own config: ChatML prepends no BOS, but some loaders expect
    the field to hold a valid id."""
    if max_positions < 1:
        raise ValueError(f"max_positions must be >= 1, got {max_positions}")
    shape = PRESETS[preset]
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=int(max_positions),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype=dtype,
    )


def build_model(
    out_dir: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    *,
    preset: PresetName = "tiny",
    seed: int = 0,
    dtype: DtypeName = "float32",
    max_positions: int = MAX_POSITION_EMBEDDINGS,
) -> Qwen2ForCausalLM:
    """Initialises a Qwen2ForCausalLM with a fixed seed and saves it to ``out_dir`` as safetensors, with a
    generation_config.json whose eos is the tokenizer's, so generation stops at the end of the assistant turn.

    The same (tokenizer, preset, seed, dtype) always gives the same weights, so tests and experiments are
    reproducible without shipping a checkpoint."""
    config = build_config(tokenizer, preset, dtype, max_positions)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return model
