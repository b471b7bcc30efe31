"""The character-level ChatML tokenizer: exact round trips, whole-token markup, the chat template, reloading."""

import json
import subprocess
import sys

import pytest

from verl_ext.tiny.arithmetic import problem_for
from verl_ext.tiny.tokenizer import CHAT_TEMPLATE, CHAT_TURN_START, EOS_TOKEN, MARKUP_TOKENS, PAD_TOKEN, build_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


TEXTS = [
    problem_for(47, 385).question,
    problem_for(999, 999).worked_solution,
    "  leading and  double spaces, trailing \n\n",
    "<think>\nx\n</think>\n<answer>\\boxed{12}</answer>",
    "".join(chr(c) for c in range(32, 127)) + "\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_decode_encode_round_trips(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_characters_and_markup_are_single_tokens(tokenizer):
    assert len(tokenizer.encode("a b\n", add_special_tokens=False)) == 4
    for markup in MARKUP_TOKENS + (CHAT_TURN_START, EOS_TOKEN, PAD_TOKEN):
        assert len(tokenizer.encode(markup, add_special_tokens=False)) == 1, markup


def test_special_token_ids(tokenizer):
    assert tokenizer.eos_token == EOS_TOKEN
    assert tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    assert tokenizer.convert_tokens_to_ids(CHAT_TURN_START) in tokenizer.all_special_ids
    assert tokenizer.encode("12", add_special_tokens=True) == tokenizer.encode("12", add_special_tokens=False)


def test_skip_special_tokens_keeps_markup(tokenizer):
    answer = "<think>\n1+2+0=3 -> 3\n</think>\n<answer>\\boxed{3}</answer>"
    text = f"{CHAT_TURN_START}assistant\n{answer}{EOS_TOKEN}{PAD_TOKEN}"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "assistant\n" + answer


def test_chat_template_renders_chatml(tokenizer):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Add: 1+2"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nAdd: 1+2<|im_end|>\n<|im_start|>assistant\n"
    no_prompt = tokenizer.apply_chat_template(messages[1:], tokenize=False, add_generation_prompt=False)
    assert no_prompt == "<|im_start|>user\nAdd: 1+2<|im_end|>\n"


def test_chat_template_tokenize_returns_flat_ids(tokenizer):
    """With return_dict=False apply_chat_template gives a flat list[int]; transformers 5's default
    (return_dict=True) wraps the same ids in a BatchEncoding."""
    messages = [{"role": "user", "content": "Add: 1+2"}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    assert tokenizer.decode(ids) == "<|im_start|>user\nAdd: 1+2<|im_end|>\n<|im_start|>assistant\n"
    default = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    assert (default if isinstance(default, list) else default["input_ids"]) == ids


def test_chat_template_is_in_tokenizer_config(tokenizer_dir):
    assert json.loads((tokenizer_dir / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE


def test_loads_in_a_fresh_process(tokenizer_dir, tokenizer):
    script = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "ids = tok.apply_chat_template([{'role': 'user', 'content': 'Add: 1+2'}], tokenize=False,"
        " add_generation_prompt=True)\n"
        "print(json.dumps({'prompt': ids, 'eos': tok.eos_token_id, 'pad': tok.pad_token_id, 'n': len(tok),"
        " 'enc': tok.encode('<think>\\n7+5+0=12 -> 2')}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tokenizer_dir)], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {
        "prompt": "<|im_start|>user\nAdd: 1+2<|im_end|>\n<|im_start|>assistant\n",
        "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id,
        "n": len(tokenizer),
        "enc": tokenizer.encode("<think>\n7+5+0=12 -> 2"),
    }
