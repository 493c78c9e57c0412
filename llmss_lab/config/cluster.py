"""Cluster configs: LLMServingSim's cluster JSON, read unchanged, and the dataclasses it builds.

Sizes in the JSON are in GB meaning GiB (as the reference simulator reads them), bandwidths in
GB/s, latencies in ns. The same :class:`ClusterSpec` can be built in Python directly.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedFeature
from .power import PowerSpec, parse_power
from .reader import Section, as_path, as_whole, is_real, read_json

log = logging.getLogger(__name__)

# Per-instance keys of the JSON that override engine settings (JSON name -> EngineConfig field).
INSTANCE_ENGINE_KEYS = {
    "max_num_seqs": "max_num_seqs",
    "max_num_batched_tokens": "max_num_batched_tokens",
    "long_prefill_token_threshold": "long_prefill_token_threshold",
    "block_size": "block_size",
    "dtype": "dtype",
    "kv_cache_dtype": "kv_cache_dtype",
    "enable_chunked_prefill": "enable_chunked_prefill",
    "enable_prefix_caching": "enable_prefix_caching",
    "reserve_full_isl": "reserve_full_isl",
    "num_gpu_blocks": "num_gpu_blocks",
}
# Keys that belong to features of later kernel versions; accepted by the schema, refused at run.
INSTANCE_FEATURE_KEYS = ("enable_local_offloading", "enable_attn_offloading",
                         "enable_sub_batch_interleaving", "enable_block_copy", "placement")
INSTANCE_KEYS = ("model_name", "hardware", "npu_mem", "num_npus", "tp_size", "pp_size", "ep_size",
                 "dp_group", "pd_type", "npu_num", "npu_group", "name",
                 *INSTANCE_ENGINE_KEYS, *INSTANCE_FEATURE_KEYS)


@dataclass(frozen=True)
class MemorySpec:
    """A memory as the cluster JSON gives it: size in GiB, bandwidth in GB/s, latency in ns."""

    mem_size: float          # GiB
    mem_bw: float            # GB/s
    mem_latency: float = 0   # ns

    @property
    def bytes(self) -> int:
        return int(self.mem_size * 1024**3)


@dataclass(frozen=True)
class InstanceSpec:
    """One model replica (an engine) as a cluster config's instance describes it: model, hardware, NPU memory,
    TP/PP/EP, its DP group and P/D role, and the engine keys it sets for itself (they win over the run's)."""

    model_name: str
    hardware: str
    npu_mem: MemorySpec
    tp_size: int = 1
    pp_size: int = 1
    ep_size: int | None = None
    dp_group: str | None = None
    pd_type: str | None = None
    mem_util: float | None = None
    engine_overrides: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    @property
    def num_npus(self) -> int:
        return self.tp_size * self.pp_size

    @property
    def own_engine_keys(self) -> set[str]:
        """The engine settings this instance sets for itself, which win over the run's (its npu_mem.mem_util
        is gpu_memory_utilization)."""
        return set(self.engine_overrides) | ({"gpu_memory_utilization"} if self.mem_util is not None else set())


@dataclass(frozen=True)
class NodeSpec:
    """One machine: its instances, CPU memory, optional power section and PIM device."""

    instances: list[InstanceSpec]
    cpu_mem: MemorySpec = MemorySpec(512, 256, 0)
    power: PowerSpec | None = None
    pim_config: str | None = None


@dataclass(frozen=True)
class CxlSpec:
    """CXL memory shared by the cluster: ``mem_size`` GiB in all, split evenly over the devices."""

    mem_size: float
    mem_bw: float            # GB/s per device
    mem_latency: float = 0   # ns
    num_devices: int = 1


# what any memory or link of a real machine offers: a value outside is a unit slip (bytes/s for GB/s, s for ns), and a
# run on it would only end in "more than 100 simulated days" without naming the key
MIN_BW_GBS, MAX_BW_GBS, MAX_LATENCY_NS = 1e-3, 1e6, 1e10


def _plausible(key: str, v: float, unit: str, source: str, where: str) -> None:
    if key.endswith("_bw") and 0 < v < MIN_BW_GBS:
        raise InputError(f"{v:g} {unit} is below any real memory or link ({MIN_BW_GBS:g} GB/s = 1 MB/s)", source, where)
    if key.endswith("_bw") and v > MAX_BW_GBS:
        raise InputError(f"{v:g} {unit} is above any real memory or link ({MAX_BW_GBS:g} GB/s = 1 PB/s): the unit is "
                         "GB/s, not bytes per second", source, where)
    if key.endswith("_latency") and v > MAX_LATENCY_NS:
        raise InputError(f"{v:g} {unit} is over {MAX_LATENCY_NS / 1e9:g} s: the unit is ns", source, where)


def _check_memory(mem: MemorySpec | CxlSpec, where: str, source: str, bw_needed: bool) -> None:
    """A size > 0 GiB, a latency >= 0, a bandwidth > 0 (>= 0 where 0 means none given)."""
    for key, positive in (("mem_size", True), ("mem_bw", bw_needed), ("mem_latency", False)):
        v = getattr(mem, key)
        if not is_real(v) or v < 0 or (positive and v == 0):
            raise InputError(f"expected a number {'> 0' if positive else '>= 0'}, got {v!r}", source, f"{where}.{key}")
        _plausible(key, v, "GB/s" if key == "mem_bw" else "ns", source, f"{where}.{key}")
        object.__setattr__(mem, key, float(v))   # a plain float from here on (an np.int32 GiB count would overflow)


@dataclass(frozen=True)
class ClusterSpec:
    """A whole cluster config: nodes, the links between GPUs and between nodes, optional CXL memory.
    ``ClusterSpec.single(model, hardware, mem_size)`` builds the one-GPU case; ``load_cluster`` reads a JSON."""

    nodes: list[NodeSpec]
    link_bw: float | list[float] = 16.0          # GB/s per topology dimension
    link_latency: float | list[float] = 20000.0  # ns per topology dimension
    cxl_mem: CxlSpec | None = None
    source: str = "cluster spec"

    def __post_init__(self) -> None:
        """Checked here, so a spec built in Python is held to what a file is (a file's parser has
        named the same faults first, with its own key paths)."""
        if not isinstance(self.nodes, (list, tuple)) or not all(isinstance(n, NodeSpec) for n in self.nodes):
            raise InputError(f"expected a list of NodeSpec, got {self.nodes!r}: ClusterSpec.single(model, hardware, "
                             "mem_size) builds a one-GPU cluster, load_cluster(path) reads a cluster JSON",
                             self.source, "nodes")
        self._check_links()
        for n, node in enumerate(self.nodes):
            at = f"nodes[{n}]"
            if not isinstance(node.instances, (list, tuple)) or not all(isinstance(i, InstanceSpec)
                                                                        for i in node.instances):
                raise InputError(f"expected a list of InstanceSpec, got {node.instances!r}", self.source,
                                 f"{at}.instances")
            _check_memory(node.cpu_mem, f"{at}.cpu_mem", self.source, bw_needed=True)
            for i, inst in enumerate(node.instances):
                where = f"{at}.instances[{i}]"
                if not inst.where:   # built in Python: later errors name the instance as a file's would
                    object.__setattr__(inst, "where", where)
                for key, example in (("model_name", "meta-llama/Llama-3.1-8B"), ("hardware", "RTXPRO6000")):
                    v = getattr(inst, key)   # names that pick reference files: anything else fails deep in pathlib
                    if not isinstance(v, str) or not v.strip():
                        raise InputError(f"expected a name such as {example!r}, got {v!r}", self.source,
                                         f"{where}.{key}")
                _check_memory(inst.npu_mem, f"{where}.npu_mem", self.source, bw_needed=False)
                for key in ("tp_size", "pp_size", "ep_size"):
                    v = getattr(inst, key)
                    if v is None and key == "ep_size":
                        continue
                    k = as_whole(v)
                    if k is None or k < 1:
                        raise InputError(f"expected a whole number >= 1, got {v!r}", self.source, f"{where}.{key}")
                    object.__setattr__(inst, key, k)   # a plain int from here on (numpy's or 2.0 given)
                u = inst.mem_util
                if u is not None:
                    if not (is_real(u) and 0 < u <= 1):
                        raise InputError(f"expected a fraction in (0, 1], got {u!r}", self.source,
                                         f"{where}.npu_mem.mem_util")
                    object.__setattr__(inst, "mem_util", float(u))
        if self.cxl_mem is not None:
            _check_memory(self.cxl_mem, "cxl_mem", self.source, bw_needed=True)
            d = self.cxl_mem.num_devices
            if as_whole(d) is None or d < 1:
                raise InputError(f"expected a whole number >= 1, got {d!r}", self.source, "cxl_mem.num_devices")
            object.__setattr__(self.cxl_mem, "num_devices", int(d))

    def _check_links(self) -> None:
        """LLMServingSim reads a list as one value per topology dimension (at most three: TP, PP, DP)
        and needs one for each; llmss_lab models two links, so a third value is named as unused."""
        lengths = {}
        for key, unit, positive in (("link_bw", "GB/s", True), ("link_latency", "ns", False)):
            v = getattr(self, key)
            many = isinstance(v, (list, tuple, np.ndarray))
            values = list(v) if many else [v]
            if not values:
                raise InputError("empty list", self.source, key)
            if len(values) > 3:
                raise InputError(f"{len(values)} values, but a topology has at most 3 dimensions (TP, PP, DP)",
                                 self.source, key)
            for i, x in enumerate(values):
                if not is_real(x) or x < 0 or (positive and x == 0):
                    raise InputError(f"expected a number {'> 0' if positive else '>= 0'} ({unit}), got {x!r}",
                                     self.source, f"{key}[{i}]" if many else key)
                _plausible(key, x, unit, self.source, f"{key}[{i}]" if many else key)
            if many:
                object.__setattr__(self, key, [float(x) for x in values])
                lengths[key] = len(values)
            if len(values) == 3:
                log.warning("%s: %s: llmss_lab uses the first value (%g %s) for links inside a node and the last "
                            "(%g %s) for links between nodes; the middle one (%g %s, LLMServingSim's PP dimension) "
                            "is not used", self.source, key, values[0], unit, values[-1], unit, values[1], unit)
        if len(lengths) == 2 and lengths["link_bw"] != lengths["link_latency"]:
            raise InputError(f"a list of length {lengths['link_latency']} where link_bw has length "
                             f"{lengths['link_bw']}: LLMServingSim needs one value of each per topology dimension",
                             self.source, "link_latency")

    @property
    def instances(self) -> list[InstanceSpec]:
        return [inst for node in self.nodes for inst in node.instances]

    @classmethod
    def single(cls, model_name: str, hardware: str, mem_size: float, mem_bw: float = 0.0,
               tp_size: int = 1, mem_util: float | None = None, link_bw: float = 16.0,
               link_latency: float = 20000.0, **engine_overrides: Any) -> ClusterSpec:
        """One node, one instance: the common case, without writing JSON."""
        inst = InstanceSpec(model_name, hardware, MemorySpec(mem_size, mem_bw), tp_size=tp_size,
                            mem_util=mem_util, engine_overrides=engine_overrides)
        return cls([NodeSpec([inst])], link_bw, link_latency)

    def link(self, dim: int = 0) -> tuple[float, float]:
        """(bandwidth GB/s, latency ns) of one topology dimension."""
        def pick(v: float | list[float]) -> float:
            return float(v[min(dim, len(v) - 1)]) if isinstance(v, list) else float(v)
        return pick(self.link_bw), pick(self.link_latency)

    def node_of(self) -> list[int]:
        """Node index of every instance, in :attr:`instances` order."""
        return [n for n, node in enumerate(self.nodes) for _ in node.instances]

    def check_supported(self) -> None:
        """Name any feature of the config that this version does not model yet."""
        src = self.source
        insts = self.instances
        if not insts:
            raise InputError("the cluster has no instances", src, "nodes")
        groups: dict[str, list[InstanceSpec]] = {}
        for inst in insts:
            for key, value in inst.features.items():
                if key in ("placement", "enable_attn_offloading", "enable_sub_batch_interleaving"):
                    continue
                if value not in (False, None):
                    raise UnsupportedFeature(f"{key} is not modelled yet", src, f"{inst.where}.{key}")
            if inst.dp_group is not None:
                if inst.pd_type is not None:
                    raise UnsupportedFeature("data-parallel groups of prefill/decode instances are not modelled",
                                             src, f"{inst.where}.dp_group")
                groups.setdefault(inst.dp_group, []).append(inst)
        for name, members in groups.items():
            first = members[0]
            for m in members[1:]:
                for key in ("model_name", "tp_size", "pp_size", "ep_size"):
                    if getattr(m, key) != getattr(first, key):
                        raise InputError(f"members of dp_group {name!r} must agree on {key} "
                                         f"({getattr(first, key)!r} vs {getattr(m, key)!r})", src, f"{m.where}.{key}")
        roles = {i.pd_type for i in insts}
        if "prefill" in roles and "decode" not in roles:
            raise InputError("prefill instances need at least one decode instance (pd_type 'decode')", src, "nodes")
        if "decode" in roles and roles <= {"decode"}:
            raise InputError("decode instances need a prefill or colocated instance to take new requests",
                             src, "nodes")


EDGE_LAYERS = ("embedding", "final_layernorm", "lm_head")


def _tier_name(value: Any, num_cxl: int, source: str, where: str) -> str:
    v = str(value).strip().lower()
    if v in ("npu", "cpu"):
        return v
    if v.startswith("cxl:"):
        k = v[4:]
        if not _digits(k) or int(k) >= num_cxl:
            raise InputError(f"{value!r} names CXL device {k} but cxl_mem has {num_cxl} device(s)", source, where)
        return f"cxl:{int(k)}"
    raise InputError(f"must be 'npu', 'cpu' or 'cxl:<device>', got {value!r}", source, where)


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also passes '²', which ``int`` refuses."""
    text = text.strip()
    return text.isascii() and text.isdigit()


def _block_numbers(text: Any, num_layers: int, source: str, where: str) -> list[int]:
    """``"0-3,8"`` -> [0, 1, 2, 3, 8]."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        lo, _, hi = part.partition("-")
        if not _digits(lo) or (hi and not _digits(hi)):
            raise InputError(f"expected block ranges like '0-3,8', got {text!r}", source, where)
        a, b = int(lo), int(hi or lo)
        if b < a or b >= num_layers:
            raise InputError(f"block range {part!r} is outside the model's {num_layers} blocks", source, where)
        out.extend(range(a, b + 1))
    return out


def resolve_placement(placement: Any, num_layers: int, num_cxl: int, source: str, where: str) -> dict[str, Any]:
    """Where each part's weights live: ``{"blocks": [tier per block], "embedding": tier, ...}``.

    ``default`` applies first, then ``blocks`` rules in order, then ``layers`` rules by name.
    KV must stay on the NPU (``kv_loc``); ``kv_evict_loc`` is checked but the lower prefix tier is
    chosen by the run's ``prefix_storage`` setting.
    """
    where = f"{where}.placement"
    if not isinstance(placement, dict):
        raise InputError(f"expected an object, got {type(placement).__name__}", source, where)
    unknown = set(placement) - {"default", "blocks", "layers"}
    if unknown:
        raise InputError(f"unknown key {sorted(unknown)[0]!r}", source, where)

    def rule_tier(rule: Any, at: str) -> str | None:
        if not isinstance(rule, dict):
            raise InputError(f"expected an object, got {type(rule).__name__}", source, at)
        bad = set(rule) - {"weights", "kv_loc", "kv_evict_loc", "blocks"}
        if bad:
            raise InputError(f"unknown key {sorted(bad)[0]!r}", source, at)
        if "kv_loc" in rule and _tier_name(rule["kv_loc"], num_cxl, source, f"{at}.kv_loc") != "npu":
            raise UnsupportedFeature("a KV cache outside NPU memory (kv_loc) is not modelled; use "
                                     "prefix_storage for a lower prefix-cache tier", source, f"{at}.kv_loc")
        if "kv_evict_loc" in rule:
            _tier_name(rule["kv_evict_loc"], num_cxl, source, f"{at}.kv_evict_loc")
        return _tier_name(rule["weights"], num_cxl, source, f"{at}.weights") if "weights" in rule else None

    default = rule_tier(placement.get("default", {}), f"{where}.default") or "npu"
    out: dict[str, Any] = {"blocks": [default] * num_layers, **{e: default for e in EDGE_LAYERS}}
    for i, rule in enumerate(placement.get("blocks", []) or []):
        at = f"{where}.blocks[{i}]"
        tier = rule_tier(rule, at)
        if "blocks" not in rule:
            raise InputError("missing required key 'blocks'", source, at)
        for b in _block_numbers(rule["blocks"], num_layers, source, f"{at}.blocks"):
            if tier:
                out["blocks"][b] = tier
    layers = placement.get("layers", {}) or {}
    if not isinstance(layers, dict):
        raise InputError("expected an object of layer name -> rule", source, f"{where}.layers")
    for name, rule in layers.items():
        at = f"{where}.layers.{name}"
        if name not in EDGE_LAYERS:
            raise InputError(f"unknown layer (known: {list(EDGE_LAYERS)})", source, at)
        tier = rule_tier(rule, at)
        if tier:
            out[name] = tier
    return out


def _memory(s: Section, with_util: bool = False) -> tuple[MemorySpec, float | None]:
    allowed = {"mem_size", "mem_bw", "mem_latency"} | ({"mem_util"} if with_util else {"pim_config"})
    s.reject_unknown(allowed)
    mem = MemorySpec(
        mem_size=s.number("mem_size", positive=True, maximum=1e7),
        mem_bw=s.number("mem_bw", positive=True),
        mem_latency=s.number("mem_latency", required=False, default=0, minimum=0),
    )
    util = s.number("mem_util", required=False, default=None, positive=True, maximum=1.0) if with_util else None
    return mem, util


def _instance(s: Section) -> InstanceSpec:
    s.reject_unknown(INSTANCE_KEYS)
    npu_mem, util = _memory(s.section("npu_mem"), with_util=True)
    tp = s.integer("tp_size", required=False, default=None, minimum=1, maximum=4096)
    pp = s.integer("pp_size", required=False, default=None, minimum=1, maximum=4096)
    num = s.integer("num_npus", required=False, default=None, minimum=1, maximum=65536)
    if num is None:  # the paper artifact's keys: npu_num GPUs in npu_group pipeline stages
        num = s.integer("npu_num", required=False, default=None, minimum=1, maximum=65536)
        if pp is None:
            pp = s.integer("npu_group", required=False, default=None, minimum=1, maximum=4096)
            if pp is not None and num is not None and num % pp:
                raise s.error("npu_group", f"{pp} pipeline groups do not divide npu_num {num}")
    pp = pp or 1
    if tp is None:
        tp = (num // pp) if num else 1
    if num is not None and num != tp * pp:
        raise s.error("num_npus", f"{num} NPUs do not equal tp_size x pp_size = {tp} x {pp}")
    pd_type = s.string("pd_type", required=False, default=None, choices=("prefill", "decode"))
    s.string("name", required=False, default=None)   # a label LLMServingSim's configs carry; read only to check it
    overrides = {}
    for key, field_name in INSTANCE_ENGINE_KEYS.items():
        if s.has(key):
            overrides[field_name] = s.data[key]
    features = {k: s.data[k] if k == "placement" else s.boolean(k) for k in INSTANCE_FEATURE_KEYS if s.has(k)}
    dp = s.data.get("dp_group")
    if dp is not None and (isinstance(dp, bool) or not isinstance(dp, (str, int))):
        raise s.error("dp_group", f"expected a group name (a string or a whole number), got {dp!r}")
    return InstanceSpec(
        model_name=s.string("model_name"),
        hardware=s.string("hardware"),
        npu_mem=npu_mem,
        tp_size=tp,
        pp_size=pp,
        ep_size=s.integer("ep_size", required=False, default=None, minimum=1),
        dp_group=None if dp is None else str(dp),
        pd_type=pd_type,
        mem_util=util,
        engine_overrides=overrides,
        features=features,
        where=s.path,
    )


def load_cluster(path: str | Path) -> ClusterSpec:
    """Read a cluster JSON as LLMServingSim writes it (current and older key names)."""
    return cluster_from_dict(read_json(path), str(as_path(path, "cluster")))


def cluster_from_dict(data: Any, path: str) -> ClusterSpec:
    """Build a cluster from the parsed JSON; ``path`` names it in error messages."""
    top = Section.of(data, path)
    top.reject_unknown(("num_nodes", "link_bw", "link_latency", "nodes", "cxl_mem"))
    nodes_s = top.sections("nodes")
    num_nodes = top.integer("num_nodes", minimum=1)
    if num_nodes != len(nodes_s):
        raise top.error("num_nodes", f"says {num_nodes} but 'nodes' lists {len(nodes_s)}")
    nodes = []
    for ns in nodes_s:
        ns.reject_unknown(("num_instances", "cpu_mem", "instances", "power"))
        insts = [_instance(i) for i in ns.sections("instances")]
        n_inst = ns.integer("num_instances", minimum=0)
        if n_inst != len(insts):
            raise ns.error("num_instances", f"says {n_inst} but 'instances' lists {len(insts)}")
        cpu_s = ns.section("cpu_mem")
        cpu, _ = _memory(cpu_s)
        power = parse_power(ns.section("power")) if ns.has("power") else None
        if power is not None:
            for inst in insts:
                power.npu_of(inst.hardware, str(path), ns.key("power"))
        nodes.append(NodeSpec(insts, cpu, power, cpu_s.string("pim_config", required=False)))
    cxl = None
    if top.has("cxl_mem"):
        c = top.section("cxl_mem")
        c.reject_unknown(("mem_size", "mem_bw", "mem_latency", "num_devices"))
        cxl = CxlSpec(c.number("mem_size", positive=True, maximum=1e7), c.number("mem_bw", positive=True),
                      c.number("mem_latency", required=False, default=0, minimum=0),
                      c.integer("num_devices", required=False, default=1, minimum=1, maximum=4096))
    for key in ("link_bw", "link_latency"):
        if not top.has(key):
            raise top.error(key, "missing required key")
    return ClusterSpec(nodes, top.data["link_bw"], top.data["link_latency"], cxl, str(path))
