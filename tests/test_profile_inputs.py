"""Profile tables that were misread without a word: rows with more fields than the header, keys given
twice, operators no model runs, a required operator gone, a tp_size column of another folder, a
negative skew alpha_default. Each case edits a copy of one file of a real bundle (the current format,
or the paper artifact's) inside a temporary tree of symlinks to the reference data."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

import llmss_lab as ll
from llmss_lab.errors import InputError
from llmss_lab.latency.legacy import load_legacy
from llmss_lab.latency.profile import load_bundle

from .test_bad_inputs import BUNDLE, GOOD_CLUSTER, TRACE, overlay

MOE_BUNDLE = "profiles/RTXPRO6000/Qwen/Qwen3-30B-A3B-Instruct-2507/bf16"
LEGACY = "profiles/A6000/meta-llama/Llama-3.1-8B"           # under ispass26/
LEGACY_MOE = "profiles/A6000/microsoft/Phi-mini-MoE-instruct"

Edit = Callable[[list[str]], list[str]]


def edited(src: Path, tmp_path: Path, edit: Edit) -> Path:
    """A copy of ``src`` with ``edit`` applied to its lines (the header is line 0)."""
    out = tmp_path / src.name
    out.write_text("\n".join(edit(src.read_text().splitlines())) + "\n")
    return out


def current(ref: Path, tmp_path: Path, name: str, edit: Edit, bundle: str = BUNDLE):
    """The current-format bundle at TP 1 with ``tp1/<name>`` edited."""
    root = overlay(ref, tmp_path, f"{bundle}/tp1/{name}", edited(ref / bundle / "tp1" / name, tmp_path, edit))
    return load_bundle(root / bundle).at_tp(1)


def legacy(ref: Path, tmp_path: Path, name: str, edit: Edit, model: str = LEGACY, is_moe: bool = False):
    """The paper artifact's profile at TP 1 with ``tp1/<name>`` edited."""
    art = ref / "ispass26"
    root = overlay(art, tmp_path, f"{model}/tp1/{name}", edited(art / model / "tp1" / name, tmp_path, edit))
    return load_legacy(root / model, 1, is_moe)


def at(line: int, edit: Callable[[str], str]) -> Edit:
    """Edit one line (numbered as in the file: the header is line 1)."""
    return lambda ls: [edit(x) if i == line - 1 else x for i, x in enumerate(ls)]


def appended(row: str) -> Edit:
    return lambda ls: [*ls, row]


def repeated_with_new_time(ls: list[str]) -> list[str]:
    """The first row again at the end, with another value in the last column."""
    return [*ls, re.sub(r",[^,]*$", ",12345", ls[1])]


def test_decimal_commas_are_refused_not_read_as_whole_numbers(ref, tmp_path):
    """``act_fn,1,2.67733`` written with a decimal comma is ``act_fn,1,2,67733``: the run read 2 us and went on."""
    comma = edited(ref / BUNDLE / "tp1/dense.csv", tmp_path, lambda ls: [ls[0], *(x.replace(".", ",") for x in ls[1:])])
    root = overlay(ref, tmp_path, f"{BUNDLE}/tp1/dense.csv", comma)
    with pytest.raises(InputError, match=r"tp1/dense.csv: line 2: expected 3 fields, got 4$"):
        ll.simulate(root / GOOD_CLUSTER, TRACE, reference_dir=root, num_requests=3)


@pytest.mark.parametrize("name,edit,message", [
    ("attention.csv", at(500, lambda x: x + ",7"), "line 500: expected 5 fields, got 6"),
    # a field more on every row: pandas took the first column for an index and shifted the others left
    ("per_sequence.csv", lambda ls: [ls[0], *(x + "," for x in ls[1:])], "line 2: expected 3 fields, got 4"),
    ("moe.csv", at(3, lambda x: x + ",1"), "line 3: expected 3 fields, got 4"),
], ids=["attention-one-row", "per-sequence-every-row", "moe"])
def test_a_row_with_more_fields_than_the_header_is_refused(ref, tmp_path, name, edit, message):
    bundle = MOE_BUNDLE if name == "moe.csv" else BUNDLE
    with pytest.raises(InputError, match=f"tp1/{name}: {message}$"):
        current(ref, tmp_path, name, edit, bundle)


