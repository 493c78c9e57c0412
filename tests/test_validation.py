"""Accuracy against the real vLLM runs shipped with the reference data.

The thresholds are the issue's: the reference simulator's own error on each case. These are the
numbers the README reports; if the model changes, this test says by how much it moved.
"""
from __future__ import annotations

import pytest

from llmss_lab.validate import validate

# case -> (required, what we measured when this test was written)
CASES = {"Llama-3.1-8B": 2.3, "Qwen3-32B": 1.1}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mean_abs_error(ref, case):
    report, res = validate(ref / "measurements/RTXPRO6000" / case, ref)
    err = report["mean_abs_err_pct"]
    assert err <= CASES[case], f"{case}: mean |diff| {err:.2f} % > {CASES[case]} %"
    assert res.summary()["completed"] == 300
