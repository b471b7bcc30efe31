"""The RPO experience cache: one earlier answer (as token ids) per training prompt, and its parquet file.

Each step the trainer cuts the cached answer of every prompt and regenerates only a suffix; afterwards one of the
new answers replaces the entry. The cache lives in the trainer's process (``recipe/rpo/rpo_ray_trainer.py``) and is
saved beside every checkpoint (``verl_ext/cache/checkpoint.py``), so a resumed run continues from the same prefixes.

Token ids, not text: decoding and re-tokenising an answer can change its tokens at BPE boundaries, so the prefix
fed to the engine would no longer be what the policy generated. Token ids are only meaningful for the tokenizer
that produced them, hence the tokenizer fingerprint in the file header.

File format (one parquet file, schema version 2):

========================  ===========================  =====================================================
column                    type                         meaning
========================  ===========================  =====================================================
``key``                   string                       prompt key (:mod:`verl_ext.cache.keys`)
``slot``                  string                       ``primary`` (the answer cut by default; one per key) or
                                                       ``counterpart`` (at most one per key, see below)
``response_ids``          list<int32>                  the cached answer's token ids, no padding
``logprobs``              list<float32>, nullable      behaviour log-probs of those tokens, if kept
``score``                 float32                      the answer's reward score
``acc``                   bool, nullable               the answer's accuracy, if the reward reported one
``step``                  int32                        the training step that wrote the entry
``source``                string                       ``seed`` | ``rpo`` | ``offline``
``finished``              bool                         the answer ended with EOS (not cut by the budget)
``cut_state``             list<float64>, nullable      the cut policy's per-prompt state (primary rows only)
``reuses``                int32                        RPO visits since the prompt's last full answer
``last_right_frac``       float32, nullable            share of right answers in the prompt's last group
========================  ===========================  =====================================================

A ``counterpart`` row is the prompt's latest answer of the other correctness than its primary one
(``rpo.cache.keep_counterpart``), so that a cut can be taken from a right or a wrong answer; its own per-prompt
columns are null/0. Version 1 files (the first nine columns without ``slot``: one primary row per key) still load,
with no cut state, 0 reuses and no counterpart.

The parquet schema metadata is the header: ``schema_version``, ``tokenizer_fingerprint`` and
``key_mode`` (``"index"`` | ``"content"``). :meth:`ExperienceCache.load` checks all of it and raises
:class:`CacheFileError` naming the file rather than ever returning a silently empty or mismatched cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.cache.atomic import write_atomically
from verl_ext.cache.keys import KEY_MODES, MAX_EXAMPLES, KeyMode, check_key_mode

EntrySource = Literal["seed", "rpo", "offline"]
ENTRY_SOURCES: tuple[str, ...] = get_args(EntrySource)

SCHEMA_VERSION = 2
"""The file format :meth:`ExperienceCache.save` writes; bump it when the columns change."""
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)
PRIMARY_SLOT = "primary"
COUNTERPART_SLOT = "counterpart"

META_SCHEMA_VERSION = b"schema_version"
META_TOKENIZER_FINGERPRINT = b"tokenizer_fingerprint"
META_KEY_MODE = b"key_mode"

ARROW_SCHEMA_V1 = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("response_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("logprobs", pa.list_(pa.float32()), nullable=True),
    pa.field("score", pa.float32(), nullable=False),
    pa.field("acc", pa.bool_(), nullable=True),
    pa.field("step", pa.int32(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("finished", pa.bool_(), nullable=False),
])
"""The columns of a version-1 file (one primary row per key)."""
ARROW_SCHEMA = pa.schema([
    ARROW_SCHEMA_V1.field("key"),
    pa.field("slot", pa.string(), nullable=False),
    *(field for field in ARROW_SCHEMA_V1 if field.name != "key"),
    pa.field("cut_state", pa.list_(pa.float64()), nullable=True),
    pa.field("reuses", pa.int32(), nullable=False),
    pa.field("last_right_frac", pa.float32(), nullable=True),
])
"""The columns of a cache file; the nullable flags are also checked on load, as null counts."""
SCHEMAS = {1: ARROW_SCHEMA_V1, 2: ARROW_SCHEMA}

_INT32_MAX = np.iinfo(np.int32).max


class CacheFileError(ValueError):
    """A cache file is unreadable, corrupt, of an unknown version, or was written for another tokenizer/key mode."""


@dataclass(frozen=True, eq=False)
class CacheEntry:
    """One cached answer. Immutable: its arrays are private read-only copies, so a prefix slice handed to the
    rollout can never change the cache, and the cache can never change a batch.

    ``score`` is stored as float32 (the file's type), so an entry equals itself after a save/load round trip.
    """

    response_ids: np.ndarray
    """int32 token ids of the answer, without prompt or padding."""
    logprobs: np.ndarray | None
    """float32 behaviour log-probs, one per token, or None when not kept."""
    score: float
    acc: bool | None
    step: int
    """The training step that wrote the entry; staleness is ``current_step - step``."""
    source: EntrySource
    finished: bool = False
    """The answer ended with EOS, i.e. it was not cut off by the response budget."""
    cut_state: np.ndarray | None = None
    """The cut policy's per-prompt state (read-only float64; ``verl_ext/rollout/truncation.py``), None until a stateful
    policy first updates it. It belongs to the prompt: a new answer of the prompt carries it on."""
    reuses: int = 0
    """The prompt's RPO visits since it last got an answer generated in full: 0 after a seed, offline or refreshed
    answer (or a visit that regenerated the whole answer); each visit that kept a cached prefix (of the entry's
    answer or of its counterpart) adds one."""
    last_right_frac: float | None = None
    """The share of right answers in the group of the prompt's last RPO visit (None before one, or without accuracy)."""
    counterpart: CacheEntry | None = None
    """The prompt's latest answer of the other correctness (``rpo.cache.keep_counterpart``): both accuracies are known
    and differ; its own per-prompt fields are unset."""

    def __post_init__(self) -> None:
        response_ids = _frozen_array(self.response_ids, np.int32, "response_ids")
        if response_ids.size and response_ids.min() < 0:
            raise ValueError(f"CacheEntry.response_ids has negative token id {int(response_ids.min())}: padding or "
                             "an ignore index leaked into the answer; store only the valid response tokens")
        logprobs = None if self.logprobs is None else _frozen_array(self.logprobs, np.float32, "logprobs")
        if logprobs is not None and len(logprobs) != len(response_ids):
            raise ValueError(f"CacheEntry.logprobs has {len(logprobs)} values for {len(response_ids)} response_ids; "
                             "expected one log-prob per token")
        if self.source not in ENTRY_SOURCES:
            raise ValueError(f"CacheEntry.source must be one of {list(ENTRY_SOURCES)}, got {self.source!r}")
        if isinstance(self.step, (bool, np.bool_)) or not isinstance(self.step, (int, np.integer)) \
                or not 0 <= self.step <= _INT32_MAX:
            raise ValueError(f"CacheEntry.step must be an integer in [0, {_INT32_MAX}], got {self.step!r}")
        score = float(np.float32(self.score))
        if np.isnan(score):
            raise ValueError("CacheEntry.score is NaN; fix the reward function rather than caching its answer")
        object.__setattr__(self, "response_ids", response_ids)
        object.__setattr__(self, "logprobs", logprobs)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "acc", None if self.acc is None else bool(self.acc))
        object.__setattr__(self, "step", int(self.step))
        object.__setattr__(self, "finished", bool(self.finished))
        object.__setattr__(self, "cut_state", _checked_cut_state(self.cut_state))
        if isinstance(self.reuses, (bool, np.bool_)) or not isinstance(self.reuses, (int, np.integer)) \
                or not 0 <= self.reuses <= _INT32_MAX:
            raise ValueError(f"CacheEntry.reuses must be an integer in [0, {_INT32_MAX}], got {self.reuses!r}")
        object.__setattr__(self, "reuses", int(self.reuses))
        if self.last_right_frac is not None:
            fraction = float(np.float32(self.last_right_frac))
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"CacheEntry.last_right_frac must be in [0, 1] or None, got {self.last_right_frac!r}")
            object.__setattr__(self, "last_right_frac", fraction)
        _check_counterpart(self)

    @property
    def has_prompt_state(self) -> bool:
        """Whether any per-prompt field is set (a counterpart answer has none)."""
        return (self.cut_state is not None or self.reuses != 0 or self.last_right_frac is not None
                or self.counterpart is not None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CacheEntry):
            return NotImplemented
        same_logprobs = (self.logprobs is None and other.logprobs is None) or (
            self.logprobs is not None and other.logprobs is not None
            and np.array_equal(self.logprobs, other.logprobs, equal_nan=True))
        same_state = (self.cut_state is None and other.cut_state is None) or (
            self.cut_state is not None and other.cut_state is not None
            and np.array_equal(self.cut_state, other.cut_state))
        return (np.array_equal(self.response_ids, other.response_ids) and same_logprobs and same_state
                and (self.score, self.acc, self.step, self.source, self.finished, self.reuses, self.last_right_frac,
                     self.counterpart)
                == (other.score, other.acc, other.step, other.source, other.finished, other.reuses,
                    other.last_right_frac, other.counterpart))

    __hash__ = None  # type: ignore[assignment]  # holds arrays; equality is by value


