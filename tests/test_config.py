"""Config parsing, derived sizes, and errors that name the file and key."""
from __future__ import annotations

import dataclasses
import json

import pytest

from llmss_lab.api import kv_cache_blocks
from llmss_lab.config import EngineConfig, ModelSpec, load_cluster
from llmss_lab.config.cluster import ClusterSpec
from llmss_lab.config.model import GIB
from llmss_lab.errors import InputError, UnsupportedFeature


def test_llama_sizes(ref):
    m = ModelSpec.from_hf_config(ref / "configs/model/meta-llama/Llama-3.1-8B.json")
    # 8.03 B parameters in bf16; K and V of 8 heads x 128 dims x 32 layers x 2 bytes
    assert m.weight_bytes_per_rank() / GIB == pytest.approx(14.96, abs=0.01)
    assert m.kv_bytes_per_token() == 2 * 8 * 128 * 32 * 2


def test_qwen3_head_dim_comes_from_the_config(ref):
    m = ModelSpec.from_hf_config(ref / "configs/model/Qwen/Qwen3-32B.json")
    assert m.head_dim == 128 and m.hidden_size // m.num_heads == 80
    assert m.kv_bytes_per_token(tp=2) == 2 * 4 * 128 * 64 * 2


@pytest.mark.parametrize("case,blocks", [("Llama-3.1-8B", 36578), ("Qwen3-32B", 28614)])
def test_kv_block_counts_match_the_reference_simulators_logs(ref, case, blocks):
    spec = load_cluster(ref / f"measurements/RTXPRO6000/{case}/config.json")
    (inst,) = spec.instances
    m = ModelSpec.from_hf_config(ref / f"configs/model/{inst.model_name}.json")
    assert kv_cache_blocks(m, inst, EngineConfig(), spec.source) == blocks


def test_every_reference_cluster_config_parses(ref, caplog):
    paths = sorted((ref / "configs/cluster").glob("*.json")) + sorted((ref / "ispass26/cluster_config").glob("*.json"))
    assert len(paths) > 30
    with caplog.at_level("WARNING", logger="llmss_lab.config.cluster"):
        for p in paths:
            spec = load_cluster(p)
            assert spec.instances
    assert not caplog.records, caplog.text          # their link lists have one or two values, of equal length


def write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def base_cluster():
    return {"num_nodes": 1, "link_bw": 16, "link_latency": 20000, "nodes": [{
        "num_instances": 1, "cpu_mem": {"mem_size": 512, "mem_bw": 256, "mem_latency": 0},
        "instances": [{"model_name": "meta-llama/Llama-3.1-8B", "hardware": "RTXPRO6000",
                       "npu_mem": {"mem_size": 96, "mem_bw": 1597, "mem_latency": 0}, "num_npus": 1,
                       "tp_size": 1, "pd_type": None}]}]}


def test_malformed_json_names_the_line(tmp_path):
    p = write(tmp_path, "c.json", '{\n "num_nodes": 1,\n "link_bw": ,\n}')
    with pytest.raises(InputError, match=r"c\.json: line 3: malformed JSON"):
        load_cluster(p)


def test_unknown_key_is_named_with_a_hint(tmp_path):
    c = base_cluster()
    c["nodes"][0]["instances"][0]["tp_sise"] = 1
    with pytest.raises(InputError, match=r"nodes\[0\]\.instances\[0\]\.tp_sise: unknown key \(did you mean 'tp_size'\?\)"):
        load_cluster(write(tmp_path, "c.json", c))


def test_a_link_list_of_three_says_which_values_are_used(tmp_path, caplog):
    c = base_cluster() | {"link_bw": [128, 64, 16], "link_latency": [500, 1000, 20000]}
    p = write(tmp_path, "c.json", c)
    with caplog.at_level("WARNING", logger="llmss_lab.config.cluster"):
        spec = load_cluster(p)
    assert spec.link(0) == (128, 500) and spec.link(-1) == (16, 20000)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and all(str(p) in m for m in said), said
    assert "link_bw: llmss_lab uses the first value (128 GB/s) for links inside a node and the last (16 GB/s)" in said[0]
    assert "the middle one (64 GB/s, LLMServingSim's PP dimension) is not used" in said[0]
    assert "link_latency: llmss_lab uses the first value (500 ns)" in said[1]


