"""Bad measurement folders for ``llmss validate``: each gives one InputError naming the file and the key
or line, before anything is simulated, instead of a report built on garbage."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmss_lab.cli import main
from llmss_lab.errors import InputError
from llmss_lab.reference import ReferenceLayout
from llmss_lab.validate import read_measurement

CASE = "measurements/RTXPRO6000/Llama-3.1-8B"


def _copy(ref: Path, tmp_path: Path) -> Path:
    """The small files of the Llama bench folder, writable, under ``tmp_path``."""
    folder = tmp_path / "run"
    (folder / "vllm").mkdir(parents=True)
    for rel in ("config.json", "vllm/meta.json", "vllm/requests.jsonl", "vllm/timeseries.csv"):
        shutil.copyfile(ref / CASE / rel, folder / rel)
    return folder


def _edit_request(folder: Path, lineno: int, **changes) -> None:
    path = folder / "vllm/requests.jsonl"
    lines = path.read_text().splitlines()
    obj = json.loads(lines[lineno - 1])
    obj.update(changes)
    lines[lineno - 1] = json.dumps(obj)   # writes NaN / Infinity as JSON's non-standard literals
    path.write_text("\n".join(lines) + "\n")


def _edit_meta(folder: Path, engine: bool = False, **changes) -> None:
    path = folder / "vllm/meta.json"
    meta = json.loads(path.read_text())
    (meta["engine_kwargs"] if engine else meta).update(changes)
    path.write_text(json.dumps(meta))


def _error(folder: Path, ref: Path) -> InputError:
    with pytest.raises(InputError) as exc:
        read_measurement(folder, ReferenceLayout(ref))
    return exc.value


def test_the_shipped_folder_reads_and_carries_the_simulated_workload(ref, tmp_path):
    m = read_measurement(_copy(ref, tmp_path), ReferenceLayout(ref))
    assert len(m.ttft_ms) == len(m.workload) == 300


# 1. the real requests must be the simulated workload
def test_fewer_requests_than_the_workload_names_the_first_missing_line(ref, tmp_path):
    folder = _copy(ref, tmp_path)
    path = folder / "vllm/requests.jsonl"
    path.write_text("\n".join(path.read_text().splitlines()[:50]) + "\n")
    e = _error(folder, ref)
    assert e.source == str(path) and e.where == "line 51"
    assert "50 requests" in e.message and "300" in e.message


def test_more_requests_than_the_workload_names_the_first_extra_line(ref, tmp_path):
    folder = _copy(ref, tmp_path)
    _edit_meta(folder, num_requests=100)
    e = _error(folder, ref)
    assert e.source.endswith("requests.jsonl") and e.where == "line 101"


@pytest.mark.parametrize("key", ["input_toks", "output_toks"])
def test_token_counts_must_match_the_workload_request(ref, tmp_path, key):
    folder = _copy(ref, tmp_path)
    _edit_request(folder, 5, **{key: 7})
    e = _error(folder, ref)
    assert e.source.endswith("requests.jsonl") and e.where == "line 5" and key in e.message


def test_num_requests_beyond_the_workload_names_meta_json(ref, tmp_path):
    folder = _copy(ref, tmp_path)
    _edit_meta(folder, num_requests=100000)
    e = _error(folder, ref)
    assert e.source.endswith("meta.json") and e.where == "num_requests"


# 2. timestamps out of order
@pytest.mark.parametrize("changes, field", [
    ({"first_token_ts": 1.0}, "first_token_ts"),
    ({"last_token_ts": 479748.9}, "last_token_ts"),
    ({"scheduled_ts": 479748.0}, "scheduled_ts"),
])
def test_timestamps_out_of_order_name_line_and_field(ref, tmp_path, changes, field):
    folder = _copy(ref, tmp_path)
    _edit_request(folder, 5, **changes)
    e = _error(folder, ref)
    assert e.source.endswith("requests.jsonl") and e.where == "line 5" and field in e.message


def test_a_request_lasting_over_a_day_is_a_unit_slip(ref, tmp_path):
    """last_token_ts 1e300 passed the order check and was scored."""
    folder = _copy(ref, tmp_path)
    _edit_request(folder, 5, last_token_ts=1e300)
    e = _error(folder, ref)
    assert e.where == "line 5" and "last_token_ts is 1e+300 s after queued_ts" in e.message


def test_timestamps_in_milliseconds_are_a_unit_slip(ref, tmp_path):
    """Every request under a day, so the per-request bound passed it, and the run scored 99.9 % error."""
    folder = _copy(ref, tmp_path)
    path = folder / "vllm" / "requests.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in rows:
        for k in ("queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts"):
            if k in r:
                r[k] *= 1000.0
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    e = _error(folder, ref)
    assert e.source == str(path) and e.where is None
    assert e.message.startswith("queued_ts spans 2.917e+04 s, but the workload's arrivals span ") \
        and e.message.endswith("timestamps are in seconds (milliseconds or another unit?)"), e.message


# 3. NaN / inf
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("field", ["queued_ts", "first_token_ts", "last_token_ts", "scheduled_ts"])
def test_non_finite_timestamps_name_line_and_field(ref, tmp_path, field, value):
    folder = _copy(ref, tmp_path)
    _edit_request(folder, 5, **{field: value})
    e = _error(folder, ref)
    assert e.where == "line 5" and field in e.message


# 4. meta.json (what vLLM ran) against config.json (what is simulated)
@pytest.mark.parametrize("engine, changes, key", [
    (True, {"tensor_parallel_size": 3}, "engine_kwargs.tensor_parallel_size"),
    (True, {"pipeline_parallel_size": 2}, "engine_kwargs.pipeline_parallel_size"),
    (True, {"data_parallel_size": 2}, "engine_kwargs.data_parallel_size"),   # was ignored
    (False, {"model": "foo/bar"}, "model"),
    (True, {"model": "foo/bar"}, "engine_kwargs.model"),
])
def test_meta_disagreeing_with_the_cluster_config_names_both_files(ref, tmp_path, engine, changes, key):
    folder = _copy(ref, tmp_path)
    _edit_meta(folder, engine=engine, **changes)
    e = _error(folder, ref)
    assert e.source.endswith("meta.json") and e.where == key
    assert str(folder / "config.json") in e.message


@pytest.mark.parametrize("value, says", [
    ("ab" * 32, "the run's workload had sha256 abababababab..., but"),
    ("not-a-hash", "expected a sha256 (64 hex digits), got 'not-a-hash'"),
])
def test_a_workload_that_is_not_the_one_vllm_served_is_refused(ref, tmp_path, value, says):
    """meta.json records the workload's sha256; replaying another file would score against other requests."""
    folder = _copy(ref, tmp_path)
    _edit_meta(folder, dataset_hash=value)
    e = _error(folder, ref)
    assert e.source.endswith("meta.json") and e.where == "dataset_hash" and says in e.message


