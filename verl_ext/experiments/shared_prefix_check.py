"""The shared-prefix exactness check on a tiny random model, on whatever device is present.

Compares, for RPO-shaped groups (G rows sharing a prompt + cached prefix, suffixes of different lengths including
one token), the per-row causal forward and backward with the packed, grouped one: per-token log-probs, entropy and
every parameter's gradient. Torch and transformers only, so that it runs on a GPU machine without verl
(``scripts/check_shared_prefix.py``); the engine-path tests compare the same quantities through verl's engine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from transformers import CONFIG_MAPPING, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from verl_ext.shared_prefix.attention import SHARED_PREFIX_KWARG, install_grouped_attention
from verl_ext.shared_prefix.layout import gather_row_logprobs, gather_row_values, pack_rows
from verl_ext.shared_prefix.support import SUPPORTED_MODEL_TYPES, attention_layer_count

VOCAB = 96
EOS = 1


def tiny_config(config_cls: type[PretrainedConfig], vocab_size: int, eos_token_id: int,
                attn_implementation: str = "sdpa", **extra) -> PretrainedConfig:
    """The tiny shape used for every exactness check (2 layers, 128 wide, grouped-query attention)."""
    return config_cls(vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, eos_token_id=eos_token_id,
                      attn_implementation=attn_implementation, **{"max_position_embeddings": 512, **extra})


FAMILY_SETTINGS: dict[str, dict] = {
    "mistral": {"sliding_window": None},  # Mistral v0.2 and later; v0.1's 4096-token window is refused
    "qwen3_next": {"layer_types": ["linear_attention", "full_attention"], "linear_num_key_heads": 2,
                   "linear_num_value_heads": 2, "linear_key_head_dim": 16, "linear_value_head_dim": 16},
}
"""Per model type, what the tiny config sets beyond the shared shape (``qwen3_next``: the refused hybrid)."""


def tiny_model(model_type: str, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """A random tiny model of ``model_type`` in the shape of :func:`tiny_config`."""
    config_cls = CONFIG_MAPPING[model_type]
    config = tiny_config(config_cls, VOCAB, EOS, attn_implementation, pad_token_id=0, bos_token_id=0,
                         **FAMILY_SETTINGS.get(model_type, {}))
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)


def _tiny(model_type: str) -> Callable[[], PreTrainedModel]:
    return lambda: tiny_model(model_type)


TINY_MODELS: dict[str, Callable[[], PreTrainedModel]] = {model_type: _tiny(model_type)
                                                        for model_type in SUPPORTED_MODEL_TYPES}
"""Every family the shared-prefix passes accept (``support.SUPPORTED_MODEL_TYPES``), each checked here."""


@dataclass(frozen=True)
class GroupSpec:
    shared_len: int
    suffix_lens: tuple[int, ...]


DEFAULT_GROUPS: tuple[GroupSpec, ...] = (GroupSpec(40, (1, 9, 17, 4)), GroupSpec(23, (12, 3)), GroupSpec(64, (5, 30)))


def rpo_rows(
    groups: Sequence[GroupSpec], generator: torch.Generator
) -> tuple[list[torch.Tensor], list[int], list[int]]:
    """Rows of random tokens: per group one shared part, then each row's suffix; the last suffix of each group ends
    with EOS. Returns (rows, shared lengths, group ids)."""
    rows, shared_lens, group_ids = [], [], []
    for gid, group in enumerate(groups):
        shared = torch.randint(2, VOCAB, (group.shared_len,), generator=generator)
        for index, length in enumerate(group.suffix_lens):
            suffix = torch.randint(2, VOCAB, (length,), generator=generator)
            if index == len(group.suffix_lens) - 1:
                suffix[-1] = EOS
            rows.append(torch.cat([shared, suffix]))
            shared_lens.append(group.shared_len)
            group_ids.append(gid)
    return rows, shared_lens, group_ids


def _logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _objective(logprobs: torch.Tensor, entropy: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A loss touching every token with its own weight, so gradients of all positions are compared."""
    return (logprobs * weights).sum() + 0.1 * (entropy * weights.flip(0)).sum()