@pytest.mark.parametrize("name,edit,message", [
    ("layers.csv", at(3000, lambda x: x + ",0"), "line 3000: expected 5 fields, got 6"),
    ("predictions/attn_decode_predictions.csv", at(2, lambda x: x + ",5"), "line 2: expected 3 fields, got 4"),
], ids=["layers", "decode-predictions-first-row"])
def test_a_legacy_row_with_more_fields_than_the_header_is_refused(ref, tmp_path, name, edit, message):
    with pytest.raises(InputError, match=f"tp1/{name}: {message}$"):
        legacy(ref, tmp_path, name, edit)


def test_an_attention_point_given_twice_is_refused(ref, tmp_path):
    """The last row silently won."""
    n = len((ref / BUNDLE / "tp1/attention.csv").read_text().splitlines())
    with pytest.raises(InputError, match=f"tp1/attention.csv: line {n + 1}: the same prefill_chunk, kv_prefill, "
                                         "n_decode, kv_decode as line 2$"):
        current(ref, tmp_path, "attention.csv", repeated_with_new_time)


def test_an_moe_point_given_twice_is_refused(ref, tmp_path):
    n = len((ref / MOE_BUNDLE / "tp1/moe.csv").read_text().splitlines())
    with pytest.raises(InputError, match=f"tp1/moe.csv: line {n + 1}: the same tokens, activated_experts as line 2$"):
        current(ref, tmp_path, "moe.csv", repeated_with_new_time, MOE_BUNDLE)


@pytest.mark.parametrize("name,key", [
    ("predictions/attn_decode_predictions.csv", "batch_size, kv_cache_size"),
    ("predictions/attn_prefill_predictions.csv", "kv_cache_size, prefill_chunk_size"),
], ids=["decode", "prefill"])
def test_a_legacy_prediction_given_twice_is_refused(ref, tmp_path, name, key):
    n = len((ref / "ispass26" / LEGACY / "tp1" / name).read_text().splitlines())
    with pytest.raises(InputError, match=f"tp1/{name}: line {n + 1}: the same {key} as line 2$"):
        legacy(ref, tmp_path, name, repeated_with_new_time)


def test_an_operator_no_model_runs_is_refused_in_dense_csv(ref, tmp_path):
    """It was added to every transformer block of every step."""
    n = len((ref / BUNDLE / "tp1/dense.csv").read_text().splitlines())
    with pytest.raises(InputError) as err:
        current(ref, tmp_path, "dense.csv", appended("bogus_layer,1,5.0"))
    assert str(err.value).startswith(f"{tmp_path}/refroot/{BUNDLE}/tp1/dense.csv: line {n + 1}: column 'layer': "
                                     "unknown label 'bogus_layer' (expected one of ['embedding', ")
    assert "'qk_norm'" in str(err.value) and "'down_proj'" in str(err.value)


@pytest.mark.parametrize("model,is_moe,row", [
    (LEGACY, False, "bogus_layer,1,0,1,5000"),
    (LEGACY, False, "gate,1,0,1,5000"),          # an MoE router in a dense model
    (LEGACY_MOE, True, "gate_proj,1,0,1,5000"),  # a dense MLP in an MoE model (its MLP is its experts)
], ids=["bogus", "router-in-dense-model", "dense-mlp-in-moe-model"])
def test_an_operator_the_model_does_not_run_is_refused_in_layers_csv(ref, tmp_path, model, is_moe, row):
    n = len((ref / "ispass26" / model / "tp1/layers.csv").read_text().splitlines())
    name = row.split(",")[0]
    with pytest.raises(InputError, match=rf"tp1/layers.csv: line {n + 1}: column 'layer_name': unknown label "
                                         rf"'{name}' \(expected one of \['act_fn', 'attn', "):
        legacy(ref, tmp_path, "layers.csv", appended(row), model, is_moe)


