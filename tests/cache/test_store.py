"""Tests for verl_ext.cache.store: entries, the in-memory cache, the parquet file and the tokenizer fingerprint."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.cache.store import CacheEntry, CacheFileError, ExperienceCache, tokenizer_fingerprint

FINGERPRINT = "f" * 64


def make_entry(ids=(1, 2, 3), logprobs=None, score=1.0, acc=True, step=0, source="rpo", finished=True) -> CacheEntry:
    return CacheEntry(response_ids=ids, logprobs=logprobs, score=score, acc=acc, step=step,
                      source=source, finished=finished)


def make_cache(key_mode="index") -> ExperienceCache:
    cache = ExperienceCache(key_mode=key_mode, tokenizer_fingerprint=FINGERPRINT)
    cache.put("math:0", make_entry(ids=[5, 6, 7, 2], logprobs=[-0.5, -1.0, -0.25, -0.1], score=0.1, acc=True, step=3,
                                   source="rpo", finished=True))
    cache.put("math:1", make_entry(ids=[9, 8], logprobs=None, score=-0.5, acc=None, step=0, source="seed",
                                   finished=False))
    cache.put("math:2", make_entry(ids=[], logprobs=None, score=0.0, acc=False, step=7, source="offline"))
    cache.put("math:3", make_entry(ids=[], logprobs=[], score=2.0, acc=None, step=1, source="rpo", finished=False))
    return cache


def saved_table(tmp_path: Path) -> pa.Table:
    """A valid cache file's table, to corrupt in one way per test."""
    path = tmp_path / "valid.parquet"
    make_cache().save(path)
    return pq.read_table(path)


def write_variant(tmp_path: Path, table: pa.Table) -> Path:
    path = tmp_path / "variant.parquet"
    pq.write_table(table, path)
    return path


# ---------------------------------------------------------------- entries


def test_entry_normalises_types_and_is_read_only():
    source_ids = np.array([1, 2, 3], dtype=np.int64)
    entry = make_entry(ids=source_ids, logprobs=[-1, -2, -3], score=0.1, acc=np.True_, step=np.int64(4))
    assert entry.response_ids.dtype == np.int32 and entry.logprobs.dtype == np.float32
    assert entry.score == float(np.float32(0.1)) and entry.acc is True and type(entry.step) is int
    with pytest.raises(ValueError):
        entry.response_ids[0] = 42
    source_ids[0] = 42  # the caller's array is not shared
    assert entry.response_ids[0] == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ids": [1, -100]}, "negative token id"),
    ({"ids": [1.0, 2.0]}, "integer token ids"),
    ({"ids": [[1, 2]]}, "1-D"),
    ({"ids": [1, 2], "logprobs": [-1.0]}, "one log-prob per token"),
    ({"source": "cold"}, "CacheEntry.source"),
    ({"step": -1}, "CacheEntry.step"),
    ({"step": 1.5}, "CacheEntry.step"),
    ({"score": float("nan")}, "CacheEntry.score is NaN"),
])
def test_entry_rejects_invalid_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_entry(**kwargs)


def test_entry_equality_is_by_value():
    assert make_entry(logprobs=[-1, -2, -3]) == make_entry(logprobs=np.array([-1, -2, -3], dtype=np.float64))
    assert make_entry() != make_entry(ids=[1, 2, 4])
    assert make_entry() != make_entry(logprobs=[-1, -2, -3])
    assert make_entry() != make_entry(finished=False)


# ---------------------------------------------------------------- in-memory cache


def test_cache_mapping_interface():
    cache = ExperienceCache(key_mode="content", tokenizer_fingerprint=FINGERPRINT)
    assert len(cache) == 0 and cache.get("a") is None and "a" not in cache
    cache.put_many(["b", "a", "b"], [make_entry(step=1), make_entry(step=2), make_entry(step=3)])
    assert len(cache) == 2 and "a" in cache
    assert list(cache) == ["b", "a"]
    assert cache.get("b").step == 3  # a repeated key keeps its last entry
    assert [(key, entry.step) for key, entry in cache.items()] == [("b", 3), ("a", 2)]
    cache.put("a", make_entry(step=9))
    assert cache.get("a").step == 9


def test_put_many_checks_everything_before_storing():
    cache = ExperienceCache(key_mode="index", tokenizer_fingerprint=FINGERPRINT)
    with pytest.raises(ValueError, match="2 keys but 1 entries"):
        cache.put_many(["a", "b"], [make_entry()])
    with pytest.raises(TypeError, match="CacheEntry"):
        cache.put_many(["a", "b"], [make_entry(), {"response_ids": [1]}])
    with pytest.raises(ValueError, match="non-empty strings"):
        cache.put("", make_entry())
    assert len(cache) == 0


def test_cache_header_is_validated():
    with pytest.raises(ValueError, match="key mode"):
        ExperienceCache(key_mode="uid", tokenizer_fingerprint=FINGERPRINT)
    with pytest.raises(ValueError, match="tokenizer_fingerprint"):
        ExperienceCache(key_mode="index", tokenizer_fingerprint="")