@pytest.mark.parametrize("bw,lat,message", [
    ([128, 16], [500, 1000, 20000], "link_latency: a list of length 3 where link_bw has length 2"),
    ([128, 16], [500], "link_latency: a list of length 1 where link_bw has length 2"),
    ([1, 2, 3, 4], 500, "link_bw: 4 values, but a topology has at most 3 dimensions"),
])
def test_link_lists_that_cannot_be_one_value_per_dimension_are_refused(tmp_path, bw, lat, message):
    p = write(tmp_path, "c.json", base_cluster() | {"link_bw": bw, "link_latency": lat})
    with pytest.raises(InputError, match=r"c\.json: " + message):
        load_cluster(p)


@pytest.mark.parametrize("bw,lat,where", [
    (0, 20000, "link_bw: expected a number > 0 \\(GB/s\\), got 0"),
    (-5, 20000, "link_bw: expected a number > 0 \\(GB/s\\), got -5"),
    ("fast", 20000, "link_bw: expected a number > 0 \\(GB/s\\), got 'fast'"),
    (16, float("nan"), "link_latency: expected a number >= 0 \\(ns\\), got nan"),
    ([16, True], [1, 2], r"link_bw\[1\]: expected a number > 0"),
    ([], 1, "link_bw: empty list"),
    ([1, 2, 3, 4], 500, "link_bw: 4 values"),
    ((128, 16), [500], "link_latency: a list of length 1 where link_bw has length 2"),
])
def test_a_spec_built_in_python_is_held_to_the_file_link_checks(bw, lat, where):
    with pytest.raises(InputError, match="^cluster spec: " + where):
        ClusterSpec.single("meta-llama/Llama-3.1-8B", "A6000", 48, link_bw=bw, link_latency=lat)
    if where.startswith("link_bw: expected"):   # and a changed copy too, as the explorer's what-ifs make them
        with pytest.raises(InputError, match="^cluster spec: " + where):
            dataclasses.replace(ClusterSpec.single("meta-llama/Llama-3.1-8B", "A6000", 48), link_bw=bw)


@pytest.mark.parametrize("field,value,where", [
    ("mem_size", -1, r"npu_mem\.mem_size: expected a number > 0, got -1"),
    ("mem_size", "48", r"npu_mem\.mem_size: expected a number > 0, got '48'"),
    ("mem_size", float("nan"), r"npu_mem\.mem_size: expected a number > 0, got nan"),
    ("mem_bw", -3, r"npu_mem\.mem_bw: expected a number >= 0, got -3"),
    ("tp_size", 0, r"tp_size: expected a whole number >= 1, got 0"),
    ("tp_size", 2.5, r"tp_size: expected a whole number >= 1, got 2\.5"),
    ("mem_util", 2.0, r"npu_mem\.mem_util: expected a fraction in \(0, 1\], got 2\.0"),
])
def test_an_instance_built_in_python_is_held_to_the_file_checks(field, value, where):
    with pytest.raises(InputError, match=r"^cluster spec: nodes\[0\]\.instances\[0\]\." + where):
        ClusterSpec.single(**({"model_name": "meta-llama/Llama-3.1-8B", "hardware": "A6000", "mem_size": 48}
                              | {field: value}))