@dataclass(frozen=True)
class CheckResult:
    model: str
    device: str
    row_tokens: int
    packed_tokens: int
    logprob_max_abs: float
    entropy_max_abs: float
    grad_max_rel: float
    """Largest over parameters of max |g_packed - g_rows| / max |g_rows|."""
    attention_calls: int
    """Grouped attention calls in the packed forward; the engine requires one per attention layer."""
    attention_layers: int
    rows_s: float
    """Wall-clock of the per-row forward and backward."""
    packed_s: float
    """Wall-clock of the packed forward and backward (layout included)."""


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_check(model_name: str, device: str, groups: Sequence[GroupSpec] = DEFAULT_GROUPS, seed: int = 0,
              attn_implementation: str = "sdpa", dtype: torch.dtype = torch.float32) -> CheckResult:
    """``model_name``: a model type (any, so that refused families can be shown to differ); ``attn_implementation``:
    one with a grouped attention (``attention.supported_attention()``); the per-row reference uses the same."""
    install_grouped_attention(attn_implementation)
    torch.manual_seed(seed)
    model = tiny_model(model_name, attn_implementation).to(device=device, dtype=dtype)
    rows, shared_lens, group_ids = rpo_rows(groups, torch.Generator().manual_seed(seed))
    rows = [row.to(device) for row in rows]
    labels = torch.roll(torch.cat(rows), -1)
    weights = torch.rand(labels.shape[0], generator=torch.Generator().manual_seed(seed + 1)).to(device)

    _synchronize(device)
    started = time.perf_counter()
    logits = [model(input_ids=row.unsqueeze(0)).logits[0] for row in rows]
    stacked = torch.cat(logits)
    ref_logprobs, ref_entropy = _logprobs(stacked, labels), _entropy(stacked)
    _objective(ref_logprobs, ref_entropy, weights).backward()
    _synchronize(device)
    rows_s = time.perf_counter() - started
    ref_grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    _synchronize(device)
    started = time.perf_counter()

    layout = pack_rows(
        rows,
        [torch.arange(row.numel(), device=device) for row in rows],
        torch.tensor(shared_lens),
        torch.tensor(group_ids),
    )
    packed = model(
        input_ids=layout.input_ids.unsqueeze(0),
        position_ids=layout.position_ids.unsqueeze(0),
        attention_mask=torch.ones_like(layout.input_ids).unsqueeze(0),
        **{SHARED_PREFIX_KWARG: layout},
    ).logits[0]
    attention_calls = layout.attention_calls
    if attention_calls == 0:
        raise RuntimeError("the grouped attention was not reached")
    logprobs = gather_row_logprobs(packed, labels, layout.token_index, _logprobs)
    entropy = gather_row_values(_entropy(packed), layout.token_index)
    _objective(logprobs, entropy, weights).backward()
    _synchronize(device)
    packed_s = time.perf_counter() - started
    grad_rel = max(
        ((p.grad - ref_grads[name]).abs().max() / ref_grads[name].abs().max().clamp_min(1e-30)).item()
        for name, p in model.named_parameters()
    )
    return CheckResult(
        model=model_name,
        device=device,
        row_tokens=layout.row_tokens,
        packed_tokens=layout.packed_tokens,
        logprob_max_abs=(logprobs - ref_logprobs).abs().max().item(),
        entropy_max_abs=(entropy - ref_entropy).abs().max().item(),
        grad_max_rel=grad_rel,
        attention_calls=attention_calls,
        attention_layers=attention_layer_count(model.config),
        rows_s=rows_s,
        packed_s=packed_s,
    )


TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 5e-2}
"""Worst allowed difference per dtype: float32 is the exactness bound of the tests; flash-attention runs in bf16
only, where the per-row and packed paths round differently (a rounding-level bound, not an exactness proof)."""


def main(argv: Sequence[str] | None = None) -> int:
    """The command line of ``scripts/check_shared_prefix.py`` (its docstring)."""
    import argparse

    from verl_ext.shared_prefix.attention import VARLEN_REFERENCE

    parser = argparse.ArgumentParser(description="Shared-prefix exactness on tiny random models of each family")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "flash_attention_2"],
                        help="the attention implementation the models are loaded with")
    parser.add_argument("--reference-kernel", action="store_true",
                        help="flash_attention_2's layout through the pure-torch reference kernel (any device)")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    implementation, dtype = args.attn, torch.float32
    if args.attn == "flash_attention_2" and args.reference_kernel:
        implementation = VARLEN_REFERENCE
    elif args.attn == "flash_attention_2":
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            parser.error("--attn flash_attention_2 needs the flash-attn package and a CUDA device (flash-attention "
                         "has no CPU kernel); add --reference-kernel to run the same layout through its pure-torch "
                         "reference kernel")
        if args.device != "cuda":
            parser.error("--attn flash_attention_2 runs on CUDA only; use --device cuda, or --reference-kernel")
        dtype = torch.bfloat16
    elif args.reference_kernel:
        parser.error("--reference-kernel replaces flash-attention's kernel: use it with --attn flash_attention_2")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    tolerance = TOLERANCE[dtype]
    print(f"torch {torch.__version__}, device {name}, attention {implementation}, {str(dtype).removeprefix('torch.')}, "
          f"tolerance {tolerance:g}")
    worst, rows_s, packed_s = 0.0, 0.0, 0.0
    for model in TINY_MODELS:
        for seed in range(args.seeds):
            result = run_check(model, args.device, seed=seed, attn_implementation=implementation, dtype=dtype)
            worst = max(worst, result.logprob_max_abs, result.entropy_max_abs, result.grad_max_rel)
            rows_s, packed_s = rows_s + result.rows_s, packed_s + result.packed_s
            print(f"  {model:6s} seed {seed}: {result.row_tokens} row tokens packed into {result.packed_tokens}; "
                  f"max |dlogp| {result.logprob_max_abs:.2e}  max |dentropy| {result.entropy_max_abs:.2e}  "
                  f"max grad rel {result.grad_max_rel:.2e}  per-row {result.rows_s * 1e3:.1f} ms  "
                  f"packed {result.packed_s * 1e3:.1f} ms")
    print(f"time, forward + backward over all checks: per-row {rows_s:.3f} s, packed {packed_s:.3f} s "
          "(the first check of each model includes warm-up)")
    print(f"worst {worst:.2e}: {'PASS' if worst <= tolerance else 'FAIL'}")
    return 0 if worst <= tolerance else 1