@pytest.mark.parametrize("model,is_moe,layer", [(LEGACY, False, "q_proj"), (LEGACY, False, "up_proj"),
                                                (LEGACY_MOE, True, "gate")])
def test_a_legacy_profile_that_lost_an_operator_is_refused(ref, tmp_path, model, is_moe, layer):
    """It simulated a faster model without a word."""
    drop = lambda ls: [x for x in ls if not x.startswith(f"{layer},")]   # noqa: E731
    with pytest.raises(InputError, match=rf"tp1/layers.csv: layer_name: no rows for layer\(s\) \['{layer}'\]: "
                                         "every transformer step runs them$"):
        legacy(ref, tmp_path, "layers.csv", drop, model, is_moe)


def test_a_legacy_table_of_another_tp_degree_is_refused(ref, tmp_path):
    """tp1/layers.csv whose tp_size column says 2: a copy of the tp2 folder's table, per-rank times of half the work."""
    tp2 = lambda ls: [ls[0], *(re.sub(r"^([^,]*,[^,]*,[^,]*),1,", r"\1,2,", x) for x in ls[1:])]   # noqa: E731
    with pytest.raises(InputError, match=r"tp1/layers.csv: tp_size: says 2 in a tp1/ folder"):
        legacy(ref, tmp_path, "layers.csv", tp2)


def test_a_negative_skew_alpha_default_is_refused(ref, tmp_path):
    """alpha_default moves a batch's attention time from its mean-length time toward its longest: the fit over
    all samples is positive in every bundle, a negative one would make unequal decodes faster than equal ones."""
    meta = (ref / BUNDLE / "meta.yaml").read_text()
    assert meta.count("alpha_default: 0.0543") == 1
    bad = tmp_path / "meta.yaml"
    bad.write_text(meta.replace("alpha_default: 0.0543", "alpha_default: -5"))
    root = overlay(ref, tmp_path, f"{BUNDLE}/meta.yaml", bad)
    with pytest.raises(InputError, match=r"meta.yaml: skew_fit.per_tp.1.alpha_default: must be >= 0.0, got -5$"):
        load_bundle(root / BUNDLE).at_tp(1)


@pytest.mark.parametrize("value", ["3", "[]", "x", "false"])
def test_a_meta_yaml_engine_effective_that_is_not_a_mapping_is_named(ref, tmp_path, value):
    """`engine_effective: 3` ended in a bare AttributeError ('int' object has no attribute 'get')."""
    text = (ref / BUNDLE / "meta.yaml").read_text()
    # the settings stay in the file under another name, so the YAML still parses
    bad = text.replace("engine_effective:\n", f"engine_effective: {value}\nengine_settings:\n", 1)
    assert bad != text
    (tmp_path / "meta.yaml").write_text(bad)
    root = overlay(ref, tmp_path, f"{BUNDLE}/meta.yaml", tmp_path / "meta.yaml")
    with pytest.raises(InputError, match=r"meta.yaml: engine_effective: expected an object, got "):
        load_bundle(root / BUNDLE).at_tp(1)


@pytest.mark.parametrize("line, says", [
    ("tp_degrees: [1]", "tp_degrees: lists [1] but the bundle has the folders ['tp1', 'tp2']"),
    ("tp_degrees: [1, 2, 4]", "lists [1, 2, 4] but the bundle has the folders"),
    ("tp_degrees: x", "tp_degrees: expected a list of TP degrees such as [1, 2], got 'x'"),
])
def test_meta_yaml_tp_degrees_must_match_the_folders(ref, tmp_path, line, says):
    """The list was never read: a bundle copied without one of its folders went unnoticed."""
    src = ref / BUNDLE / "meta.yaml"
    text = re.sub(r"(?m)^tp_degrees:.*$", line, src.read_text())
    assert line in text
    (tmp_path / "meta.yaml").write_text(text)
    root = overlay(ref, tmp_path, f"{BUNDLE}/meta.yaml", tmp_path / "meta.yaml")
    with pytest.raises(InputError, match=re.escape(says)):
        load_bundle(root / BUNDLE)


