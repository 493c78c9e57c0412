"""Traces and synthetic workloads; bad traces end in one message naming the file and line."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import llmss_lab as ll
from llmss_lab.errors import InputError
from llmss_lab.workload import LengthDist, load_trace, synthetic


def trace(tmp_path, lines, name="t.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return p


def req(t=0, i=10, o=5, **kw):
    return {"input_toks": i, "output_toks": o, "arrival_time_ns": t, **kw}


def test_reads_the_reference_trace(ref):
    wl = load_trace(ref / "workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl")
    assert len(wl) == 300
    assert int(wl.input_toks.sum()) == 257239 and int(wl.output_toks.sum()) == 195753  # NOTES-simulator.md §5
    assert len(wl.token_ids[0]) == wl.input_toks[0] + wl.output_toks[0]


def test_whole_numbers_written_as_floats_are_read_as_whole_numbers(tmp_path):
    """pandas and numpy write 1e9 and 10.0; both name whole numbers and were refused as not whole."""
    p = tmp_path / "t.jsonl"
    p.write_text('{"input_toks": 10.0, "output_toks": 5, "arrival_time_ns": 1e9}\n'
                 '{"input_toks": 12, "output_toks": 6.0, "arrival_time_ns": 2.5e9}\n')
    wl = load_trace(p)
    assert wl.input_toks.tolist() == [10, 12] and wl.output_toks.tolist() == [5, 6]
    assert wl.arrival_ns.tolist() == [1_000_000_000, 2_500_000_000] and wl.arrival_ns.dtype.kind == "i"


@pytest.mark.parametrize("lines,match", [
    (["{not json"], r"t\.jsonl: line 1: malformed JSON"),
    ([req(), {"input_toks": 3, "arrival_time_ns": 5}], r"line 2: missing required key 'output_toks'"),
    ([req(i=-1)], r"line 1: input_toks out of range"),
    ([req(i="12")], r"line 1: input_toks must be a whole number"),
    ([req(i=12.5)], r"line 1: input_toks must be a whole number, got 12.5"),
    ([req(t=float("nan"))], r"line 1: arrival_time_ns must be a whole number, got nan"),
    ([req(t=100), req(t=50)], r"line 2: arrival_time_ns 50 is earlier"),
    ([req(t=-5)], r"line 1: arrival_time_ns out of range"),
    ([req(colour=3)], r"line 1: unknown key 'colour'"),
    ([req(input_tok_ids=[1, 2])], r"line 1: input_tok_ids has 2 ids but the count says 10"),
    ([req(input_tok_ids=["a"] * 10)], r"line 1: input_tok_ids must be a list of whole numbers"),
    ([req(input_tok_ids=[1.5] * 10)], r"line 1: input_tok_ids must be a list of whole numbers"),
    ([req(input_tok_ids=[True] * 10)], r"line 1: input_tok_ids must be a list of whole numbers"),
    (["[1, 2]"], r"line 1: expected a JSON object"),
    # a session's name is a string in LLMServingSim: any other type was accepted and ignored
    ([req(), req(session_id=["s", 1])], r"line 2: session_id must be a string \(the session's name\), got \['s', 1\]"),
    ([req(session_id={"id": 1})], r"line 1: session_id must be a string \(the session's name\), got \{'id': 1\}"),
    ([req(session_id=7)], r"line 1: session_id must be a string"),
    ([req(session_id=True)], r"line 1: session_id must be a string"),
    ([{"arrival_time_ns": 0, "sub_requests": []}], r"line 1: agentic sessions"),
    ([""], r"the trace has no requests"),
])
def test_bad_traces(tmp_path, lines, match):
    with pytest.raises(InputError, match=match):
        load_trace(trace(tmp_path, lines))


def test_a_named_session_or_none_is_read_as_a_plain_request(tmp_path):
    wl = load_trace(trace(tmp_path, [req(session_id="session_0"), req(session_id=None), req(session_id="")]))
    assert len(wl) == 3


def test_non_utf8_and_missing_files(tmp_path):
    p = tmp_path / "bin.jsonl"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        load_trace(p)
    with pytest.raises(InputError, match="does not exist"):
        load_trace(tmp_path / "nope.jsonl")


def test_a_compressed_utf16_or_netcdf_file_given_as_text_is_named_for_what_it_is(ref, tmp_path, capsys):
    """Each was "not UTF-8 text (byte 0)" or "(byte 1)", which leaves the user guessing."""
    import gzip

    from llmss_lab.cli import main

    text = (ref / "workloads/example_trace.jsonl").read_text()
    gz, utf16 = tmp_path / "trace.jsonl.gz", tmp_path / "trace16.jsonl"
    gz.write_bytes(gzip.compress(text.encode()))
    utf16.write_text(text, encoding="utf-16")
    results = ll.Scenario(num_requests=3).run(ref).save(tmp_path / "r.nc")
    cluster = str(ref / "configs/cluster/single_node_single_instance.json")
    for args, says in (([cluster, "--workload", str(gz)], f"{gz}: not UTF-8 text: it is gzip-compressed; "
                                                            "decompress it first (gunzip -k)"),
                       ([cluster, "--workload", str(utf16)], f"{utf16}: not UTF-8 text: it is UTF-16"),
                       ([str(results)], f"{results}: not UTF-8 text: it is a netCDF file (results or a sweep), "
                                        "not a text input")):
        assert main(["run", *args, "--reference-dir", str(ref), "-q"]) == 2
        assert capsys.readouterr().err.startswith(f"llmss: error: {says}")


def test_sent_one_late_moves_each_request_to_its_predecessors_time():
    from llmss_lab.workload import from_requests
    w = from_requests([(1.0, 10, 5), (1.5, 20, 6), (16.5, 30, 7), (17.0, 40, 8)])
    late = w.sent_one_late()
    # the 15 s pause now comes after the third request, not the second
    assert late.arrival_ns.tolist() == [1_000_000_000, 1_000_000_000, 1_500_000_000, 16_500_000_000]
    assert late.input_toks.tolist() == w.input_toks.tolist() and late.output_toks.tolist() == w.output_toks.tolist()
    assert late.token_ids is w.token_ids and len(late) == len(w)


def test_synthetic_is_seeded_and_shaped():
    a = synthetic(500, rate=8, seed=1)
    b = synthetic(500, rate=8, seed=1)
    assert (a.arrival_ns == b.arrival_ns).all() and (a.input_toks == b.input_toks).all()
    rate = 499 / ((a.arrival_ns[-1] - a.arrival_ns[0]) / 1e9)
    assert 6.5 < rate < 9.5
    g = synthetic(2000, rate=8, arrival="gamma", cv=3, seed=2)
    gaps = np.diff(g.arrival_ns)
    assert gaps.std() / gaps.mean() > 2  # bursty


def test_length_distributions():
    rng = np.random.default_rng(0)
    assert (LengthDist.parse("fixed:128").sample(rng, 5) == 128).all()
    u = LengthDist.parse("uniform:10:20").sample(rng, 1000)
    assert u.min() >= 10 and u.max() <= 20
    with pytest.raises(InputError, match="bad length distribution"):
        LengthDist.parse("zipf:3")


def test_shared_prefixes_give_prefix_hits(ref):
    import llmss_lab

    wl = synthetic(40, rate=50, input_len="fixed:600", output_len="fixed:8", shared_prefix_len=512, num_prefixes=2, seed=0)
    spec = llmss_lab.ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
    res = llmss_lab.simulate(spec, wl, reference_dir=ref)
    assert res.summary()["prefix_hit_tokens"] >= 36 * 512


@pytest.mark.parametrize("kwargs, where, match", [
    (dict(input_toks=[1.5, 2]), "input_toks[0]", "got 1.5"),            # numpy alone would keep 1
    (dict(input_toks=["a", 2]), "input_toks[0]", "got 'a'"),
    (dict(output_toks=[1, None]), "output_toks[1]", "got None"),
    (dict(output_toks=[1, 2**40]), "output_toks[1]", "from 1 to 10,000,000"),
    (dict(arrival_ns=[0.0, float("nan")]), "arrival_ns[1]", "got nan"),
    (dict(arrival_ns=[0, [1]]), "arrival_ns", "flat list"),
    (dict(arrival_ns=[[0, 1]]), "arrival_ns", "shape"),
])
def test_a_workload_built_in_python_names_its_first_bad_entry(kwargs, where, match):
    from llmss_lab.workload import Workload

    args = dict(arrival_ns=[0, 10], input_toks=[5, 6], output_toks=[3, 4]) | kwargs
    with pytest.raises(InputError, match=match) as err:
        Workload(**args, name="mine")
    assert err.value.source == "mine" and err.value.where == where


def test_a_workload_takes_seconds_times_1e9_and_numpy_arrays():
    from llmss_lab.workload import Workload

    w = Workload(np.array([0.0, 0.25, 1.5]) * 1e9 + 0.4, np.array([5, 6, 7], np.uint16), [3.0, 4.0, 5.0])
    assert w.arrival_ns.tolist() == [0, 250_000_000, 1_500_000_000] and w.input_toks.dtype == np.int64
    assert w.output_toks.tolist() == [3, 4, 5]


@pytest.mark.parametrize("kwargs, key", [({"num_requests": "100"}, "num_requests"), ({"num_requests": 2.5}, "num_requests"),
                                         ({"rate": "10"}, "rate"), ({"rate": float("nan")}, "rate"),
                                         ({"cv": "1", "arrival": "gamma"}, "cv"), ({"seed": True}, "seed"),
                                         ({"shared_prefix_len": 2.5}, "shared_prefix_len"),
                                         ({"num_prefixes": 1.5, "shared_prefix_len": 3}, "num_prefixes")])
def test_synthetic_arguments_of_the_wrong_kind_are_named(kwargs, key):
    with pytest.raises(InputError) as err:
        synthetic(**kwargs)
    assert err.value.source == "argument" and err.value.where == key


def test_synthetic_takes_numpy_scalars():
    assert synthetic(np.int64(20), np.float32(5.0), seed=np.uint8(1)).arrival_ns.tolist() == \
        synthetic(20, 5.0, seed=1).arrival_ns.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 20_000_000), st.floats(allow_nan=True, allow_infinity=True),
                          st.text(max_size=3), st.none(), st.booleans()), min_size=1, max_size=6))
def test_token_counts_are_taken_exactly_or_the_first_bad_one_is_named(values):
    """Every entry that is a whole number from 1 to 10M is kept as it is; otherwise the error names the first
    entry that is not one (numpy's own conversion truncates 1.5, takes True as 1 or fails with a bare error)."""
    from llmss_lab.workload import MAX_TOKENS, Workload

    n = len(values)
    good = [not isinstance(v, (bool, str, type(None))) and math.isfinite(v) and float(v).is_integer()
            and 1 <= v <= MAX_TOKENS for v in values]
    if all(good):
        assert Workload(range(n), values, [1] * n).input_toks.tolist() == [int(v) for v in values]
        return
    with pytest.raises(InputError) as err:
        Workload(range(n), values, [1] * n)
    assert err.value.where == f"input_toks[{good.index(False)}]"


def test_from_requests_names_a_malformed_request():
    from llmss_lab.workload import from_requests

    for requests, where in (([(0.0, 5)], "requests[0]"), ([(0.0, 5, 1), ("1s", 5, 1)], "requests[1]"),
                            ([(0.0, 5, 1), (1.0, 2.5, 1)], "input_toks[1]")):
        with pytest.raises(InputError) as err:
            from_requests(requests)
        assert err.value.where == where


def test_a_trace_is_parsed_once_but_every_caller_gets_its_own_copy_and_edits_are_seen(tmp_path):
    import os

    path = tmp_path / "t.jsonl"
    path.write_text('{"input_toks": 10, "output_toks": 2, "arrival_time_ns": 0}\n')
    a = load_trace(path)
    a.input_toks[0] = 99                                   # a caller's change stays its own
    assert load_trace(path).input_toks.tolist() == [10]
    path.write_text('{"input_toks": 20, "output_toks": 2, "arrival_time_ns": 0}\n'
                    '{"input_toks": 30, "output_toks": 2, "arrival_time_ns": 5}\n')
    os.utime(path, ns=(1, 1))                               # an edited file is read again, whatever its time
    assert load_trace(path).input_toks.tolist() == [20, 30]
