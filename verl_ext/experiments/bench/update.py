"""What one actor update of the tiny Qwen2 costs on this machine: plain torch against verl's FSDP engine.

    python scripts/bench_update.py [--groups 4] [--group-size 4] [--row-tokens 1024 2048] [--suffix 128]

Per row length, side by side in one process (same threads), the forward + backward of the same rows, in tokens per
second of the rows and in GFLOP/s of the arithmetic actually done (matmuls and attention, forward + backward = 3x
forward; padding excluded):

* ``torch``: plain transformers, full rows, causal attention with no mask (the floor);
* ``torch_padding_mask``: the same with the 2-D padding mask verl's engine passes (rows padded by 10%);
* ``verl``: verl's FSDP engine (``forward_backward_batch`` with ``ppo_loss``, as the trainer's update), RPO-shaped
  batches (G rows per group sharing prompt + cached prefix, suffixes of ``--suffix`` tokens), ``rpo.shared_prefix``
  off: what the update cost before the shared-prefix passes;
* ``verl_loop_logprobs``: the same with verl's own CPU log-prob fallback (one ``logsumexp`` per token), which the
  CPU backend replaces (``patch_engine_logprobs``): the update before that fix;
* ``verl_shared_prefix``: the ``verl`` batches with ``rpo.shared_prefix`` on.

No optimizer step in any arm (it is the same AdamW over 0.33M parameters everywhere).

``--memory``: instead, the peak resident memory (CPU RSS) of one verl update with ``rpo.shared_prefix`` off and on,
each in a fresh process (``verl_ext.experiments.shared_prefix_harness --cases memory``), per row length.

Imports verl: the command line (``scripts/bench_update.py``) selects the CPU platform first.
"""


from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from transformers import AutoModelForCausalLM

from verl_ext.experiments.shared_prefix_harness import PROMPT_TOKENS, Batching, EngineUnderTest, Group, rpo_batch
from verl_ext.tiny import ensure_tiny_assets


def forward_flops(config, lengths: list[int], attended: list[int]) -> float:
    """Forward FLOPs of ``sum(lengths)`` tokens through the model's matmuls plus attention scores and values over
    ``attended`` (query, key) pairs: 2 per multiply-add."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    per_token = layers * (2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * config.intermediate_size)
    per_token += hidden * config.vocab_size
    return 2.0 * per_token * sum(lengths) + 2.0 * 2 * layers * hidden * sum(attended)


def causal_pairs(length: int) -> int:
    return length * (length + 1) // 2


def best_time(run: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def torch_arm(model: torch.nn.Module, rows: int, length: int, padded: bool) -> Callable[[], None]:
    vocab = model.config.vocab_size
    total = int(length * 1.1) if padded else length
    input_ids = torch.randint(0, vocab, (rows, total))
    mask = None
    if padded:
        mask = torch.ones(rows, total, dtype=torch.long)
        mask[:, length:] = 0

    def run() -> None:
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), input_ids[:, 1:].reshape(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)

    return run


def verl_logprob_fallback() -> Callable[[], None]:
    """Swap verl's own log-prob function back into its engine; returns the undo."""
    from verl.utils import torch_functional
    from verl.workers.engine.fsdp import transformer_impl

    patched = transformer_impl.logprobs_from_logits
    transformer_impl.logprobs_from_logits = torch_functional.logprobs_from_logits

    def undo() -> None:
        transformer_impl.logprobs_from_logits = patched

    return undo


def memory(args: argparse.Namespace) -> None:
    print(f"peak RSS of one verl update, {args.groups} groups x G={args.group_size}, suffix {args.suffix}, "
          "each setting in a fresh process")
    print(f"{'row tokens':>10} {'shared_prefix':>14} {'RSS before MiB':>15} {'peak RSS MiB':>13}")
    for length in args.row_tokens:
        for shared in ("false", "true"):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "memory.json"
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "verl_ext.experiments.shared_prefix_harness",
                        "--cases",
                        "memory",
                        "--out",
                        str(out),
                        "--shared-prefix",
                        shared,
                        "--prefix-len",
                        str(length - PROMPT_TOKENS - args.suffix),
                        "--suffix-len",
                        str(args.suffix),
                        "--group-size",
                        str(args.group_size),
                        "--groups",
                        str(args.groups),
                    ],
                    env={**os.environ, "VERL_PLATFORM": "cpu"},
                    check=True,
                    capture_output=True,
                )
                result = json.loads(out.read_text())
            print(f"{length:>10} {shared:>14} {result['peak_rss_mib_before']:15.0f} {result['peak_rss_mib']:13.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--row-tokens", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--suffix", type=int, default=128, help="suffix tokens per row (the rest is shared)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="peak RSS of one update, option off and on")
    args = parser.parse_args()
    if args.memory:
        memory(args)
        return
    torch.set_num_threads(args.threads)
    rows = args.groups * args.group_size
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = ensure_tiny_assets(Path(tmp) / "tiny", max_positions=int(max(args.row_tokens) * 1.1) + 64).model_dir
        model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa", dtype=torch.float32)
        engine = EngineUnderTest(model_dir)
        config, tok = model.config, engine.tokenizer
        print(
            f"tiny Qwen2 ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M), {rows} rows = {args.groups} "
            f"groups x G={args.group_size}, suffix {args.suffix}, {args.threads} threads: forward + backward"
        )
        print(f"{'row tokens':>10} {'arm':>20} {'s':>7} {'row tok/s':>10} {'GFLOP/s':>8} {'vs torch':>8}")
        for length in args.row_tokens:
            prefix = length - PROMPT_TOKENS - args.suffix
            batch = rpo_batch(
                [Group(PROMPT_TOKENS, prefix, (args.suffix,) * args.group_size)] * args.groups,
                len(tok),
                tok.eos_token_id,
                tok.pad_token_id,
            )
            shared = PROMPT_TOKENS + prefix
            row_flops = 3 * forward_flops(config, [length] * rows, [causal_pairs(length)] * rows)
            packed_lengths = [shared] * args.groups + [args.suffix] * rows
            packed_pairs = [causal_pairs(shared)] * args.groups + [
                args.suffix * shared + causal_pairs(args.suffix)
            ] * rows
            packed_flops = 3 * forward_flops(config, packed_lengths, packed_pairs)

            def engine_run(shared_prefix: bool, batch=batch) -> Callable[[], None]:
                return lambda: engine.run(
                    batch,
                    shared_prefix=shared_prefix,
                    forward_only=False,
                    batching=Batching(micro_batch_size=rows // 2),
                )

            arms: dict[str, tuple[Callable[[], None], float]] = {
                "torch": (torch_arm(model, rows, length, padded=False), row_flops),
                "torch_padding_mask": (torch_arm(model, rows, length, padded=True), row_flops),
                "verl": (engine_run(False), row_flops),
                "verl_shared_prefix": (engine_run(True), packed_flops),
            }
            seconds = {name: best_time(run, args.repeats) for name, (run, _) in arms.items()}
            undo = verl_logprob_fallback()
            try:
                seconds["verl_loop_logprobs"] = best_time(engine_run(False), 1)
            finally:
                undo()
            flops = {name: work for name, (_, work) in arms.items()} | {"verl_loop_logprobs": row_flops}
            for name, secs in seconds.items():
                print(
                    f"{length:>10} {name:>20} {secs:7.3f} {rows * length / secs:10.0f} "
                    f"{flops[name] / secs / 1e9:8.2f} {seconds['torch'] / secs:8.2f}"
                )
