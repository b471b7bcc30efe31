"""The RPO step's rollout: seed cold prompts, cut cached answers, generate G suffixes, refresh the cache.

This is the glue between the pure pieces (cache, keys, truncation, selection, metrics) and verl's DataProto /
AgentLoopManager. The trainer calls :meth:`PartialRollout.generate` where a full-path trainer calls
``generate_sequences``, and :meth:`PartialRollout.update_cache` once rewards are in the batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from verl import DataProto
from verl.protocol import pad_dataproto_to_divisor, unpad_dataproto

from verl_ext.cache.healing import answers_to_cut, refresh_due, successor
from verl_ext.cache.keys import prompt_key
from verl_ext.cache.replacement import choose_replacement
from verl_ext.cache.store import CacheEntry, ExperienceCache
from verl_ext.config import RPOConfig
from verl_ext.rollout.agent_loop import (
    LOSS_ON_PREFIX,
    MAX_NEW_TOKENS,
    OUT_GENERATED,
    OUT_PREFIX_LEN,
    PREFIX_IDS,
    PREFIX_LOGPROBS,
    RPO_AGENT_NAME,
)
from verl_ext.rollout.cold_start import get_cold_start
from verl_ext.rollout.token_budget import TokenBudget
from verl_ext.rollout.truncation import Cut, GroupOutcome, needs_current_logprobs, sample_cuts, state_update
from verl_ext.training.metrics import budget_metrics, compute_rpo_metrics, healing_metrics, verify_metrics

KEY_COLUMN = "rpo_key"
HIT_COLUMN = "rpo_cache_hit"
STALENESS_COLUMN = "rpo_staleness"
# Per prompt: True when the prefix's log-probs handed to the engine are real behaviour log-probs (an empty prefix,
# or a cache entry that kept them); False when the agent loop had to stand 0.0 in for them.
PREFIX_LOGPROBS_REAL_COLUMN = "rpo_prefix_logprobs_real"
# Per prompt: whether the answer its prefix was cut from was right (None: unknown, or no answer to cut), for the cut
# policy's state update.
CUT_ANSWER_RIGHT_COLUMN = "rpo_cut_answer_right"


class MissingBehaviourLogprobs(ValueError):
    """A prefix must enter a loss that compares against its behaviour log-probs, and its cache entry has none."""


def _object_array(values: Sequence[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def response_lengths(output: DataProto) -> np.ndarray:
    """Valid response tokens per row (prefix + suffix), as verl's reward managers count them."""
    prompt_length = output.batch["prompts"].shape[-1]
    return output.batch["attention_mask"][:, prompt_length:].sum(-1).cpu().numpy().astype(np.int64)


def response_ids(output: DataProto) -> list[np.ndarray]:
    lengths = response_lengths(output)
    responses = output.batch["responses"].cpu().numpy()
    return [responses[i, : lengths[i]].astype(np.int32) for i in range(len(lengths))]


def response_logprobs(output: DataProto) -> list[Optional[np.ndarray]]:
    if "rollout_log_probs" not in output.batch.keys():
        return [None] * len(output)
    lengths = response_lengths(output)
    logprobs = output.batch["rollout_log_probs"].float().cpu().numpy()
    return [logprobs[i, : lengths[i]].astype(np.float32) for i in range(len(lengths))]


def sequence_scores(output: DataProto) -> np.ndarray:
    """One scalar per row: the reward the advantage sees (rm_scores summed; token_level_scores once extracted)."""
    key = "token_level_scores" if "token_level_scores" in output.batch.keys() else "rm_scores"
    return output.batch[key].sum(-1).float().cpu().numpy()


def right_answer(acc: Optional[bool], score: float) -> bool:
    """Whether an answer counts as right for the cut policies' updates and the healing options: the reward's
    accuracy where it reports one, else a positive score."""
    return bool(acc) if acc is not None else score > 0


def accuracies(output: DataProto) -> Optional[list[Optional[bool]]]:
    if "acc" not in output.non_tensor_batch:
        return None
    return [None if value is None else bool(value) for value in output.non_tensor_batch["acc"]]


