"""A scenario: every input of one run as plain values, so it can be shown in controls, saved as
JSON, swept over and run again.

A scenario either names a cluster config file or builds one from its shape fields
(instances x DP x TP x PP, EP, a prefill/decode split, memory tiers, power); the built config is
LLMServingSim's cluster JSON, so ``Scenario.cluster_json()`` can be saved and run by ``llmss run``.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from .api import MAX_BIN_S, MIN_BIN_S, pim_files, simulate
from .catalog import scan
from .config.cluster import ClusterSpec, cluster_from_dict, load_cluster
from .config.engine import EngineConfig
from .config.model import ModelSpec
from .config.reader import as_path, as_whole, closest, plain, read_json, store_plain
from .errors import InputError, LlmssError, RunInterrupted
from .files import permission_named, refuse_in_reference, refuse_to_replace, write_text
from .latency.analytical import UnknownHardware, efficiency, find_spec
from .reference import ReferenceLayout, protected_root, resolve_reference_dir
from .results.dataset import Results
from .kernel.kv_cache import EVICTION
from .kernel.moe import GATES
from .kernel.router import ROUTERS
from .kernel.scheduler import SCHEDULERS
from .kernel.simulator import KV_TRANSFERS
from .workload import LengthDist, Workload, check_generator, load_trace, synthetic

log = logging.getLogger(__name__)
WEIGHT_TIERS = ("npu", "cpu", "cxl")
# the range of each numeric field: (lowest, is the lowest itself allowed); the upper bounds that depend on the
# hardware or the engine (memory, utilisation, skew) are checked where the run is built
POSITIVE, NON_NEGATIVE, AT_LEAST_ONE = (0, False), (0, True), (1, True)
FIELD_RANGES: dict[str, tuple[float, bool]] = {
    "npu_mem_gib": NON_NEGATIVE, "npu_mem_bw": NON_NEGATIVE, "what_if_mem_bw": POSITIVE, "what_if_flops": POSITIVE,
    "instances": AT_LEAST_ONE, "dp": AT_LEAST_ONE, "tp": AT_LEAST_ONE, "pp": AT_LEAST_ONE, "ep": AT_LEAST_ONE,
    "prefill_instances": NON_NEGATIVE, "max_num_seqs": NON_NEGATIVE, "max_num_batched_tokens": NON_NEGATIVE,
    "block_size": AT_LEAST_ONE, "gpu_memory_utilization": POSITIVE, "gate_skew": NON_NEGATIVE,
    "num_gpu_blocks": NON_NEGATIVE, "max_model_len": NON_NEGATIVE, "long_prefill_token_threshold": NON_NEGATIVE,
    "cpu_mem_gib": POSITIVE, "cpu_mem_bw": POSITIVE, "cxl_mem_gib": NON_NEGATIVE, "cxl_mem_bw": POSITIVE,
    "cxl_devices": AT_LEAST_ONE, "num_requests": NON_NEGATIVE, "rate": POSITIVE, "arrival_cv": NON_NEGATIVE,
    "shared_prefix_len": NON_NEGATIVE,
    "num_prefixes": AT_LEAST_ONE, "seed": NON_NEGATIVE,
}

# the units of the numeric fields, for a sweep's coordinates (xarray's ``units`` attr): "1" for degrees, counts of
# hardware and ratios; the kit's counting units (tokens, sequences, requests) where it measures in them elsewhere
FIELD_UNITS: dict[str, str] = {
    **dict.fromkeys(("npu_mem_gib", "cpu_mem_gib", "cxl_mem_gib"), "GiB"),
    **dict.fromkeys(("npu_mem_bw", "cpu_mem_bw", "cxl_mem_bw"), "GB/s"),
    "rate": "req/s", "max_num_seqs": "sequences", "num_requests": "requests", "bin_s": "s",
    **dict.fromkeys(("max_num_batched_tokens", "block_size", "shared_prefix_len", "max_model_len",
                     "long_prefill_token_threshold"), "tokens"),
    "num_gpu_blocks": "blocks",
    **dict.fromkeys(("instances", "dp", "tp", "pp", "ep", "prefill_instances", "cxl_devices", "num_prefixes",
                     "gpu_memory_utilization", "gate_skew", "arrival_cv", "what_if_mem_bw", "what_if_flops"), "1"),
}

# a scenario builds one node: past these a run takes minutes per point (the cost grows faster than the count);
# a larger cluster is a cluster config
FIELD_MAXIMA = {"instances": 256, "dp": 64}
PARALLEL_MAX = 4096   # tp, pp and ep, as a cluster config takes them: refused when a scenario or grid is read
WHOLE_MAX = 2 ** 63 - 1   # what a whole-number field may hold: netCDF stores no larger integer

# what a cluster file sets in place of the shape fields, and a trace in place of the generator's
SHAPE_FIELDS = ("hardware", "model", "npu_mem_gib", "npu_mem_bw", "instances", "dp", "tp", "pp", "ep",
                "prefill_instances", "weights_on", "cpu_mem_gib", "cpu_mem_bw", "cxl_mem_gib", "cxl_mem_bw",
                "cxl_devices", "pim_device", "power")
ENGINE_FIELDS = ("max_num_seqs", "max_num_batched_tokens", "block_size", "enable_prefix_caching",
                 "enable_chunked_prefill", "async_scheduling", "gpu_memory_utilization", "num_gpu_blocks",
                 "max_model_len", "long_prefill_token_threshold", "reserve_full_isl", "scheduler", "eviction")
UNSET_AT_0 = ("num_gpu_blocks", "max_model_len")   # 0: left to the engine (sized from the memory, the model's)
GENERATOR_FIELDS = ("rate", "input_len", "output_len", "arrival", "arrival_cv", "shared_prefix_len", "num_prefixes")
GENERATOR_ARGS = {"input": "input_len", "output": "output_len", "cv": "arrival_cv"}   # synthetic()'s names for them
KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}   # of the fields, in errors
BUILT_CLUSTER = "scenario (built cluster)"   # the source errors name for the config a scenario builds
# the keys of the built cluster config (list indices written []) -> the fields that set them, so an error in the
# built config names what the user wrote; a field that writes a new key adds one entry
BUILT_KEYS: dict[str, tuple[str, ...]] = {
    "nodes[].instances[].hardware": ("hardware",), "nodes[].instances[].model_name": ("model",),
    "nodes[].instances[].npu_mem.mem_size": ("npu_mem_gib", "gpu_memory_utilization"),
    "nodes[].instances[].npu_mem.mem_bw": ("npu_mem_bw",),
    "nodes[].instances[].tp_size": ("tp",), "nodes[].instances[].pp_size": ("pp",),
    "nodes[].instances[].ep_size": ("ep",), "nodes[].instances[].dp_group": ("dp",),
    "nodes[].instances[].pd_type": ("prefill_instances",), "nodes[].instances[].placement": ("weights_on",),
    "nodes[].instances[].enable_attn_offloading": ("attn_offload",),
    "nodes[].instances[].enable_sub_batch_interleaving": ("sub_batch_interleaving",),
    "nodes[].cpu_mem.mem_size": ("cpu_mem_gib",), "nodes[].cpu_mem.mem_bw": ("cpu_mem_bw",),
    "nodes[].cpu_mem.pim_config": ("pim_device",), "nodes[].power": ("power",),
    "cxl_mem": ("cxl_mem_gib",), "cxl_mem.mem_size": ("cxl_mem_gib", "cxl_devices"), "cxl_mem.mem_bw": ("cxl_mem_bw",),
    "cxl_mem.num_devices": ("cxl_devices",)}


@contextmanager
def _naming_fields(source: str):
    """Re-raise an error in the cluster config a scenario built at the fields the user set, not the key of
    the config built from them; one in simulate's or the engine's settings (attn_offload, latency, max_model_len)
    at the scenario's field."""
    try:
        yield
    except InputError as exc:
        if exc.source in ("settings", "engine settings") and exc.where in {f.name for f in fields(Scenario)}:
            raise type(exc)(exc.message, source, exc.where) from None
        named = BUILT_KEYS.get(re.sub(r"\[\d+\]", "[]", exc.where or ""), ()) if exc.source == BUILT_CLUSTER else ()
        if not named:
            raise
        raise type(exc)(f"{exc.message} (the built cluster's {exc.where})", source, ", ".join(named)) from None