def test_numpy_and_other_real_numbers_are_welcome_in_a_python_spec():
    """What a notebook computes (numpy scalars and arrays, 2.0, fractions) builds the same spec as plain numbers."""
    import fractions

    import numpy as np

    plain = ClusterSpec.single("meta-llama/Llama-3.1-8B", "A6000", 48, 768, tp_size=2, mem_util=0.9,
                               link_bw=[128.0, 16.0], link_latency=500)
    for kw in (dict(tp_size=np.int64(2), mem_size=np.int32(48), mem_bw=np.float32(768), mem_util=np.float32(0.9),
                    link_bw=np.array([128, 16]), link_latency=np.int64(500)),
               dict(tp_size=2.0, mem_size=fractions.Fraction(48), link_bw=(128, 16))):
        spec = ClusterSpec.single(**({"model_name": "meta-llama/Llama-3.1-8B", "hardware": "A6000", "mem_size": 48,
                                      "mem_bw": 768, "tp_size": 2, "mem_util": 0.9, "link_bw": [128.0, 16.0],
                                      "link_latency": 500} | kw))
        inst = spec.instances[0]
        assert type(inst.tp_size) is int and inst.tp_size == 2 and spec.link_bw == [128.0, 16.0]
        assert spec.link(0) == plain.link(0) and spec.link(-1) == plain.link(-1)
        assert inst.npu_mem.bytes == plain.instances[0].npu_mem.bytes == 48 * 1024**3   # no int32 overflow
        assert type(inst.npu_mem.mem_size) is float and abs(inst.mem_util - 0.9) < 1e-6


def test_cpu_and_cxl_memories_need_a_bandwidth_and_cxl_a_device(tmp_path):
    from llmss_lab.config.cluster import CxlSpec, MemorySpec, NodeSpec

    inst = ClusterSpec.single("meta-llama/Llama-3.1-8B", "A6000", 48).instances[0]
    with pytest.raises(InputError, match=r"^cluster spec: nodes\[0\]\.cpu_mem\.mem_bw: expected a number > 0, got 0"):
        ClusterSpec([NodeSpec([inst], MemorySpec(512, 0))])
    with pytest.raises(InputError, match=r"^cluster spec: cxl_mem\.num_devices: expected a whole number >= 1, got 0"):
        ClusterSpec([NodeSpec([inst])], cxl_mem=CxlSpec(64, 64, 250, 0))
    with pytest.raises(InputError, match=r"^cluster spec: cxl_mem\.mem_bw: expected a number > 0, got 0"):
        ClusterSpec([NodeSpec([inst])], cxl_mem=CxlSpec(64, 0))


def test_an_integer_too_large_for_a_float_is_named_not_a_crash(tmp_path):
    """Was: a bare OverflowError from the finiteness check (JSON reads 1 followed by 400 zeros as an int)."""
    text = json.dumps(base_cluster()).replace('"mem_size": 96', '"mem_size": 1' + "0" * 400)
    assert "0" * 400 in text
    with pytest.raises(InputError, match=r"npu_mem\.mem_size: must be <= 10000000"):
        load_cluster(write(tmp_path, "c.json", text))


def test_negative_memory_is_named(tmp_path):
    c = base_cluster()
    c["nodes"][0]["instances"][0]["npu_mem"]["mem_size"] = -96
    with pytest.raises(InputError, match=r"npu_mem\.mem_size: must be > 0"):
        load_cluster(write(tmp_path, "c.json", c))


def test_an_instance_name_must_be_text(tmp_path):
    """`"name": 5` was accepted without a word (the label is not used, but a number there is a slip)."""
    c = base_cluster()
    c["nodes"][0]["instances"][0]["name"] = 5
    with pytest.raises(InputError, match=r"c\.json: nodes\[0\]\.instances\[0\]\.name: expected a string, got 5"):
        load_cluster(write(tmp_path, "c.json", c))
    c["nodes"][0]["instances"][0]["name"] = "prefill-0"
    assert load_cluster(write(tmp_path, "c.json", c)).instances[0].tp_size == 1


def test_num_npus_must_match_tp(tmp_path):
    c = base_cluster()
    c["nodes"][0]["instances"][0]["num_npus"] = 3
    with pytest.raises(InputError, match="num_npus: 3 NPUs do not equal"):
        load_cluster(write(tmp_path, "c.json", c))


