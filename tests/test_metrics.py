"""Metric definitions (vLLM bench) and the validation harness's vLLM side."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from llmss_lab.kernel.instance import GapTally

from llmss_lab.reference import ReferenceLayout
from llmss_lab.results.metrics import describe, repeated_percentiles, tpot_ms
from llmss_lab.validate import read_measurement


def test_percentiles_interpolate_between_order_statistics():
    d = describe(np.array([1.0, 2.0, 3.0, 4.0, 10.0]))
    assert d["mean"] == 4.0 and d["median"] == 3.0
    assert d["p90"] == pytest.approx(4 + 0.6 * 6)   # idx 0.9*4 = 3.6
    assert d["p99"] == pytest.approx(4 + 0.96 * 6)


def test_tpot_excludes_the_first_token_and_single_token_requests():
    t = tpot_ms(np.array([1.0, 1.0]), np.array([2.0, 1.0]), np.array([11, 1]))
    assert t[0] == pytest.approx(100.0) and np.isnan(t[1])


def test_describe_ignores_nan():
    assert describe(np.array([np.nan, 2.0]))["mean"] == 2.0


def test_vllm_side_matches_the_published_summary(ref):
    """Our reading of requests.jsonl reproduces the vLLM column of the reference's summary.txt."""
    folder = ref / "measurements/RTXPRO6000/Llama-3.1-8B"
    m = read_measurement(folder, ReferenceLayout(ref))
    text = (folder / "validation/summary.txt").read_text()
    published = {(a, b): float(v) for a, b, v in re.findall(r"^(TTFT|TPOT|Latency) (\w+)\s+([\d.]+)", text, re.M)}
    ours = {"TTFT": describe(m.ttft_ms), "TPOT": describe(m.tpot_ms), "Latency": describe(m.e2e_ms)}
    for (metric, stat), v in published.items():
        assert ours[metric][stat.lower()] == pytest.approx(v, abs=0.06), (metric, stat)


def test_measurement_from_a_hand_made_folder(tmp_path, ref):
    folder = tmp_path / "case"
    (folder / "vllm").mkdir(parents=True)
    (folder / "config.json").write_text((ref / "measurements/RTXPRO6000/Llama-3.1-8B/config.json").read_text())
    trace = tmp_path / "trace.jsonl"    # the requests the real run served: 5 output tokens, then 1
    trace.write_text('{"input_toks": 20, "output_toks": 5, "arrival_time_ns": 0}\n'
                     '{"input_toks": 30, "output_toks": 1, "arrival_time_ns": 1000000000}\n')
    (folder / "vllm/meta.json").write_text(json.dumps({
        "engine_kwargs": {"max_num_seqs": 4, "max_num_batched_tokens": 512, "dtype": "bfloat16", "kv_cache_dtype": "auto"},
        "dataset_path": str(trace), "num_requests": 2}))
    rows = [{"queued_ts": 10.0, "first_token_ts": 10.5, "last_token_ts": 12.5, "output_toks": 5},
            {"queued_ts": 11.0, "first_token_ts": 11.1, "last_token_ts": 11.1, "output_toks": 1}]
    (folder / "vllm/requests.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    m = read_measurement(folder, ReferenceLayout(ref))
    assert m.ttft_ms.tolist() == pytest.approx([500.0, 100.0])
    assert m.tpot_ms[0] == pytest.approx(500.0) and np.isnan(m.tpot_ms[1])
    assert m.e2e_ms.tolist() == pytest.approx([2500.0, 100.0])
    assert m.engine.max_num_seqs == 4 and m.num_requests == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e4, allow_nan=False), st.integers(1, 50)), min_size=1, max_size=30),
       st.lists(st.floats(0, 100), min_size=1, max_size=5))
def test_percentiles_of_folded_values_are_those_of_the_repeated_values(pairs, q):
    values, counts = np.array([v for v, _ in pairs]), np.array([c for _, c in pairs])
    flat = np.repeat(values, counts)
    assert repeated_percentiles(values, counts, tuple(q)) == pytest.approx(np.percentile(flat, q), rel=1e-12, abs=1e-12)
    assert describe(values, counts) == pytest.approx(describe(flat), rel=1e-12, abs=1e-12)


def test_folded_describe_skips_nan_values_and_zero_counts():
    d = describe(np.array([np.nan, 2.0, 5.0, 7.0]), np.array([3, 2, 0, 1]))
    assert d == pytest.approx(describe(np.array([2.0, 2.0, 7.0])))
    assert np.isnan(describe(np.array([1.0]), np.array([0]))["mean"])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 20), max_size=8), max_size=40), st.integers(1, 5))
def test_a_gap_tally_folds_to_the_distinct_gaps_and_their_counts(steps, fold):
    tally = GapTally()
    tally.FOLD = fold
    for gaps in steps:
        tally.add(np.array(gaps, dtype=float))
    flat = np.array([g for gaps in steps for g in gaps], dtype=float)
    values, counts = tally.pairs()
    want_v, want_c = np.unique(flat, return_counts=True)
    assert np.array_equal(values, want_v) and np.array_equal(counts, want_c)