def choices() -> dict[str, tuple[str, ...]]:
    """The values each text field with a fixed set of them takes (policies by their registered names, so one
    a user registers counts)."""
    return {"latency": ("auto", "profile", "analytical"), "router": tuple(ROUTERS.names()),
            "expert_gate": tuple(GATES.names()), "scheduler": tuple(SCHEDULERS.names()),
            "eviction": tuple(EVICTION.names()), "kv_transfer": KV_TRANSFERS,
            "weights_on": WEIGHT_TIERS, "prefix_storage": ("", "cpu", "cxl"),
            "prefix_sharing": ("instance", "node", "cluster"), "arrival": ("poisson", "gamma")}


def _refuse_unknown(cls: type, names: Any, source: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(names) - known)
    if unknown:
        hint = closest(unknown[0], known)
        if "nodes" in unknown:   # a cluster config given where a scenario is read
            hint_text = ("; it is a cluster config: run it with `llmss run CLUSTER`, or name it in a scenario's "
                         "cluster_config")
        else:
            hint_text = f" (did you mean {hint!r}?)" if hint else ""
        raise InputError(f"unknown scenario key(s) {unknown}{hint_text}", source, unknown[0])


NO_CXL = "Nothing is placed on CXL memory (neither weights on nor prefix storage is cxl)"
# A field -> (the fields whose values decide whether it has an effect, why it has none given the setting and
# whether a cluster file sets the cluster; "" where it has one). The setting holds the scenario's values and three
# facts: "moe", whether the model has experts (None: unknown), "no_power", why the hardware has no power model, and
# "profiled", what measured profile covers every instance ("" where one lacks it: Scenario.profiled).
# The explorer greys such a control out, saying why; a sweep over such a field says its points run the same.
INERT: dict[str, tuple[tuple[str, ...], Callable[[dict, bool], str]]] = {
    "arrival_cv": (("arrival",), lambda v, _file: "" if v["arrival"] == "gamma" else
                   "Only gamma arrivals have a burstiness"),
    "prefix_sharing": (("prefix_storage",), lambda v, _file: "" if v["prefix_storage"] else
                       "No lower prefix tier to share (prefix storage: none)"),
    "kv_transfer": (("prefill_instances",), lambda v, file: "" if file or v["prefill_instances"] > 0 else
                    "No prefill/decode split, so no KV cache is handed over (prefill replicas: 0)"),
    "router": (("instances", "dp", "prefill_instances"),   # it also picks among a replica's DP members
               lambda v, file: "" if file or v["dp"] > 1 or v["prefill_instances"] > 1
               or v["instances"] - v["prefill_instances"] > 1 else
               "One replica takes every request (one of each with a prefill/decode split): nothing to route"),
    **dict.fromkeys(("cxl_mem_gib", "cxl_mem_bw", "cxl_devices"),
                    (("weights_on", "prefix_storage"), lambda v, _file: "" if "cxl" in (v["weights_on"],
                                                                              v["prefix_storage"]) else NO_CXL)),
    "expert_gate": (("model",), lambda v, file: "" if file or v["moe"] is not False else
                    "The model has no mixture-of-experts layers"),
    "gate_skew": (("model", "expert_gate"), lambda v, file: INERT["expert_gate"][1](v, file) or (
        "" if v["expert_gate"] == "zipf" else "Only the zipf gate is skewed")),
    # the config's npu_mem.mem_bw times only the reductions of TP, and of EP over a MoE model's experts
    "npu_mem_bw": (("model", "tp", "ep"), lambda v, _file: "" if v["tp"] > 1 or v["ep"] > 1 and v["moe"] is not False
                   else "No effect at TP 1 and EP 1 (or EP on a dense model): there are no reductions."),
    "power": (("hardware",), lambda v, _file: v["no_power"] and f"No power model: {v['no_power']}"),
    # a fit shapes the analytical model; 'auto' runs a measured profile where one exists, unless a what-if scales the
    # spec. Under 'profile' a file named stays live: the run refuses it, naming this control, to be cleared here
    "efficiency_file": (("latency", "hardware", "model", "tp", "what_if_mem_bw", "what_if_flops", "efficiency_file"),
                        lambda v, _file: "" if v["latency"] == "analytical" or (v["latency"] == "profile" and
                                                                                 v["efficiency_file"]) else
                        "No effect: latency 'profile' runs the measured profile" if v["latency"] == "profile" else
                        "" if v["what_if_mem_bw"] != 1 or v["what_if_flops"] != 1 or not v["profiled"] else
                        f"No effect: latency 'auto' runs the measured profile {v['profiled']} (pick the analytical "
                        "model to use a fit)"),
    # the CPU memory's size counts for what is placed there, the DRAM's power and the PIM channels it holds; its
    # bandwidth only for what is read from there
    "cpu_mem_gib": (("weights_on", "prefix_storage", "power", "attn_offload"),
                    lambda v, _file: "" if "cpu" in (v["weights_on"], v["prefix_storage"]) or v["power"]
                    or v["attn_offload"] else "Nothing is placed on CPU memory (neither weights on nor prefix "
                                              "storage is cpu), and neither power nor PIM offload is on"),
    "cpu_mem_bw": (("weights_on", "prefix_storage"),
                   lambda v, _file: "" if "cpu" in (v["weights_on"], v["prefix_storage"]) else
                   "Nothing is read from CPU memory (neither weights on nor prefix storage is cpu)"),
}


