"""data_prep/prepare.py on hub-layout fixtures of every data set: verl's schema, unique indices, DAPO deduplication,
and ground truths that compute_score accepts."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.data_prep import REGISTRY, content_index, get_spec, prepare
from verl_ext.data_prep.prompts import SYSTEM_PROMPT
from verl_ext.rewards import compute_score

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "hub"
PREPARE_SCRIPT = REPO / "data_prep" / "prepare.py"


def load_cli():
    spec = importlib.util.spec_from_file_location("rpo_data_prep_cli", PREPARE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLI = load_cli()

# (data set, split, expected ground truths in order, expected indices or None for content hashes, output file)
EXPECTED = [
    ("open_rs", "train", ["25", "\\frac{3}{4}", "2", "3\\sqrt{2}"], None, "open_rs.parquet"),
    ("deepscaler", "train", ["-\\frac{2}{3}", "\\sqrt{113}", "2, 3"], None, "deepscaler.parquet"),
    ("dapo_math_17k", "train", ["34", "-1", "49"], None, "dapo_math_17k.parquet"),
    ("math_lighteval", "train", ["7", "\\frac{1}{4}", "[2,\\infty)"], None, "math_lighteval.parquet"),
    ("math_lighteval", "test", ["56", "5"], None, "math_lighteval_test.parquet"),
    ("gsm8k", "train", ["72", "10", "10000"], None, "gsm8k.parquet"),
    ("gsm8k", "test", ["18", "3"], None, "gsm8k_test.parquet"),
    ("aime2024", "test", ["204", "025", "809"], ["60", "61", "62"], "aime2024.parquet"),
    ("aime2025", "test", ["70", "117", "49", "468"], None, "aime2025.parquet"),
    ("amc2023", "test", ["36", "7"], ["43", "44"], "amc2023.parquet"),
    (
        "math500",
        "test",
        ["\\left( 3, \\frac{\\pi}{2} \\right)", "27", "\\frac{14}{3}"],
        ["test/precalculus/807.json", "test/number_theory/515.json", "test/algebra/2584.json"],
        "math500.parquet",
    ),
]


def run_cli(tmp_path, name, *extra):
    return CLI.main([name, "--local-path", str(FIXTURES / name), "--out-dir", str(tmp_path), *extra])


def test_every_registered_data_set_has_a_fixture_case():
    assert {case[0] for case in EXPECTED} == set(REGISTRY)


@pytest.mark.parametrize(("name", "split", "ground_truths", "indices", "filename"), EXPECTED)
def test_prepare_writes_verl_rows(tmp_path, name, split, ground_truths, indices, filename):
    path = run_cli(tmp_path, name, "--split", split)
    assert path == tmp_path / filename
    spec = get_spec(name)
    schema = pq.read_schema(path)
    assert schema.names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert schema.field("prompt").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    rows = pq.read_table(path).to_pylist()

    assert [row["reward_model"] for row in rows] == [{"style": "rule", "ground_truth": gt} for gt in ground_truths]
    for row in rows:
        assert row["data_source"] == spec.data_source
        assert row["ability"] == "math"
        system, user = row["prompt"]
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        assert user["role"] == "user" and user["content"] == row["extra_info"]["problem"]
        assert row["extra_info"]["split"] == split
        assert row["extra_info"]["dataset"] == spec.hub_id
        assert row["extra_info"]["answer"]

    row_indices = [row["extra_info"]["index"] for row in rows]
    assert len(set(row_indices)) == len(rows)
    if indices is None:
        assert row_indices == [content_index(row["extra_info"]["problem"]) for row in rows]
    else:
        assert row_indices == indices


@pytest.mark.parametrize(("name", "split", "ground_truths", "indices", "filename"), EXPECTED)
def test_each_ground_truth_scores_a_boxed_answer_right_and_a_wrong_one_zero(
    tmp_path, name, split, ground_truths, indices, filename
):
    table, _ = prepare(get_spec(name), split, local_path=FIXTURES / name)
    for row in table.to_pylist():
        ground_truth = row["reward_model"]["ground_truth"]
        right = f"<think>Working it out.</think> <answer>\\boxed{{{ground_truth}}}</answer>"
        wrong = "<think>Working it out.</think> <answer>\\boxed{-987654321}</answer>"
        assert compute_score(row["data_source"], right, ground_truth, row["extra_info"])["acc"] is True, ground_truth
        assert compute_score(row["data_source"], wrong, ground_truth, row["extra_info"])["acc"] is False, ground_truth


def test_dapo_keeps_one_row_per_distinct_prompt_and_strips_the_answer_instructions():
    table, stats = prepare(get_spec("dapo_math_17k"), "train", local_path=FIXTURES / "dapo_math_17k")
    assert (stats.read, stats.written, stats.duplicates, stats.conflicting_duplicates) == (6, 3, 3, 0)
    problems = [row["extra_info"]["problem"] for row in table.to_pylist()]
    assert problems[2] == "How many positive divisors does $6^{6}$ have?"
    assert not any("Answer:" in problem or "Solve the following" in problem for problem in problems)


def test_dapo_counts_repeats_whose_ground_truth_differs(tmp_path):
    rows = pq.read_table(FIXTURES / "dapo_math_17k" / "data" / "dapo-math-17k.parquet").to_pylist()
    rows[2]["reward_model"] = {"ground_truth": "35", "style": "rule"}  # a repeat of row 0 with another answer
    copy = tmp_path / "dapo.parquet"
    pq.write_table(pa.Table.from_pylist(rows), copy)
    table, stats = prepare(get_spec("dapo_math_17k"), "train", local_path=copy)
    assert (stats.duplicates, stats.conflicting_duplicates, stats.has_problems) == (3, 1, True)
    assert table.to_pylist()[0]["reward_model"]["ground_truth"] == "34"  # the first occurrence wins


def test_math_lighteval_skips_a_solution_without_a_box_and_says_why():
    _, stats = prepare(get_spec("math_lighteval"), "train", local_path=FIXTURES / "math_lighteval")
    assert stats.unusable == 1
    assert "row 2" in stats.first_unusable and "\\boxed{}" in stats.first_unusable


def test_amc2023_keeps_only_the_2023_problems():
    _, stats = prepare(get_spec("amc2023"), "test", local_path=FIXTURES / "amc2023")
    assert (stats.read, stats.filtered_out, stats.written) == (3, 1, 2)


def test_aime2025_reads_both_papers():
    _, stats = prepare(get_spec("aime2025"), "test", local_path=FIXTURES / "aime2025")
    assert [Path(source).name for source in stats.sources] == ["aime2025-I.jsonl", "aime2025-II.jsonl"]


def test_max_samples_keeps_the_first_rows_after_deduplication(tmp_path):
    path = run_cli(tmp_path, "dapo_math_17k", "--max-samples", "2")
    gts = [row["reward_model"]["ground_truth"] for row in pq.read_table(path).to_pylist()]
    assert gts == ["34", "-1"]


def test_no_system_prompt_leaves_only_the_user_turn(tmp_path):
    path = run_cli(tmp_path, "gsm8k", "--no-system-prompt")
    assert [message["role"] for message in pq.read_table(path).to_pylist()[0]["prompt"]] == ["user"]


def test_local_path_may_be_a_single_file(tmp_path):
    path = CLI.main(["math500", "--local-path", str(FIXTURES / "math500" / "test.jsonl"), "--out-dir", str(tmp_path)])
    assert pq.read_metadata(path).num_rows == 3


def test_a_local_file_missing_a_column_names_file_and_column(tmp_path):
    broken = tmp_path / "test.jsonl"
    broken.write_text(json.dumps({"question": "What is $1+1$?", "answer": "2", "unique_id": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"test\.jsonl, row 0: missing column\(s\) \['problem'\]"):
        prepare(get_spec("math500"), "test", local_path=broken)


def test_a_directory_without_the_hub_files_says_what_was_expected(tmp_path):
    (tmp_path / "stray.jsonl").write_text("{}\n")
    with pytest.raises(FileNotFoundError, match=r"matches \['test\.jsonl'\].*stray\.jsonl"):
        prepare(get_spec("math500"), "test", local_path=tmp_path)


def test_an_unknown_split_is_refused():
    with pytest.raises(SystemExit):
        CLI.main(["aime2024", "--split", "train", "--local-path", str(FIXTURES / "aime2024")])


def test_hub_loading_asks_for_each_config_and_the_hubs_split_name(tmp_path, monkeypatch):
    """Without hub access, datasets.load_dataset is replaced by the fixture rows; the calls are what is checked."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(hub_id, config, split):
        calls.append((hub_id, config, split))
        file = {"AIME2025-I": "aime2025-I.jsonl", "AIME2025-II": "aime2025-II.jsonl"}[config]
        return [json.loads(line) for line in (FIXTURES / "aime2025" / file).read_text().splitlines()]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    table, stats = prepare(get_spec("aime2025"), "test")
    assert calls == [("opencompass/AIME2025", "AIME2025-I", "test"), ("opencompass/AIME2025", "AIME2025-II", "test")]
    assert table.num_rows == 4
    assert stats.sources == ["hub:opencompass/AIME2025[AIME2025-I]:test", "hub:opencompass/AIME2025[AIME2025-II]:test"]


def test_list_names_every_data_set(capsys):
    assert CLI.main(["--list"]) is None
    listing = capsys.readouterr().out
    assert all(spec.name in listing and spec.hub_id in listing for spec in REGISTRY.values())


def test_help_runs_as_a_script():
    help_text = subprocess.run(
        [sys.executable, str(PREPARE_SCRIPT), "--help"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    for spec in REGISTRY.values():
        assert spec.name in help_text and spec.hub_id in help_text
