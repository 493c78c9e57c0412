"""Profile lookups against the bundle's own rows."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from llmss_lab.config.model import ModelSpec
from llmss_lab.latency.iteration import BatchShape, IterationModel
from llmss_lab.latency.profile import bracket, interp1, load_bundle

BUNDLE = "profiles/RTXPRO6000/meta-llama/Llama-3.1-8B/bf16"


@pytest.fixture(scope="module")
def tp1(ref):
    return load_bundle(ref / BUNDLE).at_tp(1)


def rows(path, n=None):
    with open(path) as f:
        r = list(csv.DictReader(f))
    return r if n is None else r[:: max(1, len(r) // n)]


def test_bracket_clamps_below_and_extrapolates_above():
    axis = [16.0, 32.0, 64.0]
    assert bracket(axis, 4) == (0, 0, 0.0)
    assert bracket(axis, 48) == (1, 2, 0.5)
    i, j, w = bracket(axis, 96)
    assert (i, j) == (1, 2) and w == pytest.approx(2.0)
    assert interp1(np.array(axis), np.array([1.0, 2.0, 4.0]), 96.0) == pytest.approx(6.0)


def test_above_the_grid_time_grows_by_the_upper_half_slope_never_less():
    axis = np.arange(16.0, 2049.0, 16.0)
    noisy = 100.0 + axis * 0.5
    noisy[-1] -= 20.0   # a last point measured low: the last segment falls
    more = interp1(axis, noisy, np.array([2048.0, 4096.0, 8192.0]))
    assert more[1] - more[0] == pytest.approx(2048 * (noisy[-1] - noisy[63]) / (2048 - 1024))
    assert more[0] < more[1] < more[2]
    assert (interp1(axis, 500.0 - axis * 0.1, np.array([4096.0, 8192.0])) == 500.0 - 204.8).all()   # never down


@pytest.mark.parametrize("model", ["meta-llama/Llama-3.1-8B", "Qwen/Qwen3-32B"])
def test_a_prefill_larger_than_the_profiled_tokens_costs_more_not_less(ref, model):
    """dense.csv stops at 2048 tokens; Qwen3-32B's last segment falls, and a prefill of 8192 tokens took no time."""
    from llmss_lab.scenario import Scenario
    from llmss_lab.workload import from_requests

    def step_ms(tokens):
        res = Scenario(model=model, max_num_batched_tokens=8192).run(ref, workload=from_requests([(0.0, tokens, 1)]))
        return float(res.iterations.duration[0])
    t = [step_ms(n) for n in (2048, 4096, 8192)]
    assert 1.7 < t[1] / t[0] < 2.3 and 1.7 < t[2] / t[1] < 2.3, t


def test_dense_rows_are_reproduced_exactly(ref, tp1):
    for r in rows(ref / BUNDLE / "tp1" / "dense.csv", 60):
        x, v = tp1.dense[r["layer"]]
        assert interp1(x, v, float(r["tokens"])) == pytest.approx(float(r["time_us"]) * 1000, rel=1e-9)


def test_dense_is_linear_between_grid_points(tp1):
    x, v = tp1.dense["gate_up_proj"]
    i = int(np.searchsorted(x, 100))
    mid = (x[i] + x[i + 1]) / 2
    assert interp1(x, v, mid) == pytest.approx((v[i] + v[i + 1]) / 2)


def test_attention_rows_are_reproduced(ref, tp1):
    for r in rows(ref / BUNDLE / "tp1" / "attention.csv", 300):
        got = tp1.attention(float(r["prefill_chunk"]), float(r["kv_prefill"]), float(r["n_decode"]), float(r["kv_decode"]))
        assert got == pytest.approx(float(r["time_us"]) * 1000, rel=1e-6)


def test_attention_interpolates_linearly_in_decode_history(tp1):
    a = tp1.attention(0, 0, 64, 1024)
    b = tp1.attention(0, 0, 64, 1152)
    assert tp1.attention(0, 0, 64, 1088) == pytest.approx((a + b) / 2)


