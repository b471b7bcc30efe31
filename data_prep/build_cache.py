#!/usr/bin/env python
"""Build the offline RPO experience cache: one answer per training prompt from the base model, with vLLM.

    python data_prep/build_cache.py --model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B \\
        --data ~/data/rpo/open_rs.parquet --response-length 2048 --out ~/data/rpo/cache/open_rs-1.5b-r2048.parquet

then train with ``rpo.cache.init_path=<out>``: the first step cuts these answers instead of seeding every prompt with
a full-length rollout. Use the model, training files, response length (``data.max_response_length``) and key mode
(``rpo.cache.key``) of the run; the trainer refuses a file written for another tokenizer or key mode. The logic lives
in ``verl_ext/cache/offline.py``.

On a machine without a GPU, vLLM's CPU build is used (eager mode; ``VLLM_CPU_KVCACHE_SPACE`` defaults to
``--cpu-kv-cache-gib``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from verl_ext.cache.keys import KEY_MODES
from verl_ext.cache.offline import (
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    EngineSettings,
    SamplingSettings,
    build_cache,
    read_training_prompts,
    render_prompts,
    vllm_generator,
)


def build_parser() -> argparse.ArgumentParser:
    engine = EngineSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="the run's actor_rollout_ref.model.path (HF id or directory)")
    parser.add_argument("--data", required=True, nargs="+", type=Path, help="the run's data.train_files (parquet)")
    parser.add_argument("--out", required=True, type=Path, help="the cache file to write (rpo.cache.init_path)")
    parser.add_argument("--response-length", required=True, type=int,
                        help="the run's data.max_response_length: the most tokens an answer may have")
    parser.add_argument("--key-mode", choices=KEY_MODES, default="index", help="the run's rpo.cache.key")
    parser.add_argument("--prompt-column", default="prompt", help="the run's data.prompt_key")
    parser.add_argument("--max-samples", type=int, help="only the first N rows (data.train_max_samples with "
                        "data.shuffle=false)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    parser.add_argument("--top-p", type=float, default=DEFAULT_TOP_P)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--store-logprobs", action="store_true",
                        help="keep each token's sampling log-prob (for rpo.loss_on_prefix with rollout correction)")
    parser.add_argument("--dtype", default=engine.dtype, help="vLLM dtype: auto, bfloat16, float16, float32")
    parser.add_argument("--tensor-parallel-size", type=int, default=engine.tensor_parallel_size)
    parser.add_argument("--gpu-memory-utilization", type=float, default=engine.gpu_memory_utilization)
    parser.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs (always on with the CPU build)")
    parser.add_argument("--cpu-kv-cache-gib", type=int, default=engine.cpu_kv_cache_gib,
                        help="VLLM_CPU_KVCACHE_SPACE when unset, CPU build only")
    parser.add_argument("--trust-remote-code", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sampling = SamplingSettings(max_tokens=args.response_length, temperature=args.temperature, top_p=args.top_p,
                                    seed=args.seed, store_logprobs=args.store_logprobs)
        prompts = read_training_prompts(args.data, args.key_mode, prompt_column=args.prompt_column,
                                        max_samples=args.max_samples)
        if not args.out.parent.is_dir():
            raise FileNotFoundError(f"--out {args.out}: directory {args.out.parent} does not exist")
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")

    from transformers import AutoConfig
    from verl.utils import hf_tokenizer

    tokenizer = hf_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
    model_type = AutoConfig.from_pretrained(args.model, trust_remote_code=args.trust_remote_code).model_type
    prompt_ids = render_prompts(prompts, tokenizer, model_type)
    engine = EngineSettings(dtype=args.dtype, tensor_parallel_size=args.tensor_parallel_size,
                            gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=args.enforce_eager,
                            trust_remote_code=args.trust_remote_code, cpu_kv_cache_gib=args.cpu_kv_cache_gib)
    start = time.monotonic()
    cache = build_cache(prompts, prompt_ids, vllm_generator(args.model, sampling, engine), tokenizer,
                        key_mode=args.key_mode, max_tokens=args.response_length)
    cache.save(args.out)

    entries = [entry for _, entry in cache.items()]
    lengths = np.array([len(entry.response_ids) for entry in entries])
    print(f"wrote {len(cache)} entries to {args.out} in {time.monotonic() - start:.0f} s: answer length mean "
          f"{lengths.mean():.0f} / max {lengths.max()} tokens, finished {np.mean([e.finished for e in entries]):.1%},"
          f" acc {np.mean([bool(e.acc) for e in entries]):.1%}", file=sys.stderr)
    return args.out


if __name__ == "__main__":
    main()