def test_power_and_cxl_sections_are_read(ref):
    power = load_cluster(ref / "configs/cluster/single_node_power_instance.json").nodes[0].power
    assert power.base_node_w == 60 and power.npu["RTXPRO6000"].standby_s == 18
    # the reference's worked example: 60 + 35 + (10 + 190 x 0.15) + 2 x 16 + 5 + 20 + 10 = 200.5 W
    assert sum(power.static_w(512, {"RTXPRO6000": 1}).values()) == pytest.approx(200.5)
    cxl = load_cluster(ref / "configs/cluster/single_node_cxl_instance.json").cxl_mem
    assert (cxl.mem_size, cxl.mem_bw, cxl.mem_latency, cxl.num_devices) == (1024, 60, 250, 4)


def test_kv_outside_the_npu_is_refused_by_name(tmp_path):
    from llmss_lab.config.cluster import resolve_placement
    with pytest.raises(UnsupportedFeature, match=r"placement\.default\.kv_loc"):
        resolve_placement({"default": {"kv_loc": "cpu"}}, 32, 0, "c.json", "nodes[0].instances[0]")
    with pytest.raises(InputError, match="outside the model's 32 blocks"):
        resolve_placement({"blocks": [{"blocks": "30-40", "weights": "cpu"}]}, 32, 0, "c.json", "i")
    with pytest.raises(InputError, match="CXL device 2 but cxl_mem has 1"):
        resolve_placement({"default": {"weights": "cxl:2"}}, 32, 1, "c.json", "i")


def test_placement_numbers_are_ascii_digits():
    """'²' passes str.isdigit but not int(): a named error, not a ValueError."""
    from llmss_lab.config.cluster import resolve_placement
    with pytest.raises(InputError, match=r"i\.placement\.blocks\[0\]\.blocks: expected block ranges like '0-3,8', got '²'"):
        resolve_placement({"blocks": [{"blocks": "²", "weights": "cpu"}]}, 32, 0, "c.json", "i")
    with pytest.raises(InputError, match="names CXL device ²"):
        resolve_placement({"default": {"weights": "cxl:²"}}, 32, 1, "c.json", "i")


@pytest.mark.parametrize("key, value, says", [
    ("enable_attn_offloading", "false", r"instances\[0\]\.enable_attn_offloading: expected true or false, got 'false'"),
    ("enable_sub_batch_interleaving", 1, r"enable_sub_batch_interleaving: expected true or false, got 1"),
    ("dp_group", [1, 2], r"instances\[0\]\.dp_group: expected a group name"),
])
def test_instance_switches_are_not_read_by_truthiness(tmp_path, key, value, says):
    """The string "false" once switched PIM offload on."""
    c = base_cluster()
    c["nodes"][0]["instances"][0][key] = value
    with pytest.raises(InputError, match=says):
        load_cluster(write(tmp_path, "c.json", c))


@pytest.mark.parametrize("where, value, says", [
    ("power", {}, r"nodes\[0\]\.power\.npu: missing required key"),
    ("power", 0, r"nodes\[0\]\.power: expected an object, got int"),
    ("power", False, r"nodes\[0\]\.power: expected an object, got bool"),
    ("cxl_mem", {}, r"cxl_mem\.mem_size: missing required key"),
])
def test_empty_or_falsy_sections_are_not_skipped(tmp_path, where, value, says):
    c = base_cluster()
    (c["nodes"][0] if where == "power" else c)[where] = value
    with pytest.raises(InputError, match=says):
        load_cluster(write(tmp_path, "c.json", c))


def test_power_section_errors_name_the_key(tmp_path):
    c = base_cluster()
    c["nodes"][0]["power"] = {"base_node_power": 60, "npu": {"OTHER": {"idle_power": 1, "active_power": 2}},
                              "cpu": {"idle_power": 1, "active_power": 2, "util": 0.1},
                              "dram": {"dimm_size": 32, "idle_power": 1, "energy_per_bit": 1}}
    with pytest.raises(InputError, match=r"nodes\[0\]\.power\.npu: no NPU power entry for hardware"):
        load_cluster(write(tmp_path, "c.json", c))
    c["nodes"][0]["power"]["cpu"]["util"] = 2
    with pytest.raises(InputError, match=r"power\.cpu\.util: must be <= 1"):
        load_cluster(write(tmp_path, "c.json", c))


