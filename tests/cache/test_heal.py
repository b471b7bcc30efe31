"""The per-prompt fields of a cache entry (cut state, reuses, last right share, counterpart), their file (schema
version 2, version 1 still read) and the healing rules (verl_ext/cache/healing.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.cache.healing import answer_only, answers_to_cut, refresh_due, successor
from verl_ext.cache.store import CacheEntry, CacheFileError, ExperienceCache
from verl_ext.config import CacheConfig

FINGERPRINT = "f" * 64
V1_FILE = Path(__file__).parent / "data" / "rpo_cache_v1.parquet"


def answer(ids=(1, 2, 3), acc=True, step=0, **prompt_fields) -> CacheEntry:
    return CacheEntry(response_ids=list(ids), logprobs=None, score=float(bool(acc)), acc=acc, step=step,
                      source="rpo", finished=True, **prompt_fields)


def healed_cache() -> ExperienceCache:
    cache = ExperienceCache(key_mode="index", tokenizer_fingerprint=FINGERPRINT)
    cache.put("chain:0", answer((5, 6, 7), acc=True, step=4, cut_state=np.array([0.125, 3.0]), reuses=2,
                                last_right_frac=0.375, counterpart=answer((5, 9), acc=False, step=3)))
    cache.put("chain:1", answer((8,), acc=False, step=1, cut_state=np.array([1.0]), last_right_frac=0.0))
    cache.put("chain:2", answer((4, 4), acc=None))
    return cache


def test_heal_fields_round_trip_through_the_file(tmp_path):
    cache = healed_cache()
    cache.save(tmp_path / "rpo_cache.parquet")
    loaded = ExperienceCache.load(tmp_path / "rpo_cache.parquet")
    assert loaded == cache
    entry = loaded.get("chain:0")
    assert entry.cut_state.tolist() == [0.125, 3.0] and entry.reuses == 2 and entry.last_right_frac == 0.375
    assert entry.counterpart.response_ids.tolist() == [5, 9] and entry.counterpart.acc is False
    assert loaded.get("chain:2").counterpart is None and loaded.get("chain:2").cut_state is None
    # Equality sees every new field: a different state is a different entry.
    cache.put("chain:1", answer((8,), acc=False, step=1, cut_state=np.array([0.5]), last_right_frac=0.0))
    assert loaded != cache


def test_heal_file_keeps_one_primary_row_per_key_and_counterparts_after_them(tmp_path):
    healed_cache().save(tmp_path / "rpo_cache.parquet")
    table = pq.read_table(tmp_path / "rpo_cache.parquet")
    assert table.column("key").to_pylist() == ["chain:0", "chain:1", "chain:2", "chain:0"]
    assert table.column("slot").to_pylist() == ["primary"] * 3 + ["counterpart"]
    assert table.column("cut_state").to_pylist()[3] is None and table.column("reuses").to_pylist()[3] == 0


def test_heal_old_version_cache_file_still_loads_without_prompt_state(tmp_path):
    """A file written by the schema-1 code (tests/cache/data/rpo_cache_v1.parquet, saved by the previous release's
    ExperienceCache.save) loads with no cut state, 0 reuses and no counterpart, and is saved back as version 2."""
    assert pq.read_schema(V1_FILE).metadata[b"schema_version"] == b"1"
    loaded = ExperienceCache.load(V1_FILE, expected_tokenizer_fingerprint=FINGERPRINT, expected_key_mode="index")
    assert list(loaded) == ["chain:0", "chain:1", "chain:2"]
    first = loaded.get("chain:0")
    assert first.response_ids.tolist() == [5, 6, 7, 2] and first.acc is True and first.step == 3
    np.testing.assert_allclose(first.logprobs, [-0.5, -1.0, -0.25, -0.1])
    for _, entry in loaded.items():
        assert entry.cut_state is None and entry.reuses == 0 and entry.last_right_frac is None
        assert entry.counterpart is None
    loaded.save(tmp_path / "v2.parquet")
    assert pq.read_schema(tmp_path / "v2.parquet").metadata[b"schema_version"] == b"2"
    assert ExperienceCache.load(tmp_path / "v2.parquet") == loaded


def test_heal_old_version_file_missing_a_column_is_refused(tmp_path):
    table = pq.read_table(V1_FILE)
    path = tmp_path / "broken_v1.parquet"
    pq.write_table(table.drop_columns(["finished"]), path)
    with pytest.raises(CacheFileError, match="lacks column 'finished'"):
        ExperienceCache.load(path)


def corrupted(tmp_path: Path, change) -> Path:
    healed_cache().save(tmp_path / "rpo_cache.parquet")
    table = change(pq.read_table(tmp_path / "rpo_cache.parquet"))
    path = tmp_path / "variant.parquet"
    pq.write_table(table, path)
    return path


def replaced(table: pa.Table, name: str, values: list) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index), pa.array(values, type=table.schema.field(index).type))


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: replaced(t, "key", ["chain:0", "chain:1", "chain:2", "chain:9"]),
     "key 'chain:9' has a counterpart row but no primary row"),
    (lambda t: replaced(t, "slot", ["primary", "primary", "primary", "spare"]), "column 'slot' has values"),
    (lambda t: pa.concat_tables([t, t.slice(3, 1)]), "duplicated keys among its counterpart rows"),
    (lambda t: replaced(t, "reuses", [2, 0, 0, 5]), "counterpart of key 'chain:0' is not valid"),
    (lambda t: replaced(t, "acc", [True, False, None, True]), "counterpart of key 'chain:0' is not valid"),
    (lambda t: replaced(t, "last_right_frac", [0.375, 1.5, None, None]),
     r"row 1 \(key .chain:1.\) is not a valid entry: CacheEntry.last_right_frac"),
])
def test_heal_file_errors_name_the_file_and_the_problem(tmp_path, change, message):
    path = corrupted(tmp_path, change)
    with pytest.raises(CacheFileError, match=message) as error:
        ExperienceCache.load(path)
    assert str(path) in str(error.value)


def test_heal_entry_checks_its_per_prompt_fields():
    with pytest.raises(ValueError, match="other correctness"):
        answer(acc=True, counterpart=answer(acc=True))
    with pytest.raises(ValueError, match="other correctness"):
        answer(acc=None, counterpart=answer(acc=False))
    with pytest.raises(ValueError, match="belong to the primary entry"):
        answer(acc=True, counterpart=answer(acc=False, reuses=1))
    with pytest.raises(ValueError, match="finite"):
        answer(cut_state=[np.nan])
    with pytest.raises(ValueError, match="reuses"):
        answer(reuses=-1)
    with pytest.raises(ValueError, match="last_right_frac"):
        answer(last_right_frac=1.25)
    state = np.array([0.5])
    entry = answer(cut_state=state)
    state[0] = 0.75  # the caller's array is not shared, and the stored one is read-only
    assert entry.cut_state.tolist() == [0.5] and not entry.cut_state.flags.writeable


# ---------------------------------------------------------------- the healing rules


def test_heal_refresh_due_by_reuses_all_wrong_groups_and_probability():
    entries = [answer(reuses=3), answer(reuses=1), answer(last_right_frac=0.0), answer(last_right_frac=0.5), None]
    rng = np.random.default_rng(0)
    assert refresh_due(entries, CacheConfig(), rng) == []
    assert refresh_due(entries, CacheConfig(refresh_after=3), rng) == [0]
    assert refresh_due(entries, CacheConfig(refresh_all_wrong=True), rng) == [2]
    assert refresh_due(entries, CacheConfig(refresh_prob=1.0), rng) == [0, 1, 2, 3]
    draws = [len(refresh_due([answer()] * 1000, CacheConfig(refresh_prob=0.25), rng)) for _ in range(20)]
    assert 200 < np.mean(draws) < 300
    # No draw is taken when refresh_prob is 0, so runs without refreshes keep their cut RNG stream.
    state = rng.bit_generator.state
    refresh_due(entries, CacheConfig(refresh_after=3), rng)
    assert rng.bit_generator.state == state


def test_heal_counterpart_is_cut_with_its_probability():
    wrong = answer((9,), acc=False)
    entries = [answer(acc=True, counterpart=wrong)] * 2000 + [answer(acc=True), None]
    rng = np.random.default_rng(1)
    assert answers_to_cut(entries, CacheConfig(), rng) == entries
    chosen = answers_to_cut(entries, CacheConfig(keep_counterpart=True, counterpart_prob=0.3), rng)
    share = np.mean([cut is wrong for cut in chosen[:2000]])
    assert 0.26 < share < 0.34
    assert chosen[2000] is entries[2000] and chosen[2001] is None
    # An answer refreshed this visit is always cut itself: its counterpart is the stale answer it replaced.
    always = CacheConfig(keep_counterpart=True, counterpart_prob=1.0)
    assert answers_to_cut(entries[:3], always, rng, fresh={1}) == [wrong, entries[1], wrong]


def test_heal_successor_keeps_the_latest_answer_of_the_other_correctness():
    rng = np.random.default_rng(0)
    old = answer((1,), acc=False, counterpart=answer((2,), acc=True))
    right, wrong_a, wrong_b = answer((3,), acc=True), answer((4,), acc=False), answer((5,), acc=False)
    kwargs = dict(cut_state=np.array([0.5]), last_right_frac=0.25, reuses=4, keep_counterpart=True, rng=rng)
    # A wrong answer from this visit's group is preferred to an older one.
    new = successor(old, right, others=[wrong_a], **kwargs)
    assert new.counterpart == answer_only(wrong_a) and new.cut_state.tolist() == [0.5] and new.reuses == 4
    assert new.last_right_frac == 0.25 and new.counterpart.counterpart is None
    # Several qualify: one drawn uniformly.
    drawn = {successor(old, right, others=[wrong_a, wrong_b], **kwargs).counterpart.response_ids[0]
             for _ in range(40)}
    assert drawn == {4, 5}
    # None in the group: the old answer when it is of the other correctness...
    assert successor(old, right, others=[], **kwargs).counterpart == answer_only(old)
    # ... or the old counterpart.
    assert successor(old, answer((6,), acc=False), others=[], **kwargs).counterpart == old.counterpart
    # Unknown correctness, or the option off: no counterpart.
    assert successor(old, answer((7,), acc=None), others=[wrong_a], **kwargs).counterpart is None
    assert successor(old, right, others=[wrong_a], **{**kwargs, "keep_counterpart": False}).counterpart is None
