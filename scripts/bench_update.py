"""What one actor update of the tiny Qwen2 costs in plain torch on this machine: the floor verl's update is held to.

    python scripts/bench_update.py [--rows 16] [--row-tokens 1024 2048] [--threads 2]

Per row length, side by side in one run: forward + backward + AdamW step of the tiny model (sdpa, float32) in
tokens per second, (a) on full rows with no attention mask (causal), and (b) with the 2-D padding mask verl's FSDP
engine passes when ``use_remove_padding=false`` (each row padded by 10%), which makes transformers build a 4-D mask.
Compare with verl's own figure, ``1000 / timing_per_token_ms/update_actor`` in a run's metrics.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from verl_ext.tiny.model import build_model
from verl_ext.tiny.tokenizer import build_tokenizer


def tiny_model(max_positions: int) -> torch.nn.Module:
    with tempfile.TemporaryDirectory() as tmp:
        build_tokenizer(Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        build_model(Path(tmp), tokenizer, max_positions=max_positions)
        return AutoModelForCausalLM.from_pretrained(tmp, attn_implementation="sdpa", dtype=torch.float32)


def tokens_per_second(model: torch.nn.Module, rows: int, length: int, padded: bool, repeats: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    vocab = model.config.vocab_size
    total = int(length * 1.1) if padded else length
    input_ids = torch.randint(0, vocab, (rows, total))
    mask = None
    if padded:
        mask = torch.ones(rows, total, dtype=torch.long)
        mask[:, length:] = 0
    real_tokens = rows * length
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), input_ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return real_tokens / min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--row-tokens", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = tiny_model(max_positions=int(max(args.row_tokens) * 1.1) + 1)
    print(f"tiny Qwen2, {args.rows} rows, {args.threads} threads: tokens/s of forward + backward + AdamW")
    for length in args.row_tokens:
        full = tokens_per_second(model, args.rows, length, padded=False, repeats=args.repeats)
        padded = tokens_per_second(model, args.rows, length, padded=True, repeats=args.repeats)
        print(f"  rows of {length:5d}: no mask {full:9.0f}   padding mask {padded:9.0f}   ratio {padded / full:.2f}")


if __name__ == "__main__":
    main()