def prefix_loss_tokens(batch: DataProto) -> dict[str, float]:
    """How many cached-prefix tokens the batch's response_mask lets into the loss, and how many tokens it lets in.

    Computed on the batch that reaches the actor update, so it checks what the policy loss really sees: with
    ``rpo.loss_on_prefix=false`` ``rpo/prefix_tokens_in_loss`` must be 0."""
    mask = batch.batch["response_mask"]
    prefix_lens = torch.as_tensor(np.asarray(batch.non_tensor_batch[OUT_PREFIX_LEN], dtype=np.int64))
    positions = torch.arange(mask.shape[-1]).unsqueeze(0)
    in_prefix = positions < prefix_lens.unsqueeze(-1)
    return {
        "rpo/prefix_tokens_in_loss": float((mask.bool() & in_prefix).sum().item()),
        "rpo/loss_tokens": float(mask.sum().item()),
    }


def rollout_dump_fields(batch: DataProto, tokenizer: Any) -> dict[str, list]:
    """Per row, what ``trainer.rollout_data_dir`` records beside verl's fields so that a reader sees which part of
    each answer was regenerated: the cached prefix's length, the regenerated suffix as text, the tokens generated,
    whether the prompt hit the cache and how many steps old its entry was."""
    prefix_lens = np.asarray(batch.non_tensor_batch[OUT_PREFIX_LEN], dtype=np.int64)
    answers = response_ids(batch)
    suffixes = tokenizer.batch_decode(
        [answer[prefix:].tolist() for answer, prefix in zip(answers, prefix_lens, strict=True)],
        skip_special_tokens=True,
    )
    ntb = batch.non_tensor_batch
    return {
        OUT_PREFIX_LEN: prefix_lens.tolist(),
        "rpo_suffix": suffixes,
        OUT_GENERATED: np.asarray(ntb[OUT_GENERATED], dtype=np.int64).tolist(),
        HIT_COLUMN: [bool(hit) for hit in ntb[HIT_COLUMN]],
        STALENESS_COLUMN: np.asarray(ntb[STALENESS_COLUMN], dtype=np.int64).tolist(),
    }


@dataclass
class RolloutRows:
    """Row-level facts of one generation call, kept for the step's ``rpo/*`` metrics."""

    prefix_lens: list[np.ndarray] = field(default_factory=list)
    suffix_lens: list[np.ndarray] = field(default_factory=list)
    group_ids: list[np.ndarray] = field(default_factory=list)
    cache_hit: list[np.ndarray] = field(default_factory=list)
    staleness: list[np.ndarray] = field(default_factory=list)
    seed_count: int = 0
    seed_tokens: int = 0
    seed_acc: list[float] = field(default_factory=list)
    cached_lens: list[int] = field(default_factory=list)
    """Per cache-hit prompt: the length of the cached answer it was cut from."""
    cached_correct: list[bool] = field(default_factory=list)
    """Per cache-hit prompt whose entry has an accuracy: whether the cached answer was correct."""
    verify_s: float = 0.0
    """Verifying cut policies: wall time of the current policy's pass over the cached answers."""
    verify_accepted: list[int] = field(default_factory=list)
    """Per verified answer: the leading tokens the check accepted."""
    verify_lengths: list[int] = field(default_factory=list)
    """Per verified answer: its (clipped) length."""
    verify_fallbacks: int = 0
    """Cached answers cut by the plain tail cut because their entry kept no real behaviour log-probs."""
    cut_fracs: list[float] = field(default_factory=list)
    """Per prompt cut from a cached answer: the fraction of the answer regenerated (``1 - prefix / length``)."""
    counterpart_cuts: int = 0
    """Prompts cut from their counterpart answer (``rpo.cache.keep_counterpart``)."""
    refresh_count: int = 0
    """Prompts whose answer was replaced by a fresh full answer before the cut (``rpo.cache.refresh_*``)."""
    group_right_fracs: list[float] = field(default_factory=list)
    """Per scored group: the share of its answers that were right."""

    def concat(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)