class ExperienceCache:
    """One :class:`CacheEntry` per prompt key, plus the header that says what the keys and token ids mean."""

    def __init__(self, *, key_mode: KeyMode, tokenizer_fingerprint: str) -> None:
        """Create an empty cache for keys built in ``key_mode`` and token ids of the tokenizer with this fingerprint
        (see :func:`tokenizer_fingerprint`)."""
        self.key_mode: KeyMode = check_key_mode(key_mode)
        if not isinstance(tokenizer_fingerprint, str) or not tokenizer_fingerprint:
            raise ValueError(f"tokenizer_fingerprint must be a non-empty string, got {tokenizer_fingerprint!r}")
        self.tokenizer_fingerprint = tokenizer_fingerprint
        self._entries: dict[str, CacheEntry] = {}

    def get(self, key: str) -> CacheEntry | None:
        """The entry of ``key``, or None if the prompt has none yet (it needs a seed answer)."""
        return self._entries.get(key)

    def put(self, key: str, entry: CacheEntry) -> None:
        """Set or replace the entry of ``key``."""
        self._entries[_checked_key(key)] = _checked_entry(entry)

    def put_many(self, keys: Sequence[str], entries: Sequence[CacheEntry]) -> None:
        """Set or replace several entries; all are checked before any is stored. A key given twice keeps its last
        entry, as repeated :meth:`put` calls would."""
        if len(keys) != len(entries):
            raise ValueError(f"put_many: {len(keys)} keys but {len(entries)} entries")
        checked = [(_checked_key(key), _checked_entry(entry)) for key, entry in zip(keys, entries, strict=True)]
        self._entries.update(checked)

    def items(self) -> Iterable[tuple[str, CacheEntry]]:
        """(key, entry) pairs in insertion order."""
        return self._entries.items()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExperienceCache):
            return NotImplemented
        return (self.key_mode, self.tokenizer_fingerprint, self._entries) == (
            other.key_mode, other.tokenizer_fingerprint, other._entries)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (f"ExperienceCache({len(self)} entries, key_mode={self.key_mode!r}, "
                f"tokenizer_fingerprint={self.tokenizer_fingerprint[:12]!r}...)")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the cache to one parquet file, atomically.

        The file is written under a temporary name in the same directory, flushed and fsynced, then renamed over
        ``path`` and the directory fsynced. A crash or error at any point leaves either the old file or the new one,
        never a partial file under ``path``, so the checkpoint that names this cache stays loadable.

        Raises:
            FileNotFoundError: the directory of ``path`` does not exist.
        """
        path = Path(path)
        directory = path.parent
        if not directory.is_dir():
            raise FileNotFoundError(f"cannot save the RPO experience cache to {path}: directory {directory} "
                                    "does not exist")
        table = self._to_table()
        write_atomically(path, lambda handle: pq.write_table(table, handle))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expected_tokenizer_fingerprint: str | None = None,
             expected_key_mode: KeyMode | None = None) -> ExperienceCache:
        """Read a cache written by :meth:`save`, checking everything that would make it wrong to reuse.

        Args:
            path: the parquet file.
            expected_tokenizer_fingerprint: the current tokenizer's fingerprint; a file written for another
                tokenizer holds token ids that mean other text.
            expected_key_mode: the current key mode; a file keyed another way would match no prompt, or the
                wrong ones.

        Raises:
            FileNotFoundError: no file at ``path`` (the caller decides whether to start cold).
            CacheFileError: the file is not a readable parquet file (truncated, corrupt), has no or an unknown
                schema version, lacks a column or has one of the wrong type, has nulls where none are allowed, has
                an invalid entry or duplicate keys, or does not match the expected fingerprint/key mode.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"RPO experience cache file {path} does not exist")
        with _unreadable_as_cache_file_error(path):
            schema = pq.read_schema(path)  # the footer only: a mismatch fails before the data is read
        version, key_mode, fingerprint = _read_header(path, schema.metadata or {})
        if expected_key_mode is not None and key_mode != expected_key_mode:
            raise CacheFileError(f"{path} was keyed in mode {key_mode!r} but the current key mode is "
                                 f"{expected_key_mode!r}: its keys would match no prompt or the wrong ones. Set "
                                 f"the key mode back to {key_mode!r}, or start without this cache")
        if expected_tokenizer_fingerprint is not None and fingerprint != expected_tokenizer_fingerprint:
            raise CacheFileError(f"{path} was written for tokenizer fingerprint {fingerprint} but the current "
                                 f"tokenizer has {expected_tokenizer_fingerprint}: its token ids would decode to other "
                                 "text. Use the tokenizer the cache was built with, or start without this cache")
        with _unreadable_as_cache_file_error(path):
            table = pq.read_table(path)
        _check_columns(path, table, SCHEMAS[version])

        cache = cls(key_mode=key_mode, tokenizer_fingerprint=fingerprint)
        keys = table.column("key").to_pylist()
        slots = table.column("slot").to_pylist() if version >= 2 else [PRIMARY_SLOT] * len(keys)
        cache._entries = _prompts_from_rows(path, keys, slots, _entries_from_table(path, table, keys, version))
        return cache

    def _to_table(self) -> pa.Table:
        """The cache as an Arrow table with :data:`ARROW_SCHEMA` and the header as schema metadata: one primary row
        per key, then one counterpart row per key that has one."""
        keys, slots, entries = list(self._entries), [PRIMARY_SLOT] * len(self._entries), list(self._entries.values())
        for key, entry in self._entries.items():
            if entry.counterpart is not None:
                keys.append(key)
                slots.append(COUNTERPART_SLOT)
                entries.append(entry.counterpart)
        logprobs = [entry.logprobs for entry in entries]
        states = [entry.cut_state for entry in entries]
        columns = [
            pa.array(keys, type=pa.string()),
            pa.array(slots, type=pa.string()),
            _list_array([entry.response_ids for entry in entries], np.int32),
            _list_array(logprobs, np.float32, null=np.array([lp is None for lp in logprobs], dtype=bool)),
            pa.array([entry.score for entry in entries], type=pa.float32()),
            pa.array([entry.acc for entry in entries], type=pa.bool_()),
            pa.array([entry.step for entry in entries], type=pa.int32()),
            pa.array([entry.source for entry in entries], type=pa.string()),
            pa.array([entry.finished for entry in entries], type=pa.bool_()),
            _list_array(states, np.float64, null=np.array([state is None for state in states], dtype=bool)),
            pa.array([entry.reuses for entry in entries], type=pa.int32()),
            pa.array([entry.last_right_frac for entry in entries], type=pa.float32()),
        ]
        metadata = {
            META_SCHEMA_VERSION: str(SCHEMA_VERSION).encode(),
            META_TOKENIZER_FINGERPRINT: self.tokenizer_fingerprint.encode(),
            META_KEY_MODE: self.key_mode.encode(),
        }
        return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA.with_metadata(metadata))


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A sha256 hex digest of what decides a tokenizer's token ids, to stamp and check cache files with.

    Hashes the token -> id mapping (``get_vocab()``, added tokens included, sorted), the special tokens with their
    ids, the EOS id and the tokenizer class. The class name is taken without a trailing ``Fast`` so that the slow and
    fast classes of one tokenizer agree. Works for any Hugging Face tokenizer; a dict's order never matters.
    """
    vocab = tokenizer.get_vocab()
    specials = sorted((str(token), tokenizer.convert_tokens_to_ids(token)) for token in tokenizer.all_special_tokens)
    described = {
        "class": type(tokenizer).__name__.removesuffix("Fast"),
        "vocab": sorted((int(token_id), str(token)) for token, token_id in vocab.items()),
        "special_tokens": specials,
        "eos_token_id": tokenizer.eos_token_id,
    }
    return hashlib.sha256(json.dumps(described, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def _frozen_array(values: Any, dtype: type[np.generic], field: str) -> np.ndarray:
    """A private, read-only, 1-D copy of ``values`` as ``dtype``; integer fields reject floats."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"CacheEntry.{field} must be 1-D, got shape {array.shape}")
    if dtype is np.int32 and array.size and array.dtype.kind not in "iu":
        raise ValueError(f"CacheEntry.{field} must hold integer token ids, got dtype {array.dtype}")
    if dtype is np.int32 and array.size and array.max() > _INT32_MAX:
        raise ValueError(f"CacheEntry.{field} has token id {int(array.max())} beyond the int32 range")
    frozen = np.array(array, dtype=dtype)
    frozen.setflags(write=False)
    return frozen


