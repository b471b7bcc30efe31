"""verl's FSDP engine in one process on RPO-shaped batches, with ``rpo.shared_prefix`` on and off.

Used by the exactness tests (``tests/integration/test_shared_prefix_engine.py``) and the memory check. verl picks its
platform when it is imported, so run this module in a process started with ``VERL_PLATFORM=cpu``:

    VERL_PLATFORM=cpu python -m verl_ext.experiments.shared_prefix_harness --cases exactness --out results.json
    VERL_PLATFORM=cpu python -m verl_ext.experiments.shared_prefix_harness --cases memory --shared-prefix true --out
    mem.json

The batches are built as verl's agent loop builds them (left-padded prompts, right-padded responses, position
ids from the attention mask, ``response_mask`` 0 on the cached prefix) and go through verl's own conversion
(``left_right_2_no_padding``), micro-batching, ``forward_backward_batch`` and ``ppo_loss``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import socket
import tempfile
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from verl import DataProto
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.engine.base import EngineRegistry
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import left_right_2_no_padding

from verl_ext.experiments.shared_prefix_check import tiny_config
from verl_ext.rollout.agent_loop import OUT_PREFIX_LEN
from verl_ext.rollout.verify import answers_batch
from verl_ext.shared_prefix.attention import VARLEN_REFERENCE
from verl_ext.shared_prefix.batch import add_shared_prefix_columns
from verl_ext.shared_prefix.engine import SharedPrefixFSDPEngine, install_shared_prefix_engine
from verl_ext.shared_prefix.layout import SharedPrefixMismatch
from verl_ext.shared_prefix.packing_metrics import packed_token_frac
from verl_ext.tiny import ensure_tiny_assets

RECIPE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "recipe" / "rpo" / "config"
PROMPT_TOKENS = 32
FLASH_REFERENCE_OVERRIDE = f"actor_rollout_ref.model.override_config.attn_implementation={VARLEN_REFERENCE}"


@dataclass(frozen=True)
class Batching:
    """How a pass forms its micro-batches: a fixed row count, or (``max_token_len`` set) verl's dynamic batch size
    with that token budget per micro-batch."""

    micro_batch_size: int = 1
    max_token_len: int | None = None

    @property
    def dynamic(self) -> bool:
        return self.max_token_len is not None

    def describe(self) -> str:
        return f"tokens<={self.max_token_len}" if self.dynamic else f"rows<={self.micro_batch_size}"


@dataclass(frozen=True)
class Group:
    prompt_len: int
    prefix_len: int
    suffix_lens: tuple[int, ...]


def rpo_batch(
    groups: Sequence[Group], vocab: int, eos: int, pad: int, seed: int = 0, temperature: float = 0.7
) -> DataProto:
    """An RPO training batch as verl holds it after the rollout (the layout of ``verify.answers_batch``, with
    ``response_mask`` 0 on the cached prefix), with random old/ref log-probs and advantages. The first suffix of
    every group ends with EOS."""
    gen = torch.Generator().manual_seed(seed)
    prompts, responses, prefix_lens, uids = [], [], [], []
    for group in groups:
        prompt = torch.randint(3, vocab, (group.prompt_len,), generator=gen)
        prefix = torch.randint(3, vocab, (group.prefix_len,), generator=gen)
        uid = str(uuid.UUID(int=int(torch.randint(0, 2**62, (1,), generator=gen))))
        for index, length in enumerate(group.suffix_lens):
            suffix = torch.randint(3, vocab, (length,), generator=gen)
            if index == 0:
                suffix[-1] = eos
            prompts.append(prompt.tolist())
            responses.append(torch.cat([prefix, suffix]).numpy())
            prefix_lens.append(group.prefix_len)
            uids.append(uid)
    batch = answers_batch(prompts, responses, pad, temperature)
    size, width = batch.batch["responses"].shape
    response_mask = batch.batch["response_mask"].float()
    response_mask[torch.arange(width).unsqueeze(0) < torch.tensor(prefix_lens).unsqueeze(1)] = 0
    batch.batch["response_mask"] = response_mask
    batch.batch["old_log_probs"] = _near_uniform_logprobs(size, width, vocab, gen) * response_mask
    batch.batch["ref_log_prob"] = _near_uniform_logprobs(size, width, vocab, gen) * response_mask
    batch.batch["advantages"] = torch.randn(size, 1, generator=gen) * response_mask
    batch.non_tensor_batch["uid"] = np.array(uids, dtype=object)
    batch.non_tensor_batch[OUT_PREFIX_LEN] = np.array(prefix_lens, dtype=np.int64)
    return batch


def _near_uniform_logprobs(rows: int, width: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """Log-probs near a random model's (about -log V), so that PPO ratios are not all clipped and the low-variance
    KL is not clamped: every loss term then has a gradient to compare."""
    return -float(np.log(vocab)) + 0.2 * torch.randn(rows, width, generator=gen)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_llama_dir(qwen_dir: Path, out_dir: Path) -> Path:
    """A random tiny Llama with the tiny Qwen2's tokenizer: a second architecture family verl's engine supports."""
    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    config = tiny_config(
        LlamaConfig,
        len(tokenizer),
        tokenizer.eos_token_id,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


class EngineUnderTest:
    """One verl language-model engine built from the recipe's CPU config (world size 1, gloo)."""

    def __init__(self, model_dir: Path, overrides: Sequence[str] = ()) -> None:
        os.environ.setdefault("RPO_TINY_DIR", str(model_dir.parent))
        with initialize_config_dir(config_dir=str(RECIPE_CONFIG_DIR), version_base=None):
            config = compose(
                "rpo_cpu_tiny",
                overrides=[
                    f"actor_rollout_ref.model.path={model_dir}",
                    "actor_rollout_ref.actor.use_kl_loss=true",
                    "actor_rollout_ref.actor.entropy_coeff=0.01",
                    *overrides,
                ],
            )
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(
                "gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{_free_port()}"
            )
        self.model_config = omega_conf_to_dataclass(config.actor_rollout_ref.model)
        self.actor_config = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
        engine_config = self.actor_config.engine
        engine_config.use_remove_padding = bool(config.actor_rollout_ref.model.use_remove_padding)
        # As in a run with rpo.shared_prefix=true (verl_ext/shared_prefix/verl_plugin.py), then built by verl's
        # registry; a harness that measured verl's own engine against itself would pass without testing anything.
        install_shared_prefix_engine()
        self.engine = EngineRegistry.new(
            model_type="language_model",
            backend=engine_config.strategy,
            model_config=self.model_config,
            engine_config=engine_config,
            optimizer_config=self.actor_config.optim,
            checkpoint_config=self.actor_config.checkpoint,
        )
        if not isinstance(self.engine, SharedPrefixFSDPEngine):
            raise RuntimeError(f"verl's registry built {type(self.engine).__qualname__}, not SharedPrefixFSDPEngine")
        self.engine.initialize()

    @property
    def tokenizer(self) -> Any:
        return self.model_config.tokenizer

    def run(
        self,
        batch: DataProto,
        shared_prefix: bool,
        forward_only: bool,
        batching: Batching,
        loss_agg_mode: str = "token-mean",
    ) -> dict[str, Any]:
        """One pass as verl's trainer runs it: log-probs and entropy (forward only) or the loss and every
        parameter's gradient (training); with the option on, also the packed and row tokens the engine reports."""
        batch = DataProto.from_dict(
            tensors=dict(batch.batch), non_tensors=dict(batch.non_tensor_batch), meta_info=dict(batch.meta_info)
        )
        if shared_prefix:
            add_shared_prefix_columns(batch)
        data = left_right_2_no_padding(batch.to_tensordict())
        tu.assign_non_tensor(
            data,
            calculate_entropy=True,
            calculate_sum_pi_squared=forward_only,
            global_batch_size=len(batch),
            compute_loss=not forward_only,
            use_remove_padding=self.engine.engine_config.use_remove_padding,
            use_dynamic_bsz=batching.dynamic,
            micro_batch_size_per_gpu=batching.micro_batch_size,
            use_fused_kernels=False,
            max_token_len_per_gpu=batching.max_token_len or 1 << 16,
        )
        loss_fn = (
            None
            if forward_only
            else partial(ppo_loss, config=dataclasses.replace(self.actor_config, loss_agg_mode=loss_agg_mode))
        )
        self.engine.optimizer_zero_grad()
        with self.engine.eval_mode() if forward_only else self.engine.train_mode():
            output = self.engine.forward_backward_batch(data, loss_function=loss_fn, forward_only=forward_only)
            grads = {name: _full(p.grad) for name, p in self.engine.module.named_parameters() if p.grad is not None}
        packing = {"packed_token_frac": packed_token_frac(output["metrics"])}
        if forward_only:
            return {
                **packing,
                **{key: _values(output["model_output"][key]) for key in ("log_probs", "entropy", "sum_pi_squared")},
            }
        return {
            **packing,
            "grads": grads,
            "metrics": {
                k: float(np.sum(m.values))
                for k, m in output["metrics"].items()
                if k in ("actor/pg_loss", "kl_loss", "actor/entropy_loss")
            },
        }


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach().clone()