def test_a_section_of_the_attention_table_is_the_full_lookup_bit_for_bit(tp1):
    """AttentionTable.section (the step's repeated lookups at one shape) must give exactly what __call__ gives,
    on the grid, between its points, below and above it, with chunks, histories and empty corners."""
    att = tp1.attention
    rng = np.random.default_rng(0)
    shapes = [(0, 0, n) for n in (0, 1, 3, 8, 100, 256, 400)] + [(pc, kp, n) for pc, kp, n in zip(
        rng.choice([0, 16, 24, 100, 3000], 40), rng.choice([0, 512, 7000, 90000], 40), rng.integers(0, 300, 40))]
    for pc, kp, n in shapes:
        at = att.section(float(pc), float(kp), float(n))
        for kv in (0.0, 5.0, 16.0, 1234.5, 6000.0, 150000.0):
            assert at(kv) == att(float(pc), float(kp), float(n), kv)


def test_empty_batch_attention_is_free(tp1):
    assert tp1.attention(0, 0, 0, 0) <= 1.0


def test_skew_alpha_comes_from_the_fit_table(ref, tp1):
    fit = tp1.skew
    r = rows(ref / BUNDLE / "tp1" / "skew_fit.csv")[0]
    assert float(r["pc"]) in fit.pc_keys
    key = (float(r["pc"]), r["n_label"], r["skew_rate_label"], r["kv_big_label"], r["kp_label"])
    assert fit.table[key] == pytest.approx(float(r["alpha"]))
    # a chunk size that was never profiled uses the bundle's default
    assert fit.alpha(777, 64, 1000, 100, 4000, 0) == fit.alpha_default


def test_every_shipped_skew_fit_loads_whole(ref):
    """The format checks (labels from meta.yaml, whole chunk sizes and sample counts, no bucket twice)
    accept every bundle of the reference data, row for row."""
    bundles = sorted(p.parent for p in (ref / "profiles").glob("*/*/*/*/meta.yaml"))
    assert bundles
    for path in bundles:
        b = load_bundle(path)
        for tp in b.tp_degrees:
            fit = b.skew_fit(tp)
            assert fit is not None and len(fit.table) == len(rows(path / f"tp{tp}" / "skew_fit.csv")), (path, tp)


@pytest.mark.parametrize("alpha", [-735.0, -0.5, 0.05, 0.9, 26.9, 1e9])
def test_skew_corrected_attention_stays_between_all_shortest_and_all_longest(ref, tp1, alpha):
    """Fitted alphas of thin buckets run from -735 to 26.9 in the bundles; whatever alpha a bucket holds,
    a batch of unequal decode lengths takes no less than all-shortest and no more than all-longest."""
    from dataclasses import replace

    model = ModelSpec.from_hf_config(ref / "configs/model/meta-llama/Llama-3.1-8B.json")
    m = IterationModel(replace(tp1, skew=replace(tp1.skew, table={}, alpha_default=alpha)), model, 1)
    b = BatchShape(40, 40, 0, 0, 40, 1500.0, 200.0, 6000.0)
    t_min, t_mean, t_max = (tp1.attention(0, 0, 40, kv) for kv in (200.0, 1500.0, 6000.0))
    t = m.attention_ns(b)
    assert t_min <= t <= t_max
    fitted = t_mean + alpha * (t_max - t_mean)
    assert t == pytest.approx(min(max(fitted, t_min), t_max))   # inside the range: the fitted value, unchanged


def test_decode_step_sums_layers(ref, tp1):
    """One decode at 1024 tokens of history: sum of rows, as the profile defines a forward."""
    model = ModelSpec.from_hf_config(ref / "configs/model/meta-llama/Llama-3.1-8B.json")
    m = IterationModel(tp1, model, 1)
    t = m.step(BatchShape(1, 1, 0, 0, 1, 1024, 1024, 1024))
    block = sum(v[0] for k, (x, v) in tp1.dense.items() if k not in ("embedding", "final_layernorm"))
    block += tp1.dense["layernorm"][1][0]  # layernorm runs twice per block
    expect = (tp1.dense["embedding"][1][0] + tp1.dense["final_layernorm"][1][0] + 32 * block
              + 32 * tp1.attention(0, 0, 1, 1024) + tp1.per_sequence["lm_head"][1][0] + tp1.per_sequence["sampler"][1][0])
    assert t.total_ns == pytest.approx(expect)
    assert 10e6 < t.total_ns < 13e6  # ~11.3 ms, the figure NOTES-simulator.md derives from the same rows


def test_missing_tp_folder_is_named(ref):
    from llmss_lab.errors import InputError

    with pytest.raises(InputError, match="no tp4/ folder"):
        load_bundle(ref / BUNDLE).at_tp(4)