def _checked_cut_state(state: Any) -> np.ndarray | None:
    """A read-only float64 copy of a cut policy's state; NaN or infinite values are refused."""
    if state is None:
        return None
    array = np.array(state, dtype=np.float64)
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ValueError(f"CacheEntry.cut_state must be a 1-D array of finite numbers, got {state!r}")
    array.setflags(write=False)
    return array


def _check_counterpart(entry: CacheEntry) -> None:
    counterpart = entry.counterpart
    if counterpart is None:
        return
    if not isinstance(counterpart, CacheEntry):
        raise TypeError(f"CacheEntry.counterpart must be a CacheEntry or None, got {type(counterpart).__name__}")
    if counterpart.has_prompt_state:
        raise ValueError("CacheEntry.counterpart carries per-prompt fields (cut_state, reuses, last_right_frac or "
                         "its own counterpart); they belong to the primary entry")
    if entry.acc is None or counterpart.acc is None or entry.acc == counterpart.acc:
        raise ValueError(f"CacheEntry.counterpart must be of the other correctness: acc {entry.acc!r} and "
                         f"{counterpart.acc!r}")


def _checked_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"experience cache keys must be non-empty strings, got {key!r}")
    return key


def _checked_entry(entry: CacheEntry) -> CacheEntry:
    if not isinstance(entry, CacheEntry):
        raise TypeError(f"experience cache values must be CacheEntry, got {type(entry).__name__}")
    return entry


