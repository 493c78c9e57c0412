"""Results: Datasets with units, consistent aggregates, netCDF round trip."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import llmss_lab
from llmss_lab import ClusterSpec, Results, synthetic


@pytest.fixture(scope="module")
def res(ref):
    spec = ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
    wl = synthetic(60, rate=20, input_len="uniform:100:1500", output_len="uniform:20:200", seed=3)
    return llmss_lab.simulate(spec, wl, engine={"max_num_seqs": 16}, reference_dir=ref)


def test_every_variable_has_units(res):
    for ds in (res.requests, res.iterations, res.timeseries, res.itl):
        for name, v in ds.data_vars.items():
            assert "units" in v.attrs and "long_name" in v.attrs, name
    assert res.timeseries.time.attrs["units"] == "s"


def test_aggregates_agree(res):
    r, it, ts = res.requests, res.iterations, res.timeseries
    assert int(ts.generation_throughput.sum()) == int(r.output_tokens.sum())
    assert int(ts.prompt_throughput.sum()) == int(r.input_tokens.sum())
    # every prompt token is computed once (no preemption here) minus cache hits; every later token once
    computed = int(it.num_tokens.sum())
    expected = int(r.input_tokens.sum() - r.prefix_hit_tokens.sum() + (r.output_tokens - 1).sum())
    assert computed == expected
    assert float(it.running.max()) <= 16


def test_times_are_causal(res):
    r = res.requests
    for a, b in (("arrival", "queued"), ("queued", "scheduled"), ("scheduled", "first_token"), ("first_token", "finish")):
        assert (r[a].values <= r[b].values + 1e-12).all(), (a, b)
    it = res.iterations
    end = it.start.values + it.duration.values / 1e3
    assert (it.start.values[1:] >= end[:-1] - 1e-9).all()


def test_summary_uses_vllm_bench_names(res):
    s = res.summary()
    for k in ("mean_ttft_ms", "median_tpot_ms", "p99_itl_ms", "p95_e2el_ms", "p90_ttft_ms",
              "request_throughput", "output_throughput", "total_token_throughput"):
        assert np.isfinite(s[k]), k
    assert s["completed"] == 60


def test_netcdf_round_trip(res, tmp_path):
    p = res.save(tmp_path / "run.nc")
    back = Results.load(p)
    assert back.requests.identical(res.requests)
    assert back.timeseries.equals(res.timeseries)
    assert back.summary() == pytest.approx(res.summary(), nan_ok=True)
    assert not list(tmp_path.glob("*.part"))
    assert back.itl.identical(res.itl)


def _outline(path) -> dict:
    """Everything a netCDF reader sees of a file, group by group: dimensions, and each variable's type, dimensions,
    compression, chunks, attributes (in any order) and bytes; the group's attributes but the run's wall time."""
    import netCDF4

    out = {}
    with netCDF4.Dataset(path) as nc:
        assert not nc.ncattrs() and not nc.variables
        for g in nc.groups.values():
            g.set_auto_maskandscale(False)
            variables = {n: (str(v.datatype), v.dimensions, v.filters(), v.chunking(),
                             sorted((k, repr(v.getncattr(k))) for k in v.ncattrs()),
                             list(v[...]) if v.dtype is str else v[...].tobytes()) for n, v in g.variables.items()}
            attrs = sorted((k, repr(g.getncattr(k))) for k in g.ncattrs() if k != "sim_wall_s")
            out[g.name] = ({d.name: d.size for d in g.dimensions.values()}, variables, attrs)
    return out


def test_the_netcdf_writer_reads_back_every_kind_of_value_a_run_may_hold(tmp_path):
    """Ints, floats with NaN, strings and booleans (none of a run's Datasets has one today; a new flag column
    must not make save() fail after a long run) come back from xarray's reader as they went in."""
    from llmss_lab.results.netcdf import write_groups

    ds = xr.Dataset({"n": ("r", np.array([1, 2, 3])), "x": ("r", np.array([0.5, np.nan, 2.0])),
                     "name": ("r", np.array(["a", "bb", ""])), "ok": ("r", np.array([True, False, True]))},
                    coords={"r": [0, 1, 2]}, attrs={"units_note": "none"})
    write_groups(tmp_path / "x.nc", {"g": ds}, {})
    back = xr.load_dataset(tmp_path / "x.nc", group="g", engine="netcdf4")
    xr.testing.assert_identical(back, ds)
    assert back.ok.dtype == bool