@pytest.mark.parametrize("key", ["max_num_seqs", "max_num_batched_tokens"])
def test_a_zero_engine_limit_is_refused_as_vllm_would(ref, tmp_path, key):
    """0 once ran as 'unlimited' (a 46 % error), a setting vLLM itself refuses."""
    folder = _copy(ref, tmp_path)
    _edit_meta(folder, engine=True, **{key: 0})
    e = _error(folder, ref)
    assert e.where == f"engine_kwargs.{key}" and "must be >= 1, got 0" in e.message


def test_an_unknown_dtype_is_named_in_meta_json(ref, tmp_path):
    """It was blamed on config.json, which does not set it."""
    folder = _copy(ref, tmp_path)
    _edit_meta(folder, engine=True, dtype="bogus")
    e = _error(folder, ref)
    assert e.source.endswith("meta.json") and e.where == "engine_kwargs.dtype" and "'bogus'" in e.message


# 5. a string where a number belongs
@pytest.mark.parametrize("field, value", [("first_token_ts", "soon"), ("queued_ts", True), ("output_toks", "x"),
                                          ("output_toks", 2.5), ("last_token_ts", None)])
def test_a_bad_field_is_named(ref, tmp_path, field, value):
    folder = _copy(ref, tmp_path)
    _edit_request(folder, 5, **{field: value})
    e = _error(folder, ref)
    assert e.where == "line 5" and field in e.message


def test_a_line_that_is_not_an_object(ref, tmp_path):
    folder = _copy(ref, tmp_path)
    path = folder / "vllm/requests.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = "[1, 2]"
    path.write_text("\n".join(lines))
    assert _error(folder, ref).where == "line 3"


# 6. a file where the folder belongs
def test_a_file_instead_of_the_folder(ref, tmp_path):
    folder = _copy(ref, tmp_path)
    e = _error(folder / "config.json", ref)
    assert "is a file, not a measurement folder" in e.message


def test_the_cli_prints_one_line_and_exits_2(ref, tmp_path, capsys):
    folder = _copy(ref, tmp_path)
    _edit_request(folder, 5, first_token_ts=1.0)
    assert main(["validate", str(folder), "--reference-dir", str(ref)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("llmss: error: ") and "requests.jsonl: line 5: first_token_ts" in err[-1]