QWEN_DENSE = "profiles/RTXPRO6000/Qwen/Qwen3-32B/bf16"


def test_qk_norm_rows_must_match_the_model(ref, tmp_path):
    """Qwen3 runs a query/key norm each layer and Llama does not: a bundle without (or with) its rows
    would have simulated a faster (or slower) model."""
    from llmss_lab.latency.profile import require_layers
    (tmp_path / "q").mkdir()
    (tmp_path / "l").mkdir()
    qwen = current(ref, tmp_path / "q", "dense.csv", lambda ls: [x for x in ls if not x.startswith("qk_norm,")],
                   QWEN_DENSE)
    with pytest.raises(InputError, match=r"dense\.csv: layer: no rows for layer\(s\) \['qk_norm'\]"):
        require_layers(qwen, is_moe=False, qk_norm=True)
    rows = (ref / QWEN_DENSE / "tp1/dense.csv").read_text().splitlines()
    llama = current(ref, tmp_path / "l", "dense.csv", lambda ls: ls + [x for x in rows if x.startswith("qk_norm,")])
    with pytest.raises(InputError, match="rows for qk_norm, which this model does not run"):
        require_layers(llama, is_moe=False, qk_norm=False)
    require_layers(load_bundle(ref / QWEN_DENSE).at_tp(1), is_moe=False, qk_norm=True)   # the shipped bundles pass
    require_layers(load_bundle(ref / BUNDLE).at_tp(1), is_moe=False, qk_norm=False)


@pytest.mark.parametrize("name, keep, says", [
    ("attention.csv", lambda ls: ls[:1000], r"attention.csv: prefill_chunk: has no rows at 32, 64, 128, 256 \.\.\., "
                                            r"which meta.yaml's attention_grid.chunks lists"),
    ("dense.csv", lambda ls: [x for x in ls if not x[-1:].isdigit() or int(x.split(",")[1]) <= 4],
     r"dense.csv: tokens: .* stop at fewer tokens than the 2048 meta.yaml's engine_effective.max_num_batched_tokens"),
    # cut after 12 lines: lm_head up to 11 sequences, no sampler rows; a run's mean TTFT moved 15.40 -> 16.26 ms
    ("per_sequence.csv", lambda ls: ls[:12], r"per_sequence.csv: sequences: lm_head stop at fewer sequences than "
                                            r"the 256 meta.yaml's engine_effective.max_num_seqs profiled"),
])
def test_a_table_cut_short_of_the_grid_meta_yaml_lists_is_refused(ref, tmp_path, name, keep, says):
    """A copy cut at a line boundary loaded without a word; the holes were filled from neighbours and the
    mean TTFT of a run went from 131 ms to 890 ms (attention) or 5 ms (dense)."""
    with pytest.raises(InputError, match=says):
        current(ref, tmp_path, name, keep)


@pytest.mark.parametrize("name,edit,message", [
    # Python's float() takes digit separators: the run read 29 us
    ("dense.csv", at(2, lambda x: x.replace("2.67733", "2_9")), r"line 2: column 'time_us': not a number: '2_9'"),
    ("dense.csv", at(2, lambda x: x.replace("act_fn,1,", "act_fn,4.5,")),
     r"line 2: column 'tokens': expected a whole number >= 0, got 4.5"),
    ("attention.csv", at(2, lambda x: x.replace("0,0,1,16,", "0,0,1.5,16,")),
     r"line 2: column 'n_decode': expected a whole number >= 0, got 1.5"),
], ids=["digit-separator", "fractional-tokens", "fractional-decode-count"])
def test_numbers_a_profiler_cannot_have_written_are_refused(ref, tmp_path, name, edit, message):
    with pytest.raises(InputError, match=f"tp1/{name}: {message}"):
        current(ref, tmp_path, name, edit)


def test_a_legacy_fractional_size_is_refused(ref, tmp_path):
    with pytest.raises(InputError, match=r"tp1/layers.csv: line 2: column 'input': expected a whole number >= 0"):
        legacy(ref, tmp_path, "layers.csv", at(2, lambda x: x.replace("embedding,1,", "embedding,1.5,")))