def test_a_saved_file_holds_what_xarrays_writer_wrote(ref, tmp_path):
    """save() writes with netCDF4 itself (xarray's writer imported dask); every group of its file holds what
    to_netcdf wrote, for runs with every group (MoE and P/D, memory tiers, prefix pools, power) and for a run
    loaded back from its file and saved again, whose strings come back as read."""
    from llmss_lab.results.dataset import GROUPS, OPTIONAL, compressed

    cluster = ref / "configs/cluster"
    runs = {"moe_pd": llmss_lab.simulate(cluster / "single_node_moe_pd_instance.json", synthetic(30, seed=2),
                                         reference_dir=ref),
            "cxl": llmss_lab.simulate(cluster / "single_node_cxl_instance.json", synthetic(30, seed=2),
                                      reference_dir=ref),
            "pools": llmss_lab.simulate(cluster / "single_node_multi_instance.json", synthetic(30, seed=2),
                                        reference_dir=ref, prefix_storage="cpu"),
            "power": llmss_lab.simulate(cluster / "single_node_power_instance.json", synthetic(30, seed=2),
                                        reference_dir=ref, bin_s=0.5)}
    runs["reloaded"] = Results.load(runs["pools"].save(tmp_path / "first.nc"))
    assert {"experts", "power"} <= {g for run in runs.values() for g in OPTIONAL if getattr(run, g).data_vars}
    assert "pool_tier" in runs["pools"].memory and "tier_busy" in runs["cxl"].memory
    for name, run in runs.items():
        ours = run.save(tmp_path / f"{name}.nc")
        theirs = tmp_path / f"{name}-xarray.nc"
        groups = [g for g in (*GROUPS, "itl", *OPTIONAL) if getattr(run, g).data_vars]
        for i, g in enumerate(groups):
            ds = getattr(run, g)
            ds.to_netcdf(theirs, group=g, mode="a" if i else "w", engine="netcdf4", encoding=compressed(ds))
        assert _outline(ours) == _outline(theirs), name


def test_a_results_file_with_one_entry_per_token_gap_still_loads(res, tmp_path):
    """Files written before the gaps were folded keep their summary."""
    import xarray as xr

    p = res.save(tmp_path / "new.nc")
    old = tmp_path / "old.nc"
    for i, g in enumerate(("requests", "iterations", "timeseries")):
        xr.load_dataset(p, group=g, engine="netcdf4").to_netcdf(old, group=g, mode="a" if i else "w", engine="netcdf4")
    flat = np.repeat(res.itl.itl.values, res.itl.gaps.values)
    xr.Dataset({"itl": ("token_gap", flat)}).to_netcdf(old, group="itl", mode="a", engine="netcdf4")
    back = Results.load(old)
    assert back.itl.gaps.sum() == (res.requests.output_tokens - 1).sum()
    assert back.summary() == pytest.approx(res.summary(), nan_ok=True)


def test_a_long_mostly_idle_run_is_saved_compressed(ref, tmp_path):
    """300 requests at 0.001 req/s wrote 70 MB: 347,576 one-second bins of timeseries and memory, nearly all idle,
    and 191,595 one-sequence decode steps, stored raw. Compressed they take 1.6 MB; the file still loads
    exactly, and a file written uncompressed, as before, still loads."""
    import xarray as xr

    spec = ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
    wl = synthetic(8, rate=0.0002, input_len="uniform:100:200", output_len="uniform:20:50", seed=1)
    run = llmss_lab.simulate(spec, wl, reference_dir=ref)   # 14 hours: 50,444 bins
    groups = ("requests", "iterations", "timeseries", "itl", "memory")
    p = run.save(tmp_path / "idle.nc")
    assert p.stat().st_size < sum(getattr(run, g).nbytes for g in groups) / 10
    back = Results.load(p)
    for g in groups:
        assert getattr(back, g).identical(getattr(run, g)), g

    raw = tmp_path / "raw.nc"
    for i, g in enumerate(groups):
        ds = xr.load_dataset(p, group=g, engine="netcdf4")
        for v in ds.variables.values():
            v.encoding.clear()
        ds.to_netcdf(raw, group=g, mode="a" if i else "w", engine="netcdf4")
    assert raw.stat().st_size > 10 * p.stat().st_size
    assert Results.load(raw).timeseries.identical(run.timeseries)