def _list_array(arrays: Sequence[np.ndarray | None], dtype: type[np.generic],
                null: np.ndarray | None = None) -> pa.ListArray:
    """One Arrow list array from many numpy arrays, built from offsets instead of element by element."""
    lengths = np.array([0 if array is None else len(array) for array in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if offsets[-1] > _INT32_MAX:
        raise ValueError(f"the experience cache holds {offsets[-1]} tokens, more than one parquet list column can "
                         f"index ({_INT32_MAX}); schema version {SCHEMA_VERSION} cannot store it")
    present = [array for array in arrays if array is not None]
    values = np.concatenate(present).astype(dtype, copy=False) if present else np.zeros(0, dtype=dtype)
    mask = None if null is None or not null.any() else pa.array(null)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), pa.array(values), mask=mask)




@contextmanager
def _unreadable_as_cache_file_error(path: Path) -> Iterator[None]:
    """Turn pyarrow's errors on a damaged file into a CacheFileError that names the file and what to do."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        raise CacheFileError(f"{path} is not a readable parquet file ({type(exc).__name__}: {exc}); it may be "
                             "truncated or corrupt, e.g. an interrupted copy. Restore it from its checkpoint, "
                             "or delete it to start with a cold cache") from exc


def _read_header(path: Path, metadata: dict[bytes, bytes]) -> tuple[int, KeyMode, str]:
    """Check the schema metadata header; return the schema version, the key mode and the tokenizer fingerprint."""
    missing = [name.decode() for name in (META_SCHEMA_VERSION, META_TOKENIZER_FINGERPRINT, META_KEY_MODE)
               if name not in metadata]
    if missing:
        raise CacheFileError(f"{path} is a parquet file but not an RPO experience cache: its schema metadata lacks "
                             f"{missing}")
    version = metadata[META_SCHEMA_VERSION].decode(errors="replace")
    if not version.isdigit() or int(version) not in SUPPORTED_SCHEMA_VERSIONS:
        raise CacheFileError(f"{path} has cache schema_version {version!r}; this code reads versions "
                             f"{list(SUPPORTED_SCHEMA_VERSIONS)}. Use the code version that wrote it, or rebuild "
                             "the cache")
    key_mode = metadata[META_KEY_MODE].decode(errors="replace")
    if key_mode not in KEY_MODES:
        raise CacheFileError(f"{path} has key_mode {key_mode!r} in its header; expected one of {list(KEY_MODES)}")
    fingerprint = metadata[META_TOKENIZER_FINGERPRINT].decode(errors="replace")
    if not fingerprint:
        raise CacheFileError(f"{path} has an empty tokenizer_fingerprint in its header")
    return int(version), key_mode, fingerprint  # type: ignore[return-value]


def _check_columns(path: Path, table: pa.Table, schema: pa.Schema) -> None:
    """Every column of the file version's ``schema`` is present with its type, and non-nullable columns hold no
    nulls."""
    for field in schema:
        if field.name not in table.column_names:
            raise CacheFileError(f"{path} lacks column {field.name!r} ({field.type}); found {table.column_names}")
        column = table.column(field.name)
        if column.type != field.type:
            raise CacheFileError(f"{path}: column {field.name!r} has type {column.type}, expected {field.type}")
        if not field.nullable and column.null_count:
            raise CacheFileError(f"{path}: column {field.name!r} has {column.null_count} nulls; it must have none")
        if pa.types.is_list(field.type) and _list_element_null_count(column):
            raise CacheFileError(f"{path}: column {field.name!r} has null values inside its lists")
    bad_sources = set(table.column("source").unique().to_pylist()) - set(ENTRY_SOURCES)
    if bad_sources:
        raise CacheFileError(f"{path}: column 'source' has values {sorted(bad_sources)}; expected one of "
                             f"{list(ENTRY_SOURCES)}")
    if "slot" in schema.names:
        bad_slots = set(table.column("slot").unique().to_pylist()) - {PRIMARY_SLOT, COUNTERPART_SLOT}
        if bad_slots:
            raise CacheFileError(f"{path}: column 'slot' has values {sorted(bad_slots)}; expected "
                                 f"{PRIMARY_SLOT!r} or {COUNTERPART_SLOT!r}")


def _list_element_null_count(column: pa.ChunkedArray) -> int:
    """Nulls among the elements of a list column's lists (not the lists themselves)."""
    return sum(chunk.flatten().null_count for chunk in column.chunks)