@pytest.mark.parametrize("edit, says", [
    (lambda p: p["npu"]["RTXPRO6000"].update(standby_power=5), r"npu\.RTXPRO6000\.standby_power: 5 W is outside"),
    (lambda p: p["npu"]["RTXPRO6000"].update(standby_power=900), r"standby_power: 900 W is outside idle_power"),
    (lambda p: p["dram"].update(dimm_size=1e-9), r"power\.dram\.dimm_size: must be >= 0\.25"),
    (lambda p: p["link"].update(num_links=10**15), r"power\.link\.num_links: must be <= 4096"),
    (lambda p: p["nic"].update(num_nics=10**15), r"power\.nic\.num_nics: must be <= 4096"),
])
def test_power_values_outside_any_machine_are_refused(ref, tmp_path, edit, says):
    """A typo here once gave 8e15 J for a minute's run."""
    c = json.loads((ref / "configs/cluster/single_node_power_instance.json").read_text())
    edit(c["nodes"][0]["power"])
    with pytest.raises(InputError, match=says):
        load_cluster(write(tmp_path, "c.json", c))


@pytest.mark.parametrize("edit, says", [
    (lambda c: c.update(link_latency=1e20), r"c\.json: link_latency: 1e\+20 ns is over 10 s: the unit is ns"),
    (lambda c: c.update(link_bw=[16, 1e-300]), r"link_bw\[1\]: 1e-300 GB/s is below any real memory or link"),
    (lambda c: c["nodes"][0]["cpu_mem"].update(mem_bw=1e-6), r"nodes\[0\]\.cpu_mem\.mem_bw: 1e-06 GB/s is below"),
    (lambda c: c["nodes"][0]["instances"][0]["npu_mem"].update(mem_latency=1e12),
     r"instances\[0\]\.npu_mem\.mem_latency: 1e\+12 ns is over 10 s"),
    (lambda c: c.update(link_bw=16 * 2**30), r"link_bw: 1\.71799e\+10 GB/s is above any real memory or link .*the "
                                             "unit is GB/s, not bytes per second"),
    (lambda c: c["nodes"][0]["cpu_mem"].update(mem_bw=256e9), r"nodes\[0\]\.cpu_mem\.mem_bw: 2\.56e\+11 GB/s is above"),
])
def test_bandwidths_and_latencies_no_machine_has_are_named(tmp_path, edit, says):
    """They used to run until the 100-day horizon and end in an error that named no key."""
    c = base_cluster()
    edit(c)
    with pytest.raises(InputError, match=says):
        load_cluster(write(tmp_path, "c.json", c))


def test_artifact_keys_map_npu_group_to_pipeline_stages(tmp_path):
    inst = {"model_name": "m", "hardware": "h", "npu_mem": {"mem_size": 40, "mem_bw": 768}, "npu_num": 4,
            "npu_group": 2, "pd_type": None}
    c = {"num_nodes": 1, "link_bw": 112, "link_latency": 0,
         "nodes": [{"num_instances": 1, "cpu_mem": {"mem_size": 128, "mem_bw": 128}, "instances": [inst]}]}
    (i,) = load_cluster(write(tmp_path, "c.json", c)).instances
    assert (i.tp_size, i.pp_size, i.dp_group) == (2, 2, None)


def test_tp_must_divide_heads(ref):
    m = ModelSpec.from_hf_config(ref / "configs/model/meta-llama/Llama-3.1-8B.json")
    with pytest.raises(InputError, match="tp_size 3 does not divide"):
        m.check_parallelism(3, source="c.json")


def test_engine_settings_are_checked():
    with pytest.raises(InputError, match="gpu_memory_utilization: must be in"):
        EngineConfig(gpu_memory_utilization=1.5)
    with pytest.raises(InputError, match="max_num_seq: unknown engine setting"):
        EngineConfig().with_overrides({"max_num_seq": 4}, "cli")
    with pytest.raises(InputError, match="max_model_len: must be a whole number > 0, got True"):
        EngineConfig(max_model_len=True)      # a bool is not a length (it once read as 1)
    with pytest.raises(InputError, match=r"dtype: must be one of \['bfloat16'.*got 'int4'"):
        EngineConfig(dtype="int4")