def test_same_seed_same_results(ref, res):
    spec = ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
    wl = synthetic(60, rate=20, input_len="uniform:100:1500", output_len="uniform:20:200", seed=3)
    again = llmss_lab.simulate(spec, wl, engine={"max_num_seqs": 16}, reference_dir=ref)
    assert again.requests.drop_attrs().identical(res.requests.drop_attrs())
    assert again.iterations.drop_attrs().identical(res.iterations.drop_attrs())


def test_memory_sample_spacing_is_a_setting(ref, res):
    from llmss_lab.errors import InputError

    spec = ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
    wl = synthetic(60, rate=20, input_len="uniform:100:1500", output_len="uniform:20:200", seed=3)
    fine = llmss_lab.simulate(spec, wl, engine={"max_num_seqs": 16}, reference_dir=ref, memory_sample_s=0.1)
    assert np.allclose(np.diff(fine.memory.time.values), 0.1)
    assert np.allclose(np.diff(res.memory.time.values), 1.0)
    # every tenth fine sample is a 1 s sample
    coarse = fine.memory.npu_used.values[9::10][:res.memory.sizes["time"]]
    assert np.array_equal(coarse, res.memory.npu_used.values[:len(coarse)])
    for bad in (0, -1, "1", True):
        with pytest.raises(InputError, match="memory_sample_s"):
            llmss_lab.simulate(spec, wl, reference_dir=ref, memory_sample_s=bad)


def test_bin_width_is_a_setting_that_conserves_tokens(ref, res):
    """Wider bins hold the same tokens (throughput x width sums to the run's tokens), end every ``bin_s``, say
    their width, and space the memory samples alike unless ``memory_sample_s`` is given."""
    from llmss_lab.views import plots

    spec = ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
    wl = synthetic(60, rate=20, input_len="uniform:100:1500", output_len="uniform:20:200", seed=3)
    wide = llmss_lab.simulate(spec, wl, engine={"max_num_seqs": 16}, reference_dir=ref, bin_s=2.5)
    ts = wide.timeseries
    assert np.allclose(np.diff(ts.time.values), 2.5) and ts.time.values[-1] >= wide.attrs["simulated_s"]
    assert ts.attrs["bin_s"] == 2.5 and res.timeseries.attrs["bin_s"] == 1.0
    assert ts.time.attrs["long_name"] == "end of the 2.5 s bin"
    for name, total in (("generation_throughput", res.requests.output_tokens), ("prompt_throughput",
                                                                               res.requests.input_tokens)):
        assert round(float(ts[name].sum()) * 2.5) == int(total.sum()) == round(float(res.timeseries[name].sum()))
    assert int(ts.preemptions.sum()) == int(res.timeseries.preemptions.sum())
    assert np.allclose(np.diff(wide.memory.time.values), 2.5)
    fine = llmss_lab.simulate(spec, wl, engine={"max_num_seqs": 16}, reference_dir=ref, bin_s=2.5,
                              memory_sample_s=0.5)
    assert np.allclose(np.diff(fine.memory.time.values), 0.5) and fine.timeseries.drop_attrs().identical(ts.drop_attrs())
    assert wide.requests.drop_attrs().identical(res.requests.drop_attrs())
    assert "2.5 s bins" in plots.throughput(wide).title.text
    assert "bins" not in plots.throughput(res).title.text


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), 1e6, "1", True])
def test_a_bin_width_that_is_not_a_positive_number_is_refused_by_name(ref, bad):
    from llmss_lab.errors import InputError

    spec = ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
    with pytest.raises(InputError, match="bin_s"):
        llmss_lab.simulate(spec, synthetic(2, seed=0), reference_dir=ref, bin_s=bad)