class PartialRollout:
    """Owns the experience cache and the truncation RNG of a run (both are checkpointed by the trainer)."""

    def __init__(
        self,
        config: RPOConfig,
        cache: ExperienceCache,
        *,
        response_length: int,
        group_size: int,
        num_workers: int,
        eos_token_ids: Sequence[int],
        require_prefix_logprobs: bool = False,
        current_logprobs: Optional[Callable[[DataProto, list[np.ndarray]], list[np.ndarray]]] = None,
    ) -> None:
        """``require_prefix_logprobs``: the loss compares the prefix against its behaviour log-probs (``loss_on_prefix``
        with rollout correction), so a prefix whose entry has none is refused rather than given 0.0 stand-ins.
        ``current_logprobs(gen_batch_rows, answers)``: the current policy's log-probs of cached answers
        (:class:`~verl_ext.rollout.verify.CurrentLogprobs`); required by verifying cut policies."""
        if needs_current_logprobs(config.truncation.mode) and current_logprobs is None:
            raise ValueError(
                f"rpo.truncation.mode={config.truncation.mode} verifies cached answers against the "
                "current policy: PartialRollout needs current_logprobs"
            )
        self.current_logprobs = current_logprobs
        self.config = config
        self.cache = cache
        self.response_length = response_length
        self.group_size = group_size
        self.num_workers = max(1, num_workers)
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        self.rng = np.random.default_rng(config.seed)
        self.require_prefix_logprobs = require_prefix_logprobs
        share = config.truncation.token_share
        self.token_budget: Optional[TokenBudget] = None if share is None else TokenBudget(share)

    def keys_of(self, batch: DataProto) -> list[str]:
        ntb = batch.non_tensor_batch
        messages = ntb.get("raw_prompt", ntb.get("prompt"))
        return [
            prompt_key(ntb["data_source"][i], ntb["extra_info"][i], messages[i], self.config.cache.key)
            for i in range(len(batch))
        ]

    def generate(self, manager: Any, batch: DataProto, gen_batch: DataProto, step: int, rows: RolloutRows) -> DataProto:
        """Seed cold prompts, cut every cached answer, and run the G-way suffix pass.

        Keys come from ``gen_batch`` (verl's ``_get_gen_batch`` moved the prompt messages there). ``batch`` (one row
        per prompt) gets the key, cache-hit and staleness columns, so that after ``batch.repeat(G).union(output)``
        the cache update can find each row's prompt."""
        keys = self.keys_of(gen_batch)
        hit = np.array([key in self.cache for key in keys], dtype=bool)
        generated_before = rows.seed_tokens
        cold = [i for i, is_hit in enumerate(hit) if not is_hit]
        if cold:
            get_cold_start(self.config.cold_start)(
                cold, lambda seeded: self._seed(manager, gen_batch, keys, seeded, step, rows)
            )
        stale = refresh_due([self.cache.get(key) if is_hit else None for key, is_hit in zip(keys, hit, strict=True)],
                            self.config.cache, self.rng)
        if stale:
            self._seed(manager, gen_batch, keys, stale, step, rows, refresh=True)
        answers = answers_to_cut([self.cache.get(key) for key in keys], self.config.cache, self.rng, fresh=set(stale))
        rows.counterpart_cuts += sum(answer is not None and answer is not self.cache.get(key)
                                     for key, answer in zip(keys, answers, strict=True))
        cuts = self._cuts(keys, answers, gen_batch, rows, rows.seed_tokens - generated_before)
        staleness = np.array(
            [step - answer.step if is_hit and answer is not None else 0
             for answer, is_hit in zip(answers, hit, strict=True)],
            dtype=np.int64,
        )
        hit_answers = [answer for answer, is_hit in zip(answers, hit, strict=True) if is_hit and answer is not None]
        rows.cached_lens.extend(len(answer.response_ids) for answer in hit_answers)
        rows.cached_correct.extend(bool(answer.acc) for answer in hit_answers if answer.acc is not None)
        prefixes = [self._prefix(answer, cut) for answer, cut in zip(answers, cuts, strict=True)]
        columns = self._columns(keys, answers, prefixes, [cut.max_new_tokens for cut in cuts])
        gen_batch.non_tensor_batch.update(columns)
        batch.non_tensor_batch[KEY_COLUMN] = _object_array(keys)
        batch.non_tensor_batch[PREFIX_LOGPROBS_REAL_COLUMN] = self._real_prefix_logprobs(prefixes, columns)
        batch.non_tensor_batch[HIT_COLUMN] = hit
        batch.non_tensor_batch[STALENESS_COLUMN] = staleness
        batch.non_tensor_batch[CUT_ANSWER_RIGHT_COLUMN] = _object_array(
            [None if answer is None else right_answer(answer.acc, answer.score) for answer in answers]
        )

        output = manager.generate_sequences(gen_batch.repeat(repeat_times=self.group_size, interleave=True))
        suffix_lens = np.asarray(output.non_tensor_batch[OUT_GENERATED], dtype=np.int64)
        rows.prefix_lens.append(np.asarray(output.non_tensor_batch[OUT_PREFIX_LEN], dtype=np.int64))
        rows.suffix_lens.append(suffix_lens)
        rows.group_ids.append(np.repeat(np.asarray(batch.non_tensor_batch["uid"], dtype=object), self.group_size))
        rows.cache_hit.append(np.repeat(hit, self.group_size))
        rows.staleness.append(np.repeat(staleness, self.group_size))
        if self.token_budget is not None:
            self._record_budget(answers, prefixes, suffix_lens, rows.seed_tokens - generated_before)
        return output

    def _record_budget(self, answers: list[Optional[CacheEntry]], prefixes: list[np.ndarray], suffix_lens: np.ndarray,
                       step_generated: int) -> None:
        """Count one generation call into the token budget (``verl_ext/rollout/token_budget.py``)."""
        per_prompt = suffix_lens.reshape(len(answers), self.group_size).sum(axis=1)
        cut = [i for i, answer in enumerate(answers) if answer is not None]
        lengths = [min(len(answers[i].response_ids), self.response_length) for i in cut]
        self.token_budget.record_call(
            cut_lengths=lengths,
            regenerated=[length - len(prefixes[i]) for i, length in zip(cut, lengths, strict=True)],
            cut_suffix_tokens=float(per_prompt[cut].sum()),
            uncut_tokens=float(per_prompt.sum() - per_prompt[cut].sum()),
            step_generated=float(step_generated),
            group_size=self.group_size,
        )

    def update_cache(self, batch: DataProto, step: int, rows: Optional[RolloutRows] = None) -> int:
        """Store one answer of each group (p_best: best, else uniform over all G) with the prompt's state moved by
        the group's outcome (a stateful cut policy's update; the right share; the counterpart). Returns the answers
        written; a group whose replacement rule keeps the old answer still updates the prompt's state.

        Called after rewards, before any DAPO filter: a group whose answers all scored the same still refreshes
        its entry. ``rows``: the step's rollout record, which gets each group's right share (also with
        ``rpo.cache.update=false``, which keeps every entry, its per-prompt state included, as it is). Two groups of
        one batch with the same key (a prompt drawn twice) each start from the same old entry, and the last one
        written stays, as for the answers themselves."""
        keys = batch.non_tensor_batch[KEY_COLUMN]
        scores = sequence_scores(batch)
        accs = accuracies(batch)
        right = [right_answer(accs[i] if accs is not None else None, float(scores[i])) for i in range(len(batch))]
        members: dict[Any, list[int]] = {}
        for row, uid in enumerate(batch.non_tensor_batch["uid"]):
            members.setdefault(uid, []).append(row)
        outcomes = [GroupOutcome(right=sum(right[i] for i in group), size=len(group),
                                 cut_answer_right=batch.non_tensor_batch[CUT_ANSWER_RIGHT_COLUMN][group[0]])
                    for group in members.values()]
        if rows is not None:
            rows.group_right_fracs.extend(outcome.right / outcome.size for outcome in outcomes)
        if not self.config.cache.update:
            return 0
        responses = response_ids(batch)
        prefix_lens = np.asarray(batch.non_tensor_batch[OUT_PREFIX_LEN], dtype=np.int64)
        logprobs = response_logprobs(batch) if self.config.cache.store_logprobs else [None] * len(batch)
        # An answer whose prefix carried 0.0 stand-ins keeps no log-probs: a placeholder is never stored as real.
        real = batch.non_tensor_batch[PREFIX_LOGPROBS_REAL_COLUMN]
        logprobs = [values if bool(is_real) else None for values, is_real in zip(logprobs, real, strict=True)]
        update = state_update(self.config.truncation.mode)
        written_keys: list[str] = []
        entries: list[CacheEntry] = []
        written = 0
        for group, outcome in zip(members.values(), outcomes, strict=True):
            key = str(keys[group[0]])
            old = self.cache.get(key)
            choice = choose_replacement(
                [float(scores[i]) for i in group],
                None if accs is None else [accs[i] for i in group],
                self.config.cache,
                self.rng,
            )
            if choice is None and old is None:
                continue
            # Every member's answer is needed only as a counterpart candidate; otherwise build the chosen one alone.
            needed = group if self.config.cache.keep_counterpart else [group[choice]] if choice is not None else []
            answers = {i: self._entry(responses[i], logprobs[i], scores[i], accs, i, step, "rpo") for i in needed}
            new = old if choice is None else answers[group[choice]]
            kept_prefix = choice is not None and prefix_lens[group[choice]] > 0
            entries.append(successor(
                old, new,
                cut_state=(None if old is None else old.cut_state) if update is None else update(
                    None if old is None else old.cut_state, outcome, self.config.truncation),
                last_right_frac=outcome.right / outcome.size,
                reuses=(old.reuses + 1 if choice is None or kept_prefix else 0) if old else 0,
                others=[answer for i, answer in answers.items() if choice is None or i != group[choice]],
                keep_counterpart=self.config.cache.keep_counterpart,
                rng=self.rng,
            ))
            written_keys.append(key)
            written += choice is not None
        self.cache.put_many(written_keys, entries)
        return written

    def _seed(
        self, manager: Any, gen_batch: DataProto, keys: list[str], positions: list[int], step: int,
        rows: RolloutRows, refresh: bool = False,
    ) -> None:
        """One full-length answer per prompt at ``positions``, written straight into the cache: a cold prompt's
        first answer (the paper's cold start) or, with ``refresh``, a fresh answer that replaces a cached one and
        inherits the prompt's state (``verl_ext/cache/healing.py``)."""
        seed_batch = gen_batch.select_idxs(positions)
        seed_keys = [keys[i] for i in positions]
        seed_batch.non_tensor_batch.update(
            self._columns(seed_keys, [None] * len(positions), [np.zeros(0, np.int32)] * len(positions),
                          [self.response_length] * len(positions))
        )
        padded, pad = pad_dataproto_to_divisor(seed_batch, self.num_workers)
        output = unpad_dataproto(manager.generate_sequences(padded), pad)
        responses = response_ids(output)
        logprobs = response_logprobs(output) if self.config.cache.store_logprobs else [None] * len(output)
        scores = sequence_scores(output)
        accs = accuracies(output)
        fresh = [self._entry(responses[j], logprobs[j], scores[j], accs, j, step, "seed")
                 for j in range(len(positions))]
        if refresh:
            fresh = [self._refreshed(self.cache.get(key), answer) for key, answer in zip(seed_keys, fresh, strict=True)]
            rows.refresh_count += len(positions)
        else:
            rows.seed_count += len(positions)
            if accs is not None:
                rows.seed_acc.extend(float(bool(a)) for a in accs)
        self.cache.put_many(seed_keys, fresh)
        rows.seed_tokens += int(sum(len(r) for r in responses))

    def _refreshed(self, old: CacheEntry, answer: CacheEntry) -> CacheEntry:
        """A fresh full answer in place of ``old``, keeping the prompt's state; the old answer may become the
        counterpart."""
        return successor(old, answer, cut_state=old.cut_state, last_right_frac=old.last_right_frac, reuses=0,
                         others=[], keep_counterpart=self.config.cache.keep_counterpart, rng=self.rng)

    def _cuts(self, keys: list[str], answers: list[Optional[CacheEntry]], gen_batch: DataProto, rows: RolloutRows,
              step_generated: int) -> list[Cut]:
        """Per-sample cut points of the answers to cut; a prompt still without one (full_group cold start) gets a
        full rollout. ``step_generated``: tokens this call already generated (seeds, refreshes), for the budget."""
        lengths = [0 if answer is None else len(answer.response_ids) for answer in answers]
        log_ratios = (
            self._log_ratios(answers, gen_batch, rows) if needs_current_logprobs(self.config.truncation.mode) else None
        )
        entries = [self.cache.get(key) for key in keys]
        states = [None if entry is None else entry.cut_state for entry in entries]
        cuts = sample_cuts(lengths, self.response_length, self.config.truncation, self.rng, log_ratios, states,
                           self._allowance(lengths, answers, step_generated))
        for answer, cut in zip(answers, cuts, strict=True):
            if answer is None:
                continue
            clipped = min(len(answer.response_ids), self.response_length)
            if clipped:
                rows.cut_fracs.append(1.0 - cut.prefix_len / clipped)
            if cut.accepted_len >= 0:
                rows.verify_accepted.append(cut.accepted_len)
                rows.verify_lengths.append(clipped)
        return [cut if answer is not None else Cut(0, self.response_length)
                for cut, answer in zip(cuts, answers, strict=True)]

    def _allowance(self, lengths: list[int], answers: list[Optional[CacheEntry]], step_generated: int
                   ) -> Optional[float]:
        """The regenerated tokens the token budget allows this call's cuts (None without a budget)."""
        if self.token_budget is None:
            return None
        return self.token_budget.call_allowance(
            cut_lengths=[min(length, self.response_length)
                         for length, answer in zip(lengths, answers, strict=True) if answer is not None],
            uncut_prompts=sum(answer is None for answer in answers),
            group_size=self.group_size,
            response_length=self.response_length,
            step_generated=step_generated,
        )

    def _log_ratios(
        self, entries: list[Optional[CacheEntry]], gen_batch: DataProto, rows: RolloutRows
    ) -> list[Optional[np.ndarray]]:
        """``log p_current - log p_behaviour`` of each cached answer's tokens, one actor pass over the answers whose
        entry kept real behaviour log-probs; None for the others (cut by the tail cut, counted as fallbacks)."""
        verifiable = [i for i, entry in enumerate(entries) if entry is not None and entry.logprobs is not None]
        rows.verify_fallbacks += sum(entry is not None and entry.logprobs is None for entry in entries)
        ratios: list[Optional[np.ndarray]] = [None] * len(entries)
        if not verifiable:
            return ratios
        answers = [np.asarray(entries[i].response_ids[: self.response_length]) for i in verifiable]
        start = time.perf_counter()
        current = self.current_logprobs(gen_batch.select_idxs(verifiable), answers)
        rows.verify_s += time.perf_counter() - start
        for i, logprobs in zip(verifiable, current, strict=True):
            behaviour = np.asarray(entries[i].logprobs[: self.response_length], dtype=np.float64)
            ratios[i] = np.asarray(logprobs, dtype=np.float64) - behaviour
        return ratios

    @staticmethod
    def _prefix(answer: Optional[CacheEntry], cut: Cut) -> np.ndarray:
        if answer is None:
            return np.zeros(0, dtype=np.int32)
        return np.asarray(answer.response_ids[: cut.prefix_len], dtype=np.int32)

    def _columns(self, keys: list[str], answers: list[Optional[CacheEntry]], prefixes: list[np.ndarray],
                 budgets: list[int]) -> dict[str, np.ndarray]:
        """The agent loop's per-prompt inputs: the prefix cut from each prompt's ``answers`` entry, its budget and,
        with stored log-probs, the prefix's behaviour log-probs."""
        columns = {
            "agent_name": _object_array([RPO_AGENT_NAME] * len(keys)),
            PREFIX_IDS: _object_array(prefixes),
            MAX_NEW_TOKENS: np.asarray(budgets, dtype=np.int64),
            LOSS_ON_PREFIX: np.full(len(keys), self.config.loss_on_prefix, dtype=bool),
        }
        if self.config.cache.store_logprobs:
            columns[PREFIX_LOGPROBS] = _object_array(
                [self._prefix_logprobs(key, answer, prefix)
                 for key, answer, prefix in zip(keys, answers, prefixes, strict=True)]
            )
        return columns

    def _prefix_logprobs(self, key: str, answer: Optional[CacheEntry], prefix: np.ndarray) -> Optional[np.ndarray]:
        """The cut answer's behaviour log-probs of ``prefix``; None when it kept none (the agent loop then stands 0.0
        in, which :meth:`_real_prefix_logprobs` records), or an error when the loss needs them."""
        logprobs = None if answer is None or answer.logprobs is None else answer.logprobs[: len(prefix)]
        if logprobs is not None and len(logprobs) == len(prefix):
            return logprobs
        if self.require_prefix_logprobs and len(prefix):
            raise MissingBehaviourLogprobs(
                f"rpo: the cache entry of prompt {key!r} has no behaviour log-probs for its {len(prefix)}-token "
                "prefix, "
                "but rpo.loss_on_prefix=true with algorithm.rollout_correction compares the prefix against them. "
                "Build the offline cache with data_prep/build_cache.py --store-logprobs (or resume from a run that "
                "had rpo.cache.store_logprobs=true), or set rpo.loss_on_prefix=false"
            )
        return None

    @staticmethod
    def _real_prefix_logprobs(prefixes: list[np.ndarray], columns: dict[str, np.ndarray]) -> np.ndarray:
        """Per prompt: whether the prefix's log-probs reaching the batch are real (empty prefix, or kept ones)."""
        kept = columns.get(PREFIX_LOGPROBS, _object_array([None] * len(prefixes)))
        return np.array(
            [len(prefix) == 0 or logprobs is not None for prefix, logprobs in zip(prefixes, kept, strict=True)],
            dtype=bool,
        )

    def _entry(
        self,
        ids: np.ndarray,
        logprobs: Optional[np.ndarray],
        score: float,
        accs: Optional[list[Optional[bool]]],
        row: int,
        step: int,
        source: str,
    ) -> CacheEntry:
        return CacheEntry(
            response_ids=ids,
            logprobs=logprobs,
            score=float(score),
            acc=None if accs is None else accs[row],
            step=int(step),
            source=source,  # type: ignore[arg-type]
            finished=bool(len(ids) > 0 and int(ids[-1]) in self.eos_token_ids),
        )