@dataclass(frozen=True)
class Scenario:
    """Every input of one run as plain values: hardware and model, cluster shape, engine settings by vLLM's
    names, policies, memory tiers and power, and a trace or a workload generator. Plain values, so the explorer
    can save it as JSON (``save``/``load``), a sweep can grid over any field, and ``run()`` gives the Results."""

    # hardware and model
    hardware: str = "RTXPRO6000"
    model: str = "meta-llama/Llama-3.1-8B"
    npu_mem_gib: float = 0.0          # 0: the hardware's (a reference cluster config's, else its spec's)
    npu_mem_bw: float = 0.0           # GB/s; 0: the hardware's
    cluster_config: str = ""          # a cluster JSON (path, or a stem from the catalog); overrides the shape
    latency: str = "auto"             # auto (a profile where one exists), profile or analytical
    what_if_mem_bw: float = 1.0       # analytical model: memory bandwidth x this
    what_if_flops: float = 1.0        # analytical model: peak FLOP/s x this
    efficiency_file: str = ""         # analytical model: fitted efficiency curves; "": profiles/efficiency.yaml
    # cluster shape
    instances: int = 1                # engine replicas behind the router
    dp: int = 1                       # data-parallel members per replica (one dp_group)
    tp: int = 1
    pp: int = 1
    ep: int = 1                       # 1: as the config format defaults it (EP = TP for a mixture-of-experts model)
    prefill_instances: int = 0        # > 0: the first N replicas prefill, the rest decode
    # engine (vLLM names)
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    block_size: int = 16
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    async_scheduling: bool = False    # vLLM >= 0.14 turns it on by default
    gpu_memory_utilization: float = 0.9
    num_gpu_blocks: int = 0           # KV blocks per instance; 0: sized from the memory (vLLM's override otherwise)
    max_model_len: int = 0            # 0: the model's
    long_prefill_token_threshold: int = 0   # most prompt tokens a step gives one request; 0: no cap
    reserve_full_isl: bool = True     # admit a request only when its whole sequence fits in free blocks
    # policies
    scheduler: str = "vllm_v1"        # "static": a new batch only when the last is done (before continuous batching)
    router: str = "load_score"
    expert_gate: str = "balanced"
    gate_skew: float = 1.0
    eviction: str = "lru"
    kv_transfer: str = "layer"
    # memory tiers, PIM, power
    weights_on: str = "npu"           # npu, cpu or cxl (blocks spread over the CXL devices, edges on the first)
    cpu_mem_gib: float = 512.0
    cpu_mem_bw: float = 256.0
    cxl_mem_gib: float = 0.0          # 0: no CXL memory
    cxl_mem_bw: float = 64.0          # GB/s per device
    cxl_devices: int = 1
    prefix_storage: str = ""          # "", "cpu" or "cxl"
    prefix_sharing: str = "instance"
    pim_device: str = ""              # a PIM INI stem; with attn_offload, decode attention runs there
    attn_offload: bool = False
    sub_batch_interleaving: bool = False
    power: bool = False               # use the power section a reference config gives this hardware
    # workload: a trace, or a generator
    trace: str = ""                   # a JSONL trace (path, or a stem from the catalog)
    num_requests: int = 100
    rate: float = 10.0
    input_len: str = "sharegpt"
    output_len: str = "sharegpt"
    arrival: str = "poisson"
    arrival_cv: float = 1.0           # gamma arrivals' coefficient of variation: 0 regular, 1 Poisson-like, > 1 bursty
    shared_prefix_len: int = 0
    num_prefixes: int = 4             # distinct shared prefixes the prompts start with
    seed: int = 0
    # results
    bin_s: float = 1.0                # width of the time series' and power's bins, s (a day at 1 s: 86,400 rows)

    def __new__(cls, *args: Any, **kwargs: Any) -> Scenario:
        """A mistyped field is named with the closest one, rather than by Python's bare TypeError."""
        _refuse_unknown(cls, kwargs, "Scenario")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        store_plain(self)

    @property
    def source(self) -> str:
        """What errors found when the scenario runs name: the file it was loaded from, else "scenario". Kept
        beside the fields, not among them, so equality, hashing and what ``save`` writes ignore it; a
        ``replace``d copy no longer says what the file says and names no file."""
        return self.__dict__.get("_source", "scenario")

    def named(self, source: str) -> Scenario:
        """A copy whose errors name ``source`` (the explorer's controls showing a scenario file)."""
        copy = replace(self)
        object.__setattr__(copy, "_source", source)
        return copy

    # ---- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field by name, as ``save`` writes it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "scenario") -> Scenario:
        """Check names and types, so a typo in a saved scenario is named rather than ignored."""
        if not isinstance(data, dict):
            raise InputError("a scenario must be a JSON object", source)
        _refuse_unknown(cls, data, source)
        default = cls()
        clean = {}
        for k, v in data.items():
            want = type(getattr(default, k))
            v = plain(v)
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            elif want is int and isinstance(v, float) and as_whole(v) is not None:
                v = int(v)   # 2.0 is the whole number 2, as the config readers take it
            clean[k] = v
        scenario = cls(**clean)
        scenario.validate(source)
        return scenario.named(source)

    def validate(self, source: str | None = None) -> None:
        """Check the kind of every field and the range of every number, so a bad value (a negative seed, a NaN
        rate, a text where a number goes) is named here instead of surfacing as a bare error deep inside a run."""
        source = source or self.source
        default = type(self)()
        for f in fields(self):
            v, want = getattr(self, f.name), type(getattr(default, f.name))
            if type(v) is not want and not (want is float and type(v) is int):
                raise InputError(f"must be {KINDS[want]}, got {v!r}", source, f.name)
        for key, (low, inclusive) in FIELD_RANGES.items():
            v = getattr(self, key)
            whole = isinstance(getattr(default, key), int)
            kind = "a whole number" if whole else "a finite number"
            rule = f">= {low}" if inclusive else f"> {low}"
            if not math.isfinite(v) or v < low or (v == low and not inclusive):
                raise InputError(f"must be {kind} {rule}, got {v!r}", source, key)
        for key, high in FIELD_MAXIMA.items():
            if getattr(self, key) > high:
                raise InputError(f"must be <= {high} (one node; write a cluster_config for more), got "
                                 f"{getattr(self, key)!r}", source, key)
        for key in ("tp", "pp", "ep"):
            if getattr(self, key) > PARALLEL_MAX:
                raise InputError(f"must be <= {PARALLEL_MAX}, got {getattr(self, key):.6g}", source, key)
        for f in fields(self):   # a sweep's coordinate, a results attr: 64-bit numbers
            if type(v := getattr(self, f.name)) is int and abs(v) > WHOLE_MAX:
                raise InputError(f"must be a whole number within +-(2**63 - 1), got {v:.6g}", source, f.name)
        if self.instances * self.dp > FIELD_MAXIMA["instances"]:   # each replica holds dp engines
            raise InputError(f"{self.instances} replicas x {self.dp} DP members = {self.instances * self.dp} engines, "
                             f"more than {FIELD_MAXIMA['instances']} (one node; write a cluster_config for more)",
                             source, "instances, dp")
        for key, options in choices().items():
            v = getattr(self, key)
            if v not in options:
                hint = closest(v, options)
                raise InputError(f"{v!r} is not one of {', '.join(repr(o) for o in options)}"
                                 + (f" (did you mean {hint!r}?)" if hint else ""), source, key)
        for key in ("cluster_config", "trace", "pim_device", "efficiency_file"):
            if getattr(self, key) and not getattr(self, key).strip():
                raise InputError("is blank; leave it empty for none", source, key)
        self._check_efficiency(source)
        for key in ("input_len", "output_len"):
            try:
                LengthDist.parse(getattr(self, key), key.split("_")[0])
            except InputError as exc:
                raise InputError(exc.message, source, key) from None
        if not MIN_BIN_S <= self.bin_s <= MAX_BIN_S:   # NaN is in no range
            raise InputError(f"must be a number of seconds in [{MIN_BIN_S}, {MAX_BIN_S}], got {self.bin_s!r}", source,
                             "bin_s")
        if self.gpu_memory_utilization > 1:
            raise InputError(f"must be in (0, 1], got {self.gpu_memory_utilization!r}", source,
                             "gpu_memory_utilization")
        if not self.trace and self.num_requests < 1:
            raise InputError("must be >= 1 for a generated workload (0 means the whole trace, with a trace)",
                             source, "num_requests")
        if not self.trace:   # the generator's limits (at most 10M requests, a gamma CV up to 10, 30 days)
            try:
                check_generator(self.num_requests, self.rate, self.arrival, self.arrival_cv, self.seed,
                                self.shared_prefix_len, self.num_prefixes)
            except InputError as exc:
                raise InputError(exc.message, source, GENERATOR_ARGS.get(exc.where or "", exc.where)) from None
        try:   # the engine's rules across fields (a token budget below max_num_seqs), named here, not at the run
            EngineConfig(**self.engine())
        except InputError as exc:
            raise InputError(exc.message, source, exc.where) from None

    def _check_efficiency(self, source: str) -> None:
        """A missing or unreadable efficiency file is named here, at the scenario's key, before any run; an error
        inside the file names that file and its key. Read once per change of the file (it is cached)."""
        if not self.efficiency_file:
            return
        if self.latency == "profile":
            raise InputError("efficiency curves shape the analytical model; a measured profile (latency 'profile') "
                             "never reads them", source, "efficiency_file")
        path = Path(self.efficiency_file.strip())
        try:
            efficiency(path)
        except InputError as exc:
            if exc.where is not None:   # a key or line of the file itself
                raise
            raise InputError(f"{exc.message}: {str(path)!r}", source, "efficiency_file") from None

    def save(self, path: str | Path) -> Path:
        """Write the scenario as JSON, atomically; not over a file a run of it reads (its trace, say), nor inside
        the reference data."""
        self.refuse_to_replace_an_input(as_path(path), "path", what="scenario")
        refuse_in_reference(path, protected_root(), "path")
        return _atomic_write(as_path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """A scenario saved as JSON; errors name the file and the key or line."""
        p = Path(path)
        data = read_json(p)
        if isinstance(data, dict):   # relative files are the scenario's neighbours, wherever it is run from
            for key in ("cluster_config", "trace", "efficiency_file"):
                v = data.get(key)
                v = v.strip() if isinstance(v, str) else ""   # spaces around a name (a paste) are not part of it
                if v and not Path(v).is_absolute() and (p.parent / v).is_file():
                    data[key] = str(p.parent / v)
        scenario = cls.from_dict(data, str(p))
        default = cls()
        for key, why in scenario.ignored().items():   # the explorer saves every field, so not an error
            if key in data and getattr(scenario, key) != getattr(default, key):
                log.warning("%s: %s: %r is not used: %s", p, key, getattr(scenario, key), why)
        return scenario

    def ignored(self, reference_dir: str | Path | None = None) -> dict[str, str]:
        """The fields this scenario does not use, each with the reason: the shape with a cluster file (and the
        engine settings every instance of the file sets for itself), the generator with a trace. A sweep over
        one of them would run the same point again and again."""
        out = {}
        if self.cluster_config:
            out.update({k: f"cluster_config {self.cluster_config!r} sets the cluster" for k in SHAPE_FIELDS})
            for k, (n, total) in self.set_by_file(reference_dir).items():
                if n == total:
                    out[k] = f"every instance of cluster_config {self.cluster_config!r} sets its own {k}"
        if self.trace:
            out.update({k: f"trace {self.trace!r} gives the workload" for k in GENERATOR_FIELDS})
        return out

    def check_names(self, reference_dir: str | Path | None = None, source: str | None = None) -> None:
        """Refuse a model without a config or a hardware with neither a profile nor a spec, as a run would,
        without running: a sweep checks every name of its grid before its first point. Nothing to check
        with a cluster file (its loader names its own), or without a reference folder (the run says so)."""
        if self.cluster_config:
            return
        source = source or self.source
        try:
            root = resolve_reference_dir(reference_dir)
        except LlmssError:
            return
        try:
            ReferenceLayout(root).model_config(self.model)
        except InputError as exc:
            raise InputError(exc.message, source, "model") from None
        if self.hardware not in scan(root).hardware:
            try:
                find_spec(self.hardware)
            except UnknownHardware as exc:
                raise InputError(exc.message, source, "hardware") from None

    def inert(self, reference_dir: str | Path | None = None) -> dict[str, str]:
        """The fields that have no effect given the others' values (:data:`INERT`), each with why."""
        setting = {**self.to_dict(), "moe": has_experts(self.model, reference_dir),
                   "no_power": no_power_model(self.hardware, reference_dir), "profiled": self.profiled(reference_dir)}
        return {k: why for k, (_, rule) in INERT.items() if (why := rule(setting, bool(self.cluster_config)))}

    def profiled(self, reference_dir: str | Path | None = None) -> str:
        """The measured profile that covers every instance at its TP, as the reference folder's catalog lists them
        (no profile is read): "of Llama-3.1-8B on RTXPRO6000 at TP1", "of every instance of the cluster file"; ""
        when an instance has none (latency 'auto' runs the analytical model there) or a cluster file cannot be
        read (its run names the error)."""
        hardware = scan(resolve_reference_dir(reference_dir)).hardware
        if self.cluster_config:
            try:
                insts = [(i.hardware, i.model_name, i.tp_size) for i in self.cluster(reference_dir).instances]
            except LlmssError:
                return ""
        else:
            insts = [(self.hardware, self.model, self.tp)]
        if not all(hw in hardware and tp in hardware[hw].models.get(model, ()) for hw, model, tp in insts):
            return ""
        return ("of every instance of the cluster file" if self.cluster_config else
                f"of {self.model.rsplit('/', 1)[-1]} on {self.hardware} at TP{self.tp}")

    def set_by_file(self, reference_dir: str | Path | None = None) -> dict[str, tuple[int, int]]:
        """The engine fields the cluster file sets per instance, which win over the scenario's, as in
        LLMServingSim: field -> (instances that set it, instances). Empty without a file, or for one that does
        not load (the run names its error)."""
        if not self.cluster_config:
            return {}
        try:
            insts = self.cluster(reference_dir).instances
        except LlmssError:
            return {}
        counts: dict[str, int] = {}
        for inst in insts:
            for k in inst.own_engine_keys & set(ENGINE_FIELDS):
                counts[k] = counts.get(k, 0) + 1
        return {k: (n, len(insts)) for k, n in counts.items()}

    def replace(self, **changes: Any) -> Scenario:
        """A copy with ``changes`` applied (the scenario is frozen, so a sweep's points never share state)."""
        return replace(self, **changes)

    # ---- building the inputs ---------------------------------------------------------------------
    def cluster_json(self, reference_dir: str | Path | None = None) -> dict[str, Any]:
        """The cluster in LLMServingSim's JSON format, built from the shape fields."""
        src = self.source
        self.validate(src)   # kinds and ranges (instances, dp, tp, pp, ep and cxl_devices >= 1)
        if self.prefill_instances < 0 or 0 < self.instances <= self.prefill_instances:
            raise InputError(f"must leave at least one decode replica (0 <= value < instances = {self.instances})",
                             src, "prefill_instances")
        if self.weights_on not in WEIGHT_TIERS:
            raise InputError(f"must be one of {WEIGHT_TIERS}, got {self.weights_on!r}", src, "weights_on")
        if self.weights_on == "cxl" and self.cxl_mem_gib <= 0:
            raise InputError("weights on CXL need CXL memory (cxl_mem_gib > 0)", src, "weights_on")
        placement = ({"default": {"weights": "cpu"}} if self.weights_on == "cpu" else
                     self._cxl_placement(reference_dir) if self.weights_on == "cxl" else None)
        mem_gib, mem_bw = self.npu_memory(reference_dir)
        insts = []
        for r in range(self.instances):
            for _ in range(self.dp):
                inst: dict[str, Any] = {
                    "model_name": self.model, "hardware": self.hardware,
                    "npu_mem": {"mem_size": mem_gib, "mem_bw": mem_bw, "mem_latency": 0},
                    "tp_size": self.tp, "pp_size": self.pp,
                }
                if self.ep > 1:
                    inst["ep_size"] = self.ep
                if self.dp > 1:
                    inst["dp_group"] = f"replica{r}"
                if self.prefill_instances:
                    inst["pd_type"] = "prefill" if r < self.prefill_instances else "decode"
                if placement:
                    inst["placement"] = placement
                insts.append(inst)
        cpu: dict[str, Any] = {"mem_size": self.cpu_mem_gib, "mem_bw": self.cpu_mem_bw, "mem_latency": 0}
        if self.pim_device:
            cpu["pim_config"] = self.pim_device
        node: dict[str, Any] = {"num_instances": len(insts), "cpu_mem": cpu, "instances": insts}
        if self.power:
            missing = no_power_model(self.hardware, reference_dir)
            if missing:
                raise InputError(missing, src, "power")
            node["power"] = scan(resolve_reference_dir(reference_dir)).hardware[self.hardware].power
        out: dict[str, Any] = {"num_nodes": 1, "link_bw": 16, "link_latency": 20000, "nodes": [node]}
        if self.cxl_mem_gib > 0:
            out["cxl_mem"] = {"mem_size": self.cxl_mem_gib, "mem_bw": self.cxl_mem_bw, "mem_latency": 250,
                              "num_devices": self.cxl_devices}
        return out

    def npu_memory(self, reference_dir: str | Path | None = None) -> tuple[float, float]:
        """The NPU memory (GiB) and its bandwidth (GB/s) a run uses: the scenario's where set (> 0), else the
        hardware's, as a reference cluster config gives it (LLMServingSim's numbers), else as its spec does.
        A hardware known to neither is left to the run to name."""
        if self.npu_mem_gib > 0 and self.npu_mem_bw > 0:
            return self.npu_mem_gib, self.npu_mem_bw
        try:
            hw = scan(resolve_reference_dir(reference_dir)).hardware.get(self.hardware)
        except LlmssError:   # no reference data: the run says so
            hw = None
        if hw is not None and hw.mem_size:
            own = (hw.mem_size, hw.mem_bw)
        else:
            try:
                spec = find_spec(self.hardware)
                own = (spec.memory_gib, spec.memory_bw_gbs)
            except InputError:
                own = (self.npu_mem_gib or 1.0, self.npu_mem_bw or 1.0)   # the run names the unknown hardware
        return self.npu_mem_gib or own[0], self.npu_mem_bw or own[1]

    def _cxl_placement(self, reference_dir: str | Path | None) -> dict[str, Any]:
        """Weights on the CXL devices in turn: contiguous runs of blocks per device (the edge layers on the
        first), so each holds its share and all stream at once."""
        if self.cxl_devices == 1:
            return {"default": {"weights": "cxl:0"}}
        try:
            layout = ReferenceLayout(resolve_reference_dir(reference_dir))
            layers = ModelSpec.from_hf_config(layout.model_config(self.model), self.model).num_layers
        except InputError:   # an unknown model: the run names it where it reads the config
            return {"default": {"weights": "cxl:0"}}
        n = min(self.cxl_devices, layers)
        cuts = [k * layers // n for k in range(n + 1)]
        return {"default": {"weights": "cxl:0"},
                "blocks": [{"blocks": f"{cuts[k]}-{cuts[k + 1] - 1}", "weights": f"cxl:{k}"} for k in range(1, n)]}

    @permission_named()
    def cluster(self, reference_dir: str | Path | None = None) -> ClusterSpec:
        """The ClusterSpec to run: ``cluster_config`` read as is, else the one the shape fields build."""
        if self.cluster_config:
            return load_cluster(self._find(self.cluster_config, reference_dir, "cluster_config"))
        with _naming_fields(self.source):
            return cluster_from_dict(self.cluster_json(reference_dir), BUILT_CLUSTER)

    def workload(self, reference_dir: str | Path | None = None) -> Workload:
        """The requests: the first ``num_requests`` of ``trace`` (0: all), else the seeded generator's."""
        self.validate()
        if self.trace:
            return load_trace(self._find(self.trace, reference_dir, "trace"), self.num_requests or None)
        try:
            return synthetic(self.num_requests, self.rate, self.input_len, self.output_len, self.arrival,
                             cv=self.arrival_cv, seed=self.seed, shared_prefix_len=self.shared_prefix_len,
                             num_prefixes=self.num_prefixes)
        except InputError as exc:   # name the scenario's key, not the generator's argument
            raise InputError(exc.message, self.source, GENERATOR_ARGS.get(exc.where or "", exc.where)) from None

    def input_files(self, reference_dir: str | Path | None = None) -> dict[str, Path]:
        """The files a run of this scenario reads, by the key that names them (a cluster file's PIM device files
        by that file and key): an output may not replace one. A name that finds no file is left to the run."""
        out: dict[str, Path] = {}
        names = {key: name for key in ("cluster_config", "trace", "efficiency_file")
                 if isinstance(name := getattr(self, key), str) and name.strip()}   # not a name: left to validate
        for key in names.keys() - {"efficiency_file"}:
            try:
                out[key] = self._find(names[key], reference_dir, key)
            except LlmssError:
                pass
        if "efficiency_file" in names:
            out["efficiency_file"] = Path(names["efficiency_file"].strip())
        try:
            self.validate()   # fields of wrong kinds build no cluster
            cluster = self.cluster(reference_dir)
        except LlmssError:
            return out
        for key, path in pim_files(cluster).items():
            out[f"cluster_config {cluster.source}: {key}" if self.cluster_config else "pim_device"] = path
        return out

    def refuse_to_replace_an_input(self, path: str | Path, key: str, reference_dir: str | Path | None = None,
                                   named_by: str | None = None, what: str = "results") -> None:
        """Refuse ``path`` as where ``what`` is written when a run of this scenario reads it (links and relative
        paths resolved): the error names the scenario (or ``named_by``, a grid) and its key that reads it."""
        refuse_to_replace(path, {f"an input of the run ({named_by or self.source}: {name})": file
                                 for name, file in self.input_files(reference_dir).items()}, key, what)

    def engine(self) -> dict[str, Any]:
        """The engine settings by vLLM's names, as ``simulate(engine=...)`` takes them (None: the engine's own)."""
        return {k: None if k in UNSET_AT_0 and getattr(self, k) == 0 else getattr(self, k) for k in ENGINE_FIELDS}

    def what_if(self) -> dict[str, float]:
        """The hardware spec multipliers that differ from 1."""
        w = {"memory_bw_gbs": self.what_if_mem_bw, "bf16_tflops": self.what_if_flops}
        return {k: v for k, v in w.items() if v != 1.0}

    def _find(self, name: str, reference_dir: str | Path | None, key: str) -> Path:
        """A path as given, or a catalog stem (``single_node_pd_instance``); spaces around it (a paste) are not
        part of the name."""
        name = name.strip()
        p = Path(name)
        if p.is_file():
            return p
        cat = scan(resolve_reference_dir(reference_dir))
        table = cat.cluster_configs if key == "cluster_config" else cat.traces
        if name in table:
            return table[name]
        if not p.is_absolute() and (cat.root / p).is_file():
            return cat.root / p
        if p.is_dir():
            raise InputError(f"{name!r} is a folder; give a {'cluster JSON' if key == 'cluster_config' else 'JSONL trace'}"
                             " file or a catalog name", self.source, key)
        raise InputError(f"no such file or catalog entry {name!r} (catalog has: {', '.join(sorted(table)) or 'none'})",
                         self.source, key)

    @permission_named()
    def run(self, reference_dir: str | Path | None = None, progress: Callable[[int], None] | None = None,
            workload: Workload | None = None, stop_when: Callable[[Any, float], bool] | None = None) -> Results:
        """Simulate the scenario (on ``workload`` if the caller has built it already); the scenario
        itself is stored in the results' attrs. ``stop_when``: as :func:`~llmss_lab.api.simulate`'s."""
        if workload is None:
            workload = self.workload(reference_dir)   # validates the scenario first
        else:
            self.validate()
        try:
            with _naming_fields(self.source):
                res = simulate(self.cluster(reference_dir), workload, self.engine(),
                               reference_dir=reference_dir, progress=progress, router=self.router,
                               expert_gate=self.expert_gate, gate_skew=self.gate_skew, kv_transfer=self.kv_transfer,
                               seed=self.seed, prefix_storage=self.prefix_storage or None,
                               prefix_sharing=self.prefix_sharing, attn_offload=self.attn_offload,
                               sub_batch_interleaving=self.sub_batch_interleaving, latency=self.latency,
                               what_if=self.what_if(), efficiency_file=self.efficiency_file.strip() or None,
                               bin_s=self.bin_s, stop_when=stop_when)
        except RunInterrupted as stop:   # the run so far is this scenario's too
            if stop.results is not None:
                self._describe(stop.results, reference_dir)
            raise
        return self._describe(res, reference_dir)

    def _describe(self, res: Results, reference_dir: str | Path | None) -> Results:
        """The scenario in the results' attrs, and why a run has no power figures."""
        res.set_attr("scenario_json", json.dumps(self.to_dict()))
        if not res.power.data_vars:   # why, for the power view's hint: the view sees the run, not the catalog
            why = (f"cluster_config {self.cluster_config!r} has no node power section" if self.cluster_config
                   else no_power_model(self.hardware, reference_dir)
                   or "power is off (tick 'power model', or set power=True)")
            res.set_attr("no_power", why)
        return res



# help() and inspect show the fields, not the catch-all (*args, **kwargs) of __new__
Scenario.__signature__ = inspect.signature(functools.partial(Scenario.__init__, None))


def has_experts(model: str, reference_dir: str | Path | None = None) -> bool | None:
    """Whether a model has mixture-of-experts layers, from its config (None if it cannot be read)."""
    return _has_experts(model, str(resolve_reference_dir(reference_dir)))


@functools.lru_cache(maxsize=64)
def _has_experts(model: str, root: str) -> bool | None:
    try:
        return ModelSpec.from_hf_config(ReferenceLayout(Path(root)).model_config(model), model).is_moe
    except LlmssError:
        return None


def no_power_model(hardware: str, reference_dir: str | Path | None = None) -> str:
    """Why a hardware has no power model ("" if it has one): the run that asks for one refuses with it, the
    explorer greys out its power box with it, and the power view of a run without power says it."""
    hw = scan(resolve_reference_dir(reference_dir)).hardware.get(hardware)
    if hw is not None and hw.power is not None:
        return ""
    return f"no reference cluster config gives {hardware!r} a power section"


def _atomic_write(path: Path, text: str) -> Path:
    if not path.parent.is_dir():
        raise InputError("output folder does not exist", path.parent)
    return write_text(path, text)
