"""Accuracy against the real vLLM runs shipped with the reference data.

The thresholds are the issue's: the reference simulator's own error on each case. These are the
numbers the README reports; if the model changes, this test says by how much it moved.
"""
from __future__ import annotations

import json
import shutil

import pytest

from llmss_lab.errors import InputError
from llmss_lab.reference import ReferenceLayout
from llmss_lab.validate import read_measurement, validate

# case -> the issue's bar (LLMServingSim 2.0's own error on the case)
CASES = {"Llama-3.1-8B": 2.1, "Qwen3-32B": 1.1}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mean_abs_error(ref, case):
    report, res = validate(ref / "measurements/RTXPRO6000" / case, ref)
    err = report["mean_abs_err_pct"]
    assert err <= CASES[case], f"{case}: mean |diff| {err:.2f} % > {CASES[case]} %"
    assert res.summary()["completed"] == 300


def _measurement_with(ref, tmp_path, **meta_changes):
    """A copy of the Llama bench folder whose meta.json differs as given (None deletes a key)."""
    folder = tmp_path / "run"
    shutil.copytree(ref / "measurements/RTXPRO6000/Llama-3.1-8B", folder)
    meta_path = folder / "vllm/meta.json"
    meta = json.loads(meta_path.read_text())
    for key, value in meta_changes.items():
        if key == "async_scheduling":
            meta["engine_kwargs"][key] = value
        elif value is None:
            meta.pop(key)
        else:
            meta[key] = value
    meta_path.chmod(0o644)
    meta_path.write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("changes, expected", [
    ({}, True),                                   # the shipped runs: vLLM 0.19.0
    ({"vllm_version": "0.13.0rc2.dev79"}, False),  # before async scheduling was the default
    ({"vllm_version": "0.14.0"}, True),
    ({"vllm_version": None}, False),               # release unknown: the engine default
    ({"async_scheduling": False}, False),          # an explicit engine argument wins
])
def test_async_scheduling_follows_the_recorded_vllm_release(ref, tmp_path, changes, expected):
    m = read_measurement(_measurement_with(ref, tmp_path, **changes), ReferenceLayout(ref))
    assert m.engine.async_scheduling is expected


def test_an_unreadable_vllm_version_names_the_file_and_key(ref, tmp_path):
    with pytest.raises(InputError, match="vllm_version") as e:
        read_measurement(_measurement_with(ref, tmp_path, vllm_version="nightly"), ReferenceLayout(ref))
    assert "meta.json" in str(e.value)