def _values(tensor: torch.Tensor) -> torch.Tensor:
    """A per-token output without each row's last position: its label is the next row's first token of the same
    micro-batch (verl rolls the flattened micro-batch), so it depends on how rows were grouped into micro-batches,
    and verl never reads it (``no_padding_2_padding`` takes positions ``prompt - 1 .. end - 2``)."""
    return torch.cat([row[:-1] for row in tensor.unbind()]).detach().clone()


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


EXACTNESS_GROUPS: dict[int, tuple[Group, ...]] = {
    # Several groups, different prefix lengths (0: a full-path group), suffixes of 1 token and EOS-terminated.
    2: (Group(7, 10, (1, 13)), Group(12, 0, (9, 30)), Group(4, 25, (6, 1))),
    4: (Group(7, 10, (1, 9, 20, 4)), Group(12, 0, (12, 3, 30, 8))),
}
SPLITTING_TOKEN_BUDGET = 45
"""Holds every row of :data:`EXACTNESS_GROUPS` (at most 42 tokens) but no whole group of more than one row: the
dynamic micro-batches must cut groups apart."""
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")


def batchings(group_size: int) -> dict[str, Batching]:
    """Per G, the micro-batching of each case: whole groups and groups cut apart, by rows and by tokens."""
    return {
        "rows_whole": Batching(micro_batch_size=group_size),
        "rows_split": Batching(micro_batch_size=group_size // 2),
        "tokens_whole": Batching(max_token_len=1 << 12),
        "tokens_split": Batching(max_token_len=SPLITTING_TOKEN_BUDGET),
    }


def exactness_cases(engines: dict[str, EngineUnderTest]) -> Iterator[dict[str, Any]]:
    """Every pass with the option on against off: per model, G, micro-batching and loss aggregation mode."""
    for model, engine in engines.items():
        vocab, eos, pad = len(engine.tokenizer), engine.tokenizer.eos_token_id, engine.tokenizer.pad_token_id
        for group_size, groups in EXACTNESS_GROUPS.items():
            batch = rpo_batch(groups, vocab, eos, pad, seed=group_size)
            for name, batching in batchings(group_size).items():
                case = {
                    "model": model,
                    "group_size": group_size,
                    "batching": name,
                    "dynamic": batching.dynamic,
                    "rows": len(batch),
                    "ideal_packed_token_frac": whole_group_frac(groups),
                }
                off = engine.run(batch, shared_prefix=False, forward_only=True, batching=batching)
                on = engine.run(batch, shared_prefix=True, forward_only=True, batching=batching)
                yield {
                    **case,
                    "pass": "forward",
                    "packed_token_frac": on["packed_token_frac"],
                    "packed_token_frac_off": off["packed_token_frac"],
                    "log_probs_max_abs": float((on["log_probs"] - off["log_probs"]).abs().max()),
                    "log_probs_max_rel": float(
                        ((on["log_probs"] - off["log_probs"]).abs() / off["log_probs"].abs().clamp_min(1e-6)).max()
                    ),
                    "entropy_max_rel": _max_rel(on["entropy"], off["entropy"]),
                    "sum_pi_squared_max_rel": _max_rel(on["sum_pi_squared"], off["sum_pi_squared"]),
                    "tokens": int(off["log_probs"].numel()),
                }
                for mode in LOSS_AGG_MODES:
                    off = engine.run(
                        batch, shared_prefix=False, forward_only=False, batching=batching, loss_agg_mode=mode
                    )
                    on = engine.run(
                        batch, shared_prefix=True, forward_only=False, batching=batching, loss_agg_mode=mode
                    )
                    yield {
                        **case,
                        "pass": "update",
                        "loss_agg_mode": mode,
                        "packed_token_frac": on["packed_token_frac"],
                        "metrics": {k: [off["metrics"][k], on["metrics"][k]] for k in off["metrics"]},
                        "grad_max_rel": max(_max_rel(on["grads"][n], off["grads"][n]) for n in off["grads"]),
                        "grad_params": len(off["grads"]),
                        "grad_params_on": len(on["grads"]),
                    }


def whole_group_frac(groups: Sequence[Group]) -> float:
    """Packed over row tokens when every group is packed whole: each shared part (prompt + prefix) once."""
    packed = sum(g.prompt_len + g.prefix_len + sum(g.suffix_lens) for g in groups)
    rows = sum(len(g.suffix_lens) * (g.prompt_len + g.prefix_len) + sum(g.suffix_lens) for g in groups)
    return packed / rows


def mismatch_case(engine: EngineUnderTest) -> dict[str, Any]:
    """Two rows of one uid whose declared prefixes differ in one token: the pass must refuse, not mis-group."""
    tok = engine.tokenizer
    batch = rpo_batch(EXACTNESS_GROUPS[2][:1], len(tok), tok.eos_token_id, tok.pad_token_id)
    prompt_width = batch.batch["prompts"].shape[1]
    position = prompt_width + 3  # a cached-prefix token of the second row
    for key in ("input_ids", "responses"):
        column = position if key == "input_ids" else position - prompt_width
        batch.batch[key][1, column] = (batch.batch[key][1, column] + 1) % len(tok)
    try:
        engine.run(batch, shared_prefix=True, forward_only=True, batching=Batching(micro_batch_size=2))
    except SharedPrefixMismatch as error:
        return {"refused": True, "message": str(error)}
    return {"refused": False, "message": ""}


def engine_refusal_cases(engine: EngineUnderTest) -> dict[str, str]:
    """The engine's own defences, on its first packed pass: a model config it cannot serve (attention dropout, as a
    worker would load it), and a forward that reached the grouped attention fewer times than the model has
    attention layers. Each entry is the error message (empty if the pass ran)."""
    tok = engine.tokenizer
    batch = rpo_batch(EXACTNESS_GROUPS[2][:1], len(tok), tok.eos_token_id, tok.pad_token_id)
    inner, hf_config = engine.engine, engine.model_config.hf_config
    messages = {}
    for name, layers, dropout in (("attention_dropout", None, 0.1), ("attention_calls", 3, 0.0)):
        inner._attention_layers, hf_config.attention_dropout = layers, dropout
        try:
            engine.run(batch, shared_prefix=True, forward_only=True, batching=Batching(micro_batch_size=2))
            messages[name] = ""
        except (ValueError, RuntimeError) as error:
            messages[name] = str(error)
    inner._attention_layers, hf_config.attention_dropout = None, 0.0
    return messages


def memory_case(
    engine: EngineUnderTest,
    shared_prefix: bool,
    prompt_len: int,
    prefix_len: int,
    suffix_len: int,
    group_size: int,
    groups: int,
) -> dict[str, Any]:
    """Peak RSS of this process over one update of RPO-shaped groups (run each setting in its own process)."""
    tok = engine.tokenizer
    batch = rpo_batch(
        [Group(prompt_len, prefix_len, (suffix_len,) * group_size)] * groups,
        len(tok),
        tok.eos_token_id,
        tok.pad_token_id,
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine.run(
        batch, shared_prefix=shared_prefix, forward_only=False, batching=Batching(micro_batch_size=group_size * groups)
    )
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "shared_prefix": shared_prefix,
        "peak_rss_mib_before": before / 1024,
        "peak_rss_mib": after / 1024,
        "rows": len(batch),
        "row_tokens": prompt_len + prefix_len + suffix_len,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", choices=["exactness", "memory"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shared-prefix", choices=["true", "false"], default="true")
    parser.add_argument("--prefix-len", type=int, default=1888)
    parser.add_argument("--suffix-len", type=int, default=128)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--groups", type=int, default=2)
    args = parser.parse_args()
    if os.environ.get("VERL_PLATFORM") != "cpu":
        raise SystemExit("run with VERL_PLATFORM=cpu (verl picks its platform when it is imported)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.cases == "exactness":
            qwen_dir = ensure_tiny_assets(Path(tmp) / "tiny").model_dir
            engines = {
                "qwen2": EngineUnderTest(qwen_dir),
                "llama": EngineUnderTest(tiny_llama_dir(qwen_dir, Path(tmp) / "llama")),
                "qwen2_gradient_checkpointing": EngineUnderTest(
                    qwen_dir, ["actor_rollout_ref.model.enable_gradient_checkpointing=true"]
                ),
                # verl's GPU default: the unshared path packs rows (transformers masks the packed sdpa sequence).
                "qwen2_remove_padding": EngineUnderTest(qwen_dir, ["actor_rollout_ref.model.use_remove_padding=true"]),
                # The flash-attention layout (varlen calls, no mask) through its pure-torch reference kernel.
                "qwen2_flash_reference": EngineUnderTest(qwen_dir, [FLASH_REFERENCE_OVERRIDE]),
                "llama_flash_reference": EngineUnderTest(tiny_llama_dir(qwen_dir, Path(tmp) / "llama_flash"),
                                                         [FLASH_REFERENCE_OVERRIDE]),
            }
            result: dict[str, Any] = {
                "cases": list(exactness_cases(engines)),
                "mismatch": mismatch_case(engines["qwen2"]),
                "refusals": engine_refusal_cases(engines["llama"]),
            }
        else:
            length = PROMPT_TOKENS + args.prefix_len + args.suffix_len
            qwen_dir = ensure_tiny_assets(Path(tmp) / "long", max_positions=length).model_dir
            result = memory_case(
                EngineUnderTest(qwen_dir),
                args.shared_prefix == "true",
                PROMPT_TOKENS,
                args.prefix_len,
                args.suffix_len,
                args.group_size,
                args.groups,
            )
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