def test_grid_from_points_is_the_same_whatever_the_row_order():
    from llmss_lab.latency.profile import Grid2D

    kp, kv = np.meshgrid([0.0, 128.0, 512.0], [1.0, 16.0, 64.0, 256.0], indexing="ij")
    t = 1000 + 3 * kp + 7 * kv
    rng = np.random.default_rng(0)
    layouts = [(kp.ravel(), kv.ravel(), t.ravel()),          # kp outer, as written row by row
               (kp.T.ravel(), kv.T.ravel(), t.T.ravel())]    # kv outer
    perm = rng.permutation(t.size)
    layouts.append((kp.ravel()[perm], kv.ravel()[perm], t.ravel()[perm]))   # no order at all
    grids = [Grid2D.from_points(*x) for x in layouts]
    for g in grids:
        assert g.kp.tolist() == [0.0, 128.0, 512.0] and g.kv.tolist() == [1.0, 16.0, 64.0, 256.0]
        assert np.array_equal(g.values, t)
        assert g(128.0, 40.0) == pytest.approx(1000 + 3 * 128 + 7 * 40)
    # a missing point is filled along the decode-history axis
    keep = ~((kp.ravel() == 128.0) & (kv.ravel() == 64.0))
    holey = Grid2D.from_points(kp.ravel()[keep], kv.ravel()[keep], t.ravel()[keep])
    assert holey(128.0, 64.0) == pytest.approx(1000 + 3 * 128 + 7 * 64)


@pytest.mark.parametrize("folder,prefill,decode", [
    ("A6000/meta-llama/Llama-3.1-8B/tp1", 10.0, 3.5), ("A6000/meta-llama/Llama-3.1-8B/tp2", 10.0, 3.5),
    ("A6000/microsoft/Phi-mini-MoE-instruct/tp1", 3.0, 12.0), ("A6000/microsoft/Phi-mini-MoE-instruct/tp2", 3.0, 12.0),
    ("H100/meta-llama/Llama-3.1-70B/tp4", 1.0, 1.0), ("H100/mistralai/Mixtral-8x7B-v0.1/tp4", 7.0, 15.0),
])
def test_artifact_attention_predictions_are_the_measured_timings_times_one_constant(ref, folder, prefill, decode):
    """A fact about the paper artifact's profiles that README ("Paper figures") reports: on every grid point
    the two files share, its attention "predictions" are its measured attention.csv (vidur-style, ms)
    times one round constant per profile and phase (decode rows from 128 tokens of history, 128 requests)."""
    d = ref / "ispass26/profiles" / folder

    def table(name, keys, value, keep=lambda row: True, scale=1.0):
        with open(d / name, newline="") as f:
            groups: dict = {}
            for row in csv.DictReader(f):
                if keep(row):
                    groups.setdefault(tuple(int(row[k]) for k in keys), []).append(float(row[value]) * scale)
        return {k: sum(v) / len(v) for k, v in groups.items()}

    ms = 1e6   # ns per ms
    for phase, factor, keys in (("prefill", prefill, ("prefill_chunk_size", "kv_cache_size")),
                                ("decode", decode, ("batch_size", "kv_cache_size"))):
        measured = table("attention.csv", keys, f"time_stats.attn_{phase}.mean",
                         keep=lambda r, p=phase: (r["is_prefill"] == "True") == (p == "prefill"), scale=ms)
        predicted = table(f"predictions/attn_{phase}_predictions.csv", keys, "prediction")
        shared = [k for k in measured if k in predicted and (phase == "prefill" or (k[1] >= 128 and k[0] <= 128))]
        assert len(shared) > 100
        ratios = np.array([predicted[k] / measured[k] for k in shared])
        assert np.percentile(ratios, 10) > 0.98 * factor and np.percentile(ratios, 90) < 1.02 * factor, phase


def test_a_slice_the_bundle_lacks_is_filled_from_the_nearest_in_tokens(ref):
    """The RTXPRO6000 bundle has no (chunk > 0, 256 decodes) slice: a 24-token chunk beside 256 decodes
    took the (24, 128) slice, half the decodes; the nearest in raw units is (0, 256), as LLMServingSim."""
    from llmss_lab.latency.profile import AttentionTable

    t = AttentionTable.load(ref / "profiles/RTXPRO6000/meta-llama/Llama-3.1-8B/bf16/tp1/attention.csv")
    assert 24.0 in t.pcs and 256.0 in t.ns
    assert t(24, 0, 256, 1024) >= t(0, 0, 256, 1024) > t(24, 0, 128, 1024)
