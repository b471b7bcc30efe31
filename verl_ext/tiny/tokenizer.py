"""A character-level ChatML tokenizer assembled from code, so tests and CPU runs need no hub download.

It is a genuine Qwen2 tokenizer (byte-level BPE, Qwen's pre-tokenizer regex) whose vocabulary is the 256
byte-level symbols and which has no merges: every byte of the text is one token. Being a real Qwen2 tokenizer
matters because transformers 5 loads any tokenizer next to a ``qwen2`` config as ``Qwen2Tokenizer`` and rebuilds
its pipeline from the vocabulary (a WordLevel tokenizer saved there silently loses every whitespace token), and
vLLM and verl load it the same way. The vocabulary stays ~270 ids, which keeps the tiny models' embedding tables
small. The reasoning markup of the task ("<think>", "<answer>", ...) is one token each: the model then emits the
format in a single step, and the reward's format check cannot be half-satisfied by a partially spelled tag.

transformers 5.x (checked with 5.10) makes ``apply_chat_template(..., tokenize=True)`` return a BatchEncoding
({"input_ids", "attention_mask"}) unless ``return_dict=False`` is passed; that is a library default, not a
tokenizer setting. vLLM 0.24 passes return_dict=False and verl normalises both shapes
(verl.utils.tokenizer.normalize_token_ids); other callers should pass return_dict=False for a flat list[int].
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, pre_tokenizers
from transformers import PreTrainedTokenizerBase
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

PAD_TOKEN = "<|endoftext|>"
CHAT_TURN_START = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
UNK_TOKEN = "<|unk|>"
SPECIAL_TOKENS = (PAD_TOKEN, CHAT_TURN_START, EOS_TOKEN, UNK_TOKEN)

MARKUP_TOKENS = ("<think>", "</think>", "<answer>", "</answer>", "\\boxed{")

# The 256 byte-level symbols (GPT-2's bytes_to_unicode alphabet): with no merges, each byte is one token.
BYTE_SYMBOLS = tuple(sorted(pre_tokenizers.ByteLevel.alphabet()))

# Qwen2-style ChatML without Qwen's default system prompt: the tiny task's prompts must stay short, and with no
# implicit system turn, rendering each message alone and concatenating equals rendering the conversation, which
# verl's MultiTurnSFTDataset asserts (its sanity_check).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


def build_tokenizer(out_dir: str | Path, model_max_length: int = 1024) -> PreTrainedTokenizerBase:
    """Builds the tokenizer, saves it to ``out_dir`` and returns it; ``AutoTokenizer.from_pretrained(out_dir)``
    (and vLLM) give back an equivalent tokenizer.

    The chat template goes into tokenizer_config.json rather than transformers 5's separate chat_template.jinja,
    so readers of either transformers generation find it. ``model_max_length`` should be the model's context
    length (``max_positions`` of the build)."""
    vocab = {token: token_id for token_id, token in enumerate(SPECIAL_TOKENS + BYTE_SYMBOLS)}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=UNK_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=int(model_max_length),
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [CHAT_TURN_START]})
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in MARKUP_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(out_dir), save_jinja_files=False)
    return tokenizer
