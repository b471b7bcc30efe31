"""The random Qwen2 models: shapes vLLM's CPU kernels accept, saved so transformers reloads and runs them."""

import json

import pytest
import torch

from verl_ext.tiny.model import HEAD_DIM, PRESETS, build_config, build_model
from verl_ext.tiny.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    out_dir = tmp_path_factory.mktemp("model")
    tokenizer.save_pretrained(out_dir)
    build_model(out_dir, tokenizer, preset="tiny", seed=0)
    return out_dir


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_has_head_dim_64(tokenizer, preset):
    config = build_config(tokenizer, preset, "float32")
    assert config.hidden_size // config.num_attention_heads == HEAD_DIM == 64
    assert getattr(config, "head_dim", HEAD_DIM) == HEAD_DIM
    assert config.num_attention_heads % config.num_key_value_heads == 0
    assert config.vocab_size == len(tokenizer)


def test_saved_files_and_config(model_dir, tokenizer):
    assert (model_dir / "model.safetensors").is_file()
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["dtype"] == "float32"
    assert config["tie_word_embeddings"] is True
    assert config["max_position_embeddings"] == 1024
    assert config["eos_token_id"] == tokenizer.eos_token_id
    assert config["pad_token_id"] == tokenizer.pad_token_id
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tokenizer.eos_token_id


def test_loads_with_auto_model_and_runs_forward(model_dir, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = reloaded_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Add: 12+34"}], tokenize=True, add_generation_prompt=True, return_dict=False
    )
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tokenizer))
    assert torch.isfinite(logits).all()


def test_same_seed_same_weights(tmp_path, tokenizer, model_dir):
    from transformers import AutoModelForCausalLM

    rebuilt = build_model(tmp_path, tokenizer, preset="tiny", seed=0)
    saved = AutoModelForCausalLM.from_pretrained(model_dir)
    for (name, expected), actual in zip(saved.state_dict().items(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(expected, actual), name


def test_max_positions_sets_the_context_and_keeps_the_weights(tmp_path, tokenizer, model_dir):
    from transformers import AutoModelForCausalLM

    assert build_config(tokenizer, "tiny", "float32").max_position_embeddings == 1024
    longer = build_model(tmp_path, tokenizer, preset="tiny", seed=0, max_positions=4096)
    assert json.loads((tmp_path / "config.json").read_text())["max_position_embeddings"] == 4096
    # RoPE has no position weights: the same seed gives the same weights whatever the context length.
    saved = AutoModelForCausalLM.from_pretrained(model_dir)
    for (name, expected), actual in zip(saved.state_dict().items(), longer.state_dict().values(), strict=True):
        assert torch.equal(expected, actual), name
    with pytest.raises(ValueError):
        build_config(tokenizer, "tiny", "float32", max_positions=0)