def test_compact_step_counts_change_no_result(ref, res, monkeypatch):
    """The kernel logs a step's bounded counts as int32 and iterations keeps int32 counts: the same run with the
    int64 log it had before gives identical Datasets and summary."""
    from llmss_lab.kernel import instance

    log = instance.StepLog.bounded_by(36_580 * 16)
    assert log.tokens.typecode == log.running.typecode == "i" and log.prefix_queries.typecode == "q"
    assert instance.StepLog.bounded_by(2**31).tokens.typecode == "q"
    monkeypatch.setattr(instance, "INT32_MAX", 0)   # every count int64, as before
    spec = ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
    wl = synthetic(60, rate=20, input_len="uniform:100:1500", output_len="uniform:20:200", seed=3)
    wide = llmss_lab.simulate(spec, wl, engine={"max_num_seqs": 16}, reference_dir=ref)
    assert wide.summary() == res.summary()
    for g in ("requests", "iterations", "timeseries", "memory", "itl"):
        assert getattr(wide, g).drop_attrs().identical(getattr(res, g).drop_attrs()), g
    assert res.iterations.num_tokens.dtype == np.int32


def _rewrite(run, path, **edits):
    """``run`` saved to ``path``, then written again with ``edits[group]`` applied to that group."""
    import xarray as xr

    run.save(path)
    names = ("requests", "iterations", "timeseries", "itl") + (("power",) if "power" in edits else ())
    groups = {g: xr.load_dataset(path, group=g, engine="netcdf4") for g in names}
    for g, edit in edits.items():
        groups[g] = edit(groups[g])
        for v in groups[g].variables.values():
            v.encoding.clear()    # the loaded chunking cannot hold an empty dimension
    for i, (g, ds) in enumerate(groups.items()):
        ds.to_netcdf(path, group=g, mode="a" if i else "w", engine="netcdf4")
    return path


@pytest.mark.parametrize("damage, says", [
    (lambda ds: ds.isel(request=slice(0, 0)), "requests: holds no requests"),
    (lambda ds: ds.assign(finish=ds.finish.astype(str)), "requests/finish: holds <U"),
    (lambda ds: ds.assign(finish=ds.finish.where(ds.request != 3)), "requests/finish: a request has no finish time"),
    (lambda ds: ds.assign(ttft=ds.ttft.expand_dims(extra=2)), "requests/ttft: has dimensions ('extra', 'request')"),
])
def test_a_damaged_results_file_is_named_by_variable(res, tmp_path, damage, says):
    """These crashed in a reduction, or printed a duration of nan s and a TTFT of 0.0."""
    from llmss_lab.errors import InputError

    path = _rewrite(res, tmp_path / "r.nc", requests=damage)
    with pytest.raises(InputError) as exc:
        Results.load(path)
    assert str(exc.value).startswith(f"{path}: {says}")


def test_a_sweep_file_given_for_a_run_says_what_it_is(tmp_path):
    import xarray as xr

    from llmss_lab.errors import InputError

    path = tmp_path / "sweep.nc"
    xr.Dataset({"status": ("point", ["ok"])}).to_netcdf(path, engine="netcdf4")
    with pytest.raises(InputError, match="it is a sweep's file"):
        Results.load(path)


def test_a_power_group_without_its_energy_totals_is_named(ref, tmp_path):
    """The summary read them as a KeyError."""
    from llmss_lab.errors import InputError

    run = llmss_lab.simulate(ref / "configs/cluster/single_node_power_instance.json",
                             synthetic(5, seed=0), reference_dir=ref)

    def lose_total(ds):
        ds = ds.copy()
        del ds.attrs["total_energy_J"]
        return ds

    path = _rewrite(run, tmp_path / "p.nc", power=lose_total)
    with pytest.raises(InputError, match=r"p\.nc: power: the power group lacks its total_energy_J"):
        Results.load(path)
    assert run.summary()["total_energy_J"] > 0


def test_saving_writes_with_a_small_chunk_cache_and_leaves_the_setting_as_it_was(res, tmp_path):
    """netCDF-C would keep up to 64 MiB of written chunks per variable until the file closes (a long run's whole
    iterations group); save() opens its file with a small cache and restores the process-wide setting."""
    import netCDF4

    from llmss_lab.results.dataset import WRITE_CHUNK_CACHE, small_chunk_cache

    before = netCDF4.get_chunk_cache()
    with small_chunk_cache():
        assert netCDF4.get_chunk_cache()[0] == WRITE_CHUNK_CACHE
    assert netCDF4.get_chunk_cache() == before
    res.save(tmp_path / "r.nc")
    assert netCDF4.get_chunk_cache() == before
    back = Results.load(tmp_path / "r.nc")
    assert back.iterations.identical(res.iterations)