def rollout_metrics(
    rows: RolloutRows, *, cache: ExperienceCache, response_budget: int, group_size: int, verifying: bool,
    token_budget: Optional[TokenBudget] = None,
) -> dict[str, float]:
    """The step's ``rpo/*`` rollout metrics from what :meth:`PartialRollout.generate` and
    :meth:`PartialRollout.update_cache` recorded (``verl_ext/training/metrics.py``); ``verifying``: the cut policy
    verified the cached answers; ``token_budget``: the run's budget, if it has one."""
    cache_size = len(cache)
    result = compute_rpo_metrics(
        prefix_lens=rows.concat("prefix_lens"),
        suffix_lens=rows.concat("suffix_lens"),
        group_ids=rows.concat("group_ids"),
        cache_hit=rows.concat("cache_hit").astype(bool),
        staleness=rows.concat("staleness"),
        cache_size=cache_size,
        seed_count=rows.seed_count,
        seed_tokens=rows.seed_tokens,
        response_budget=response_budget,
        group_size=group_size,
    )
    if rows.seed_acc:
        result["rpo/seed_acc"] = float(np.mean(rows.seed_acc))
    if rows.cached_lens:
        result["rpo/cached_len_mean"] = float(np.mean(rows.cached_lens))
    if rows.cached_correct:
        result["rpo/cached_acc_frac"] = float(np.mean(rows.cached_correct))
    result.update(healing_metrics(
        cut_fracs=rows.cut_fracs, group_right_fracs=rows.group_right_fracs, refresh_count=rows.refresh_count,
        counterpart_cuts=rows.counterpart_cuts, cache_size=cache_size,
        counterpart_entries=sum(entry.counterpart is not None for _, entry in cache.items()),
    ))
    if token_budget is not None:
        result.update(budget_metrics(spent_share=token_budget.spent_share, overrun=token_budget.overrun,
                                     target_share=token_budget.share))
    if verifying:
        result.update(
            verify_metrics(
                accepted=rows.verify_accepted,
                lengths=rows.verify_lengths,
                fallbacks=rows.verify_fallbacks,
                seconds=rows.verify_s,
            )
        )
    return result