@pytest.mark.parametrize("source, value, hint", [
    ("eff.yaml", "1e9", "(YAML reads an exponent without a dot as text: write 1.0e9)"),
    ("c.json", "1597", "(a number in quotes is text: drop the quotes)"),
])
def test_a_number_read_as_text_says_why(source, value, hint):
    from llmss_lab.config.reader import Section
    with pytest.raises(InputError) as exc:
        Section.of({"mem_bw": value}, source).number("mem_bw")
    assert str(exc.value) == f"{source}: mem_bw: expected a number, got {value!r} {hint}"


@pytest.mark.parametrize("key", ["dtype", "kv_cache_dtype"])
def test_a_dtype_that_is_not_a_name_is_named(key):
    with pytest.raises(InputError, match=f"{key}: must be"):
        EngineConfig(**{key: ["bfloat16"]})


def test_more_experts_per_token_than_experts_is_named(ref, tmp_path):
    hf = json.loads((ref / "configs/model/Qwen/Qwen3-30B-A3B-Instruct-2507.json").read_text())
    hf["num_experts_per_tok"] = 200
    with pytest.raises(InputError, match="num_experts_per_tok: 200 is more than the model's 128 experts"):
        ModelSpec.from_hf_config(write(tmp_path, "m.json", hf))


def test_a_context_longer_than_any_model_has_is_named(ref, tmp_path):
    hf = json.loads((ref / "configs/model/meta-llama/Llama-3.1-8B.json").read_text())
    hf["max_position_embeddings"] = 10**12
    with pytest.raises(InputError, match=r"m.json: max_position_embeddings: must be <= 100000000, got 10{12}"):
        ModelSpec.from_hf_config(write(tmp_path, "m.json", hf))


def test_an_architecture_the_kit_does_not_model_is_said_to_run_as_a_llama(ref, tmp_path, caplog):
    hf = json.loads((ref / "configs/model/meta-llama/Llama-3.1-8B.json").read_text())
    with caplog.at_level("WARNING"):
        ModelSpec.from_hf_config(write(tmp_path, "llama.json", hf))
    assert not caplog.text
    hf["model_type"] = "gpt2"
    with caplog.at_level("WARNING"):
        ModelSpec.from_hf_config(write(tmp_path, "gpt.json", hf))
        ModelSpec.from_hf_config(tmp_path / "gpt.json")
    assert caplog.text.count("model_type 'gpt2' is not one of the decoders the kit models") == 1


def test_a_byte_order_mark_is_read_past(ref, tmp_path):
    """Windows editors save UTF-8 with a BOM; json refused it with advice about decoding."""
    from llmss_lab.workload import load_trace

    p = tmp_path / "c.json"
    p.write_bytes(b"\xef\xbb\xbf" + (ref / "configs/cluster/single_node_single_instance.json").read_bytes())
    assert load_cluster(p).instances[0].model_name == "meta-llama/Llama-3.1-8B"
    t = tmp_path / "t.jsonl"
    t.write_bytes(b"\xef\xbb\xbf" + b'{"input_toks": 5, "output_toks": 3, "arrival_time_ns": 0}\n')
    assert len(load_trace(t)) == 1


def test_yaml_numbers_with_an_unsigned_exponent_are_numbers(tmp_path):
    """PyYAML (YAML 1.1) read 1.5e1 and 4.2015e8 as text: a grid point failed with 'must be a number'."""
    from llmss_lab.config.reader import read_yaml

    p = tmp_path / "g.yaml"
    p.write_text('rate: [1.5e1, 2e1, 4.2015e8, 1e-3, 3, "1e5"]\n')
    assert read_yaml(p) == {"rate": [15.0, 20.0, 420150000.0, 0.001, 3, "1e5"]}