def _check_unique_keys(path: Path, keys: list[str], slot: str = PRIMARY_SLOT) -> None:
    """One entry per prompt and slot: a file with a key twice would depend on row order to decide which one wins."""
    seen: set[str] = set()
    duplicated: dict[str, int] = {}
    for key in keys:
        if key in seen:
            duplicated[key] = duplicated.get(key, 1) + 1
        seen.add(key)
    if duplicated:
        examples = ", ".join(f"{key!r} x{count}" for key, count in list(duplicated.items())[:MAX_EXAMPLES])
        raise CacheFileError(f"{path} has {len(duplicated)} duplicated keys among its {slot} rows, e.g. "
                             f"{examples}; a cache holds one {slot} answer per prompt")


def _prompts_from_rows(path: Path, keys: list[str], slots: list[str],
                       entries: list[CacheEntry]) -> dict[str, CacheEntry]:
    """The primary entries by key, each with its counterpart row attached (a counterpart without a primary row, or
    one that breaks :class:`CacheEntry`'s counterpart rules, is an error naming the file)."""
    primary = [(key, entry) for key, slot, entry in zip(keys, slots, entries, strict=True) if slot == PRIMARY_SLOT]
    counterparts = [(key, entry) for key, slot, entry in zip(keys, slots, entries, strict=True)
                    if slot == COUNTERPART_SLOT]
    _check_unique_keys(path, [key for key, _ in primary])
    _check_unique_keys(path, [key for key, _ in counterparts], COUNTERPART_SLOT)
    by_key = dict(primary)
    for key, counterpart in counterparts:
        if key not in by_key:
            raise CacheFileError(f"{path}: key {key!r} has a counterpart row but no primary row")
        try:
            by_key[key] = replace(by_key[key], counterpart=counterpart)
        except ValueError as exc:
            raise CacheFileError(f"{path}: the counterpart of key {key!r} is not valid: {exc}") from exc
    return by_key