def test_cache_equality_includes_header_and_entries():
    assert make_cache() == make_cache()
    assert make_cache() != make_cache(key_mode="content")
    other = make_cache()
    other.put("math:0", make_entry(step=99))
    assert make_cache() != other


# ---------------------------------------------------------------- save / load


def test_round_trip(tmp_path):
    cache = make_cache("content")
    path = tmp_path / "rpo_cache.parquet"
    cache.save(path)
    loaded = ExperienceCache.load(path, expected_tokenizer_fingerprint=FINGERPRINT, expected_key_mode="content")
    assert loaded == cache
    assert list(loaded) == list(cache)
    assert loaded.get("math:1").logprobs is None and loaded.get("math:1").acc is None
    assert loaded.get("math:3").logprobs is not None and len(loaded.get("math:3").logprobs) == 0
    assert len(loaded.get("math:2").response_ids) == 0


def test_round_trip_of_an_empty_cache(tmp_path):
    cache = ExperienceCache(key_mode="index", tokenizer_fingerprint=FINGERPRINT)
    cache.save(tmp_path / "empty.parquet")
    assert ExperienceCache.load(tmp_path / "empty.parquet") == cache


def test_file_layout(tmp_path):
    path = tmp_path / "rpo_cache.parquet"
    make_cache().save(path)
    schema = pq.read_schema(path)
    assert schema.metadata[b"schema_version"] == b"2"
    assert schema.metadata[b"tokenizer_fingerprint"] == FINGERPRINT.encode()
    assert schema.metadata[b"key_mode"] == b"index"
    assert {name: str(schema.field(name).type) for name in schema.names} == {
        "key": "string", "slot": "string", "response_ids": "list<element: int32>",
        "logprobs": "list<element: float>", "score": "float", "acc": "bool", "step": "int32", "source": "string",
        "finished": "bool", "cut_state": "list<element: double>", "reuses": "int32", "last_right_frac": "float"}


def test_save_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "rpo_cache.parquet"
    make_cache().save(path)
    newer = make_cache()
    newer.put("math:9", make_entry())
    newer.save(path)
    assert os.listdir(tmp_path) == ["rpo_cache.parquet"]
    assert ExperienceCache.load(path) == newer


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "rpo_cache.parquet"
    previous = make_cache()
    previous.save(path)

    def write_half_then_fail(table, where, **kwargs):
        where.write(b"PAR1 partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", write_half_then_fail)
    newer = make_cache()
    newer.put("math:9", make_entry())
    with pytest.raises(OSError, match="disk full"):
        newer.save(path)
    assert os.listdir(tmp_path) == ["rpo_cache.parquet"]
    assert ExperienceCache.load(path) == previous


def test_failed_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "rpo_cache.parquet"
    previous = make_cache()
    previous.save(path)

    def fail(*args, **kwargs):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        ExperienceCache(key_mode="index", tokenizer_fingerprint=FINGERPRINT).save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["rpo_cache.parquet"]
    assert ExperienceCache.load(path) == previous


def test_save_into_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_cache().save(tmp_path / "global_step_5" / "rpo_cache.parquet")


def test_load_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.parquet"):
        ExperienceCache.load(tmp_path / "nothing.parquet")


@pytest.mark.parametrize("keep", [0.5, 0.95, 8])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "rpo_cache.parquet"
    make_cache().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])
    with pytest.raises(CacheFileError, match="not a readable parquet file") as error:
        ExperienceCache.load(path)
    assert str(path) in str(error.value)


def test_garbage_file(tmp_path):
    path = tmp_path / "rpo_cache.parquet"
    path.write_bytes(b"this is not parquet at all" * 10)
    with pytest.raises(CacheFileError, match="not a readable parquet file") as error:
        ExperienceCache.load(path)
    assert str(path) in str(error.value)


def test_plain_parquet_is_not_a_cache(tmp_path):
    path = write_variant(tmp_path, pa.table({"key": ["a"]}))
    with pytest.raises(CacheFileError, match="not an RPO experience cache"):
        ExperienceCache.load(path)


@pytest.mark.parametrize("version", [b"3", b"0", b"one"])
def test_unknown_schema_version(tmp_path, version):
    table = saved_table(tmp_path)
    path = write_variant(tmp_path, table.replace_schema_metadata({**table.schema.metadata,
                                                                  b"schema_version": version}))
    with pytest.raises(CacheFileError, match="schema_version") as error:
        ExperienceCache.load(path)
    assert str(path) in str(error.value)


def test_missing_column(tmp_path):
    table = saved_table(tmp_path)
    path = write_variant(tmp_path, table.drop_columns(["step"]))
    with pytest.raises(CacheFileError, match="lacks column 'step'"):
        ExperienceCache.load(path)


def test_column_of_the_wrong_type(tmp_path):
    table = saved_table(tmp_path)
    index = table.schema.get_field_index("response_ids")
    path = write_variant(tmp_path, table.set_column(index, "response_ids",
                                                    table.column("response_ids").cast(pa.list_(pa.int64()))))
    with pytest.raises(CacheFileError, match=r"'response_ids' has type list<.*int64>, expected list<.*int32>"):
        ExperienceCache.load(path)