def _entries_from_table(path: Path, table: pa.Table, keys: list[str], version: int) -> list[CacheEntry]:
    """Rebuild the entries column-wise (one numpy view per list column, sliced by offsets); a version-1 file has no
    per-prompt columns, so its entries get none."""
    response_ids = _list_slices(table.column("response_ids"))
    logprobs = _list_slices(table.column("logprobs"))
    scores = table.column("score").to_pylist()
    accs = table.column("acc").to_pylist()
    steps = table.column("step").to_pylist()
    sources = table.column("source").to_pylist()
    finished = table.column("finished").to_pylist()
    rows = len(keys)
    states = _list_slices(table.column("cut_state")) if version >= 2 else [None] * rows
    reuses = table.column("reuses").to_pylist() if version >= 2 else [0] * rows
    right_fracs = table.column("last_right_frac").to_pylist() if version >= 2 else [None] * rows
    entries = []
    for row, key in enumerate(keys):
        ids = response_ids[row]
        assert ids is not None, "checked by _check_columns: response_ids has no null lists"
        try:
            entries.append(CacheEntry(response_ids=ids, logprobs=logprobs[row], score=scores[row],
                                      acc=accs[row], step=steps[row], source=sources[row], finished=finished[row],
                                      cut_state=states[row], reuses=reuses[row], last_right_frac=right_fracs[row]))
        except ValueError as exc:
            raise CacheFileError(f"{path}: row {row} (key {key!r}) is not a valid entry: {exc}") from exc
    return entries


def _list_slices(column: pa.ChunkedArray) -> list[np.ndarray | None]:
    """Each list of a list column as a numpy view (None for a null list), without a Python object per element."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets = array.offsets.to_numpy()
    values = array.values.to_numpy(zero_copy_only=False)
    is_null = array.is_null().to_numpy(zero_copy_only=False)
    return [None if is_null[row] else values[offsets[row]:offsets[row + 1]] for row in range(len(array))]