def test_null_in_a_required_column(tmp_path):
    table = saved_table(tmp_path)
    index = table.schema.get_field_index("score")
    nullable_score = table.schema.set(index, pa.field("score", pa.float32(), nullable=True))
    path = write_variant(tmp_path, table.cast(nullable_score).set_column(
        index, pa.field("score", pa.float32()), pa.array([1.0, None, 0.0, 2.0], type=pa.float32())))
    with pytest.raises(CacheFileError, match="'score' has 1 nulls"):
        ExperienceCache.load(path)


def test_invalid_source_value(tmp_path):
    table = saved_table(tmp_path)
    index = table.schema.get_field_index("source")
    path = write_variant(tmp_path, table.set_column(index, table.schema.field("source"),
                                                    pa.array(["rpo", "seed", "cold", "rpo"])))
    with pytest.raises(CacheFileError, match="'source' has values \\['cold'\\]"):
        ExperienceCache.load(path)


def test_invalid_entry_names_the_row(tmp_path):
    table = saved_table(tmp_path)
    index = table.schema.get_field_index("logprobs")
    bad_logprobs = pa.array([[-1.0], None, None, []], type=pa.list_(pa.float32()))  # row 0 has 4 ids
    path = write_variant(tmp_path, table.set_column(index, table.schema.field("logprobs"), bad_logprobs))
    with pytest.raises(CacheFileError, match=r"row 0 \(key 'math:0'\).*one log-prob per token"):
        ExperienceCache.load(path)


def test_duplicate_keys(tmp_path):
    table = saved_table(tmp_path)
    path = write_variant(tmp_path, pa.concat_tables([table, table.slice(0, 1)]))
    with pytest.raises(CacheFileError, match=re.escape("1 duplicated keys among its primary rows, e.g. 'math:0' x2")):
        ExperienceCache.load(path)


def test_tokenizer_mismatch(tmp_path):
    path = tmp_path / "rpo_cache.parquet"
    make_cache().save(path)
    with pytest.raises(CacheFileError, match="tokenizer fingerprint") as error:
        ExperienceCache.load(path, expected_tokenizer_fingerprint="0" * 64)
    assert str(path) in str(error.value) and FINGERPRINT in str(error.value) and "0" * 64 in str(error.value)


def test_key_mode_mismatch(tmp_path):
    path = tmp_path / "rpo_cache.parquet"
    make_cache("index").save(path)
    with pytest.raises(CacheFileError, match="keyed in mode 'index' but the current key mode is 'content'") as error:
        ExperienceCache.load(path, expected_key_mode="content")
    assert str(path) in str(error.value)


# ---------------------------------------------------------------- tokenizer fingerprint


def tiny_tokenizer(vocab: dict[str, int], eos: str = "</s>"):
    """A word-level Hugging Face tokenizer built offline."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    Tokenizer, models, pre_tokenizers = tokenizers.Tokenizer, tokenizers.models, tokenizers.pre_tokenizers
    PreTrainedTokenizerFast = transformers.PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, unk_token="<unk>")


VOCAB = {"<unk>": 0, "</s>": 1, "<pad>": 2, "the": 3, "answer": 4, "is": 5, "42": 6}


def test_fingerprint_is_stable_and_order_independent():
    reordered = dict(reversed(list(VOCAB.items())))
    fingerprint = tokenizer_fingerprint(tiny_tokenizer(VOCAB))
    assert fingerprint == tokenizer_fingerprint(tiny_tokenizer(reordered))
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0


def test_fingerprint_changes_with_what_changes_token_ids():
    fingerprint = tokenizer_fingerprint(tiny_tokenizer(VOCAB))
    swapped = {**VOCAB, "the": 4, "answer": 3}
    assert tokenizer_fingerprint(tiny_tokenizer(swapped)) != fingerprint
    assert tokenizer_fingerprint(tiny_tokenizer({**VOCAB, "43": 7})) != fingerprint
    assert tokenizer_fingerprint(tiny_tokenizer(VOCAB, eos="<pad>")) != fingerprint


def test_fingerprint_guards_a_saved_cache(tmp_path):
    fingerprint = tokenizer_fingerprint(tiny_tokenizer(VOCAB))
    cache = ExperienceCache(key_mode="index", tokenizer_fingerprint=fingerprint)
    cache.put("math:0", make_entry())
    cache.save(tmp_path / "rpo_cache.parquet")
    assert ExperienceCache.load(tmp_path / "rpo_cache.parquet", expected_tokenizer_fingerprint=fingerprint) == cache
    other = tokenizer_fingerprint(tiny_tokenizer({**VOCAB, "43": 7}))
    with pytest.raises(CacheFileError, match="tokenizer"):
        ExperienceCache.load(tmp_path / "rpo_cache.parquet", expected_tokenizer_fingerprint=other)
