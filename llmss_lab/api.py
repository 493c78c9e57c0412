"""``simulate(...)``: resolve the inputs, build the kernel, run it, return xarray results."""
from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import dataclass, fields
from os import PathLike
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .config.cluster import EDGE_LAYERS, ClusterSpec, InstanceSpec, load_cluster, resolve_placement
from .config.engine import MAX_KV_BLOCKS, EngineConfig
from .config.model import DTYPE_BYTES, GIB, ModelSpec
from .config.reader import plain
from .errors import InputError, RunInterrupted, UnsupportedFeature
from .files import permission_named, reachable
from .kernel import power, simulator
from .ctrl_c import ctrl_c_calls
from .kernel.moe import GATES
from .kernel.router import ROUTERS
from .kernel.tiers import CHUNK_TOKENS
from .latency.analytical import UnknownHardware, WhatIf, analytical_profile, efficiency, find_spec
from .latency.interconnect import Link
from .latency.iteration import IterationModel
from .latency.legacy import is_legacy_dir, load_legacy
from .latency.pim import PimAttention, PimDevice, load_pim_device, pim_channels
from .latency.profile import LatencyProfile, load_bundle, require_layers
from .latency.roofline import EFFICIENCY_FILE
from .provenance import git_hash
from .reference import ReferenceLayout, bench_root, resolve_reference_dir
from .results.dataset import Results, interrupted_note
from .workload import Workload, load_trace

log = logging.getLogger(__name__)

_SHORT_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "fp8": "fp8", "int8": "int8"}
# the KV block sizes vLLM accepts (its BlockSize choices, 0.9 to 0.16; its CUDA attention kernels take fewer)
VLLM_BLOCK_SIZES = (1, 8, 16, 32, 64, 128, 256)


def profile_variant(dtype: str, kv_cache_dtype: str) -> str:
    """The bundle folder for a dtype: ``bf16``, or ``bf16-kvfp8`` with an fp8 KV cache."""
    v = _SHORT_DTYPE[dtype]
    return v if kv_cache_dtype == "auto" else f"{v}-kv{kv_cache_dtype}"


def kv_cache_blocks(model: ModelSpec, inst: InstanceSpec, engine: EngineConfig, source: str, ep: int = 1,
                    offloaded: float = 0.0) -> int:
    """vLLM's sizing: (memory x utilisation - weights) / bytes per block, per rank; weights kept
    in CPU or CXL memory (``offloaded`` bytes per rank) leave their room to the KV cache."""
    if engine.num_gpu_blocks:
        return engine.num_gpu_blocks
    dtype_b = DTYPE_BYTES[engine.dtype or model.torch_dtype]
    kv_b = 1 if engine.kv_cache_dtype == "fp8" else dtype_b
    util = inst.mem_util if inst.mem_util is not None else engine.gpu_memory_utilization
    weights = model.weight_bytes_per_rank(inst.tp_size, inst.pp_size, ep, dtype_b) - offloaded
    budget = inst.npu_mem.mem_size * GIB * util - weights
    per_block = model.kv_bytes_per_token(inst.tp_size, inst.pp_size, kv_b) * engine.block_size
    blocks = int(budget // per_block)
    if blocks <= 0 < budget:   # room for KV, but not for one block of this size
        where = f"{inst.where}.block_size" if "block_size" in inst.engine_overrides else "block_size"
        raise InputError(f"one KV block of {engine.block_size} tokens takes {per_block / GIB:.2f} GiB per GPU, more "
                         f"than the {budget / GIB:.2f} GiB the weights leave for the KV cache; lower block_size",
                         source if "block_size" in inst.engine_overrides else "engine settings", where)
    if blocks <= 0:
        raise InputError(f"the weights ({weights / GIB:.2f} GiB per GPU) leave no room for a KV cache in "
                         f"{inst.npu_mem.mem_size} GiB x {util} utilisation; raise mem_size, "
                         "gpu_memory_utilization or tp_size",
                         source, f"{inst.where}.npu_mem.mem_size")
    if blocks > MAX_KV_BLOCKS:
        raise InputError(f"{blocks} KV blocks of {engine.block_size} tokens is more than the kernel tracks "
                         f"({MAX_KV_BLOCKS}); check mem_size (GiB) or raise block_size", source,
                         f"{inst.where}.npu_mem.mem_size")
    return blocks


def pads_shapes(hardware: str) -> bool:
    """vLLM on TPU runs precompiled power-of-two batch shapes; GPU runs here are eager (exact shapes)."""
    return "tpu" in hardware.lower()


LATENCY_MODES = ("auto", "profile", "analytical")
# Beyond this many requests a run takes minutes: say how long and how much memory before it starts. The costs
# per request are benchmarks/bench_scaling.py's 100,000-request row (one instance, 2-core machine): 65 s, 484 MB.
LONG_RUN = 200_000
RUN_S_PER_REQUEST = 65 / 100_000
RUN_BYTES_PER_REQUEST = 484e6 / 100_000
MAX_GATE_SKEW = 20.0   # Zipf exponent: beyond this every token already goes to one expert
MIN_BIN_S, MAX_BIN_S = 0.001, 86_400.0   # a millisecond; a day: a month-long run in 30 rows per instance


@dataclass(frozen=True)
class LatencyChoice:
    """Where step latencies come from: ``auto`` (a measured profile where one exists for the
    hardware, model and TP degree, else the analytical model), ``profile`` or ``analytical``;
    ``what_if`` scales the hardware spec (analytical only); ``efficiency_file`` the fitted curves."""

    mode: str = "auto"
    what_if: WhatIf = WhatIf()
    efficiency_file: str = ""

    @classmethod
    def of(cls, mode: str = "auto", what_if: dict | WhatIf | None = None, efficiency_file: str | Path | None = None,
           source: str = "settings") -> "LatencyChoice":
        if mode not in LATENCY_MODES:
            raise InputError(f"must be one of {LATENCY_MODES}, got {mode!r}", source, "latency")
        wi = what_if if isinstance(what_if, WhatIf) else WhatIf.from_dict(what_if, source)
        if mode == "profile" and wi.active:
            raise InputError("a hardware what-if needs the analytical model (latency 'analytical' or 'auto'): "
                             "a measured profile cannot be scaled", source, "what_if")
        if efficiency_file is not None and not isinstance(efficiency_file, (str, PathLike)):
            raise InputError(f"expected the path of an efficiency file, got {efficiency_file!r}", source,
                             "efficiency_file")
        if efficiency_file:
            if mode == "profile":
                raise InputError("efficiency curves shape the analytical model; a measured profile (latency "
                                 "'profile') never reads them", source, "efficiency_file")
            try:
                efficiency(Path(efficiency_file))   # read now: a missing or broken file is named before any run
            except InputError as exc:
                if exc.where is not None:   # a line or key of the file
                    raise
                # the file as a whole (missing, a folder): say which setting named it
                raise InputError(exc.message, exc.source, "efficiency_file") from None
        return cls(mode, wi, str(efficiency_file or ""))


def load_profile(layout: ReferenceLayout, inst: InstanceSpec, model: ModelSpec, variant: str,
                 choice: LatencyChoice = LatencyChoice(), source: str = "cluster spec") -> LatencyProfile:
    """The instance's per-rank profile: measured (current-format bundle or the paper artifact's
    format) or computed from the hardware spec, as ``choice`` says."""
    measured = choice.mode == "profile" or (
        choice.mode == "auto" and not choice.what_if.active and _profiled(layout, inst, variant))
    folder = layout.root / "profiles" / inst.hardware / inst.model_name
    if choice.mode == "profile" and not folder.is_dir() and _has_spec(inst.hardware):
        # no profile of the pair at all, but the spec could run it: the latency setting is what to change
        raise InputError(f"'profile', but {layout.root / 'profiles'} has no measured profile of {inst.model_name} "
                         f"on {inst.hardware}; 'auto' or 'analytical' run it on {inst.hardware}'s spec", "settings",
                         "latency")
    if not measured:
        if choice.mode == "auto" and not choice.what_if.active and folder.is_dir():
            _say_no_tp(folder, variant, inst.tp_size)
        elif choice.mode == "auto" and not choice.what_if.active and _has_spec(inst.hardware):
            _say_unprofiled(layout.root, inst.hardware, inst.model_name)   # else no spec either: the error says so
        return _analytical(inst, model, variant, choice, source)
    return measured_profile(layout.profile_dir(inst.hardware, inst.model_name, variant), inst.tp_size, model)


def _profiled(layout: ReferenceLayout, inst: InstanceSpec, variant: str) -> bool:
    """Whether a measured profile covers the instance at its TP. A profile that is there but damaged (no
    meta.yaml, a listed tpN/ folder gone, a tpN/ folder without its tables) counts: loading it names what is
    wrong, where the analytical model would run in its place behind a warning."""
    model_dir = layout.root / "profiles" / inst.hardware / inst.model_name
    if reachable(model_dir / variant).is_dir():
        return inst.tp_size in load_bundle(model_dir / variant).tp_degrees
    return reachable(model_dir / f"tp{inst.tp_size}").is_dir()


def _warn_long_run(n: int) -> None:
    log.warning("%s requests: expect a run of about %.0f min and %.1f GB of memory (at %.2f ms and %.0f KB per "
                "request, as measured on one instance; more instances take longer); num_requests (--num-requests) "
                "cuts a long trace", f"{n:,}", n * RUN_S_PER_REQUEST / 60, n * RUN_BYTES_PER_REQUEST / 1e9,
                RUN_S_PER_REQUEST * 1e3, RUN_BYTES_PER_REQUEST / 1e3)


def _has_spec(hardware: str) -> bool:
    try:
        find_spec(hardware)
    except InputError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _say_no_tp(folder: Path, variant: str, tp: int) -> None:
    """Once per (profile folder, variant, TP) and process: a sweep's points would each repeat it."""
    log.warning("%s has no usable %s profile at TP%d (no %s/meta.yaml with a tp%d/ folder, nor the artifact's "
                "tp%d/layers.csv); using the analytical model", folder, variant, tp, variant, tp, tp)


@functools.lru_cache(maxsize=None)
def _say_unprofiled(root: Path, hardware: str, model: str) -> None:
    """Once per (reference folder, hardware, model): no measured profile here, so the analytical model runs. A
    folder given one level off (the paper artifact for the bench's RTX PRO 6000) shows up here rather than in the
    numbers, and the other level is named when it has the profile."""
    profiled = sorted(d.name for d in (root / "profiles").glob("*") if d.is_dir())
    other = root.parent if root.name == "ispass26" else root / "ispass26"
    hint = (f"; {other} has one: give it as the reference folder to use it"
            if (other / "profiles" / hardware / model).is_dir() else "")
    log.warning("no measured profile of %s under %s (profiled there: %s); using the analytical model%s", hardware,
                root / "profiles", ", ".join(profiled) or "nothing", hint)


def measured_profile(d: Path, tp: int, model: ModelSpec) -> LatencyProfile:
    """A profile folder (a current-format bundle, or the artifact's model folder) at TP ``tp``."""
    if is_legacy_dir(d):
        return load_legacy(d, tp, model.is_moe)
    profile = load_bundle(d).at_tp(tp)
    require_layers(profile, model.is_moe, model.qk_norm)
    if model.is_moe and profile.moe is None:
        profile.moe = load_bundle(d).at_tp(1).moe   # MoE blocks are profiled at TP=1 only
        if profile.moe is None:
            raise InputError("mixture-of-experts model but the profile has no moe.csv", d, "tp1/moe.csv")
    return profile


def _analytical(inst: InstanceSpec, model: ModelSpec, variant: str, choice: LatencyChoice,
                source: str = "cluster spec") -> LatencyProfile:
    if variant not in ("bf16", "fp16"):
        raise UnsupportedFeature(f"the analytical latency model covers 16-bit weights and KV cache, not {variant!r}; "
                                 "use a measured profile", source, f"{inst.where}.dtype")
    try:
        spec = find_spec(inst.hardware)
    except UnknownHardware as e:   # the config's fault: say where, then what exists (a broken spec names its file)
        raise InputError(e.message, source, f"{inst.where}.hardware") from None
    spec = choice.what_if.apply(spec)
    eff_path = Path(choice.efficiency_file) if choice.efficiency_file else EFFICIENCY_FILE
    note = "; ".join(x for x in (choice.what_if.label(), f"fit {eff_path.name}") if x)
    return analytical_profile(model, spec, inst.tp_size, efficiency(eff_path), note=note)


def weight_placement(cluster: ClusterSpec, inst: InstanceSpec, model: ModelSpec, ep: int, dtype_b: int,
                     node: int) -> tuple[float, dict[str, float]]:
    """Weights kept off the NPU: (bytes per rank offloaded, bytes each tier streams per step)."""
    placement = inst.features.get("placement")
    if not placement:
        return 0.0, {}
    num_cxl = cluster.cxl_mem.num_devices if cluster.cxl_mem else 0
    where = resolve_placement(placement, model.num_layers, num_cxl, cluster.source, inst.where)
    parts = model.weight_parts(inst.tp_size, ep, dtype_b)
    per_rank: dict[str, float] = {}
    for tier in where["blocks"]:
        per_rank[tier] = per_rank.get(tier, 0.0) + parts["block"]
    for edge in EDGE_LAYERS:
        per_rank[where[edge]] = per_rank.get(where[edge], 0.0) + parts[edge]
    per_rank.pop("npu", None)
    if per_rank and inst.pp_size > 1:
        raise UnsupportedFeature("weights outside NPU memory with pipeline parallelism are not modelled",
                                 cluster.source, f"{inst.where}.placement")
    stream = {(t if t != "cpu" else f"cpu:{node}"): b * inst.tp_size for t, b in per_rank.items()}
    for tier, b in stream.items():   # the whole instance's share of the weights must fit the tier
        if tier.startswith("cxl"):
            cxl = cluster.cxl_mem
            cap, key = cxl.mem_size * GIB / cxl.num_devices, "cxl_mem.mem_size"
            what = (f"its {cap / GIB:g} GiB" if cxl.num_devices == 1 else
                    f"its {cap / GIB:g} GiB ({cxl.mem_size:g} GiB shared by {cxl.num_devices} devices)")
        else:
            cap, key = cluster.nodes[node].cpu_mem.bytes, f"nodes[{node}].cpu_mem.mem_size"
            what = f"its {cap / GIB:g} GiB"
        if b > cap:
            raise InputError(f"the weights {inst.where} places in {tier} ({b / GIB:.2f} GiB) do not fit {what}",
                             cluster.source, key)
    return sum(per_rank.values()), stream


def pim_for(cluster: ClusterSpec, inst: InstanceSpec, node: int, model: ModelSpec, layout: ReferenceLayout,
            attn_offload: bool, sub_batches: bool) -> tuple[PimAttention | None, bool]:
    """The PIM attention model of an instance that offloads decode attention (else None), and
    whether it interleaves two sub-batches."""
    feats = inst.features
    offload = bool(feats.get("enable_attn_offloading", attn_offload))
    sbi = bool(feats.get("enable_sub_batch_interleaving", sub_batches))
    src = cluster.source
    if sbi and not offload:   # blame whichever asked for the interleaving: the file's key or the run option
        if "enable_sub_batch_interleaving" in feats:
            raise InputError("sub-batch interleaving needs attention offloading", src,
                             f"{inst.where}.enable_sub_batch_interleaving")
        raise InputError(f"needs attention offloading (attn_offload), which {inst.where} of {src} does not turn on",
                         "settings", "sub_batch_interleaving")
    spec = cluster.nodes[node]
    if not offload:
        if spec.pim_config:
            pim_device(cluster, node, layout)    # a device named but unused is still read: a typo shows now
        return None, False
    if not spec.pim_config:
        if "enable_attn_offloading" in feats:
            raise InputError("attention offloading needs a PIM device (cpu_mem.pim_config) on the node", src,
                             f"nodes[{node}].cpu_mem.pim_config")
        raise InputError(f"needs a PIM device, and {src} gives node {node} none (nodes[{node}].cpu_mem.pim_config)",
                         "settings", "attn_offload")
    if inst.pp_size > 1 or inst.dp_group is not None or model.is_moe:
        raise UnsupportedFeature("PIM attention offload is modelled for dense models without pipeline or "
                                 "data parallelism", src, f"{inst.where}.enable_attn_offloading")
    device = pim_device(cluster, node, layout)
    channels = pim_channels(spec.cpu_mem.mem_size, device)
    return PimAttention(device, channels, model.num_heads // inst.tp_size, model.kv_heads_per_rank(inst.tp_size),
                        model.head_dim), sbi


def _pim_name(cluster: ClusterSpec, node: int) -> Path:
    """What a node's ``cpu_mem.pim_config`` names: a device name, or a path, which is relative to the cluster
    file's folder."""
    name = Path(cluster.nodes[node].pim_config or "")
    if (name.suffix == ".ini" or name.parent != Path(".")) and not name.is_absolute() and Path(cluster.source).is_file():
        return Path(cluster.source).parent / name
    return name


def pim_files(cluster: ClusterSpec) -> dict[str, Path]:
    """The PIM device files the cluster's nodes name (not the devices named by name), by their key: a run reads
    them, so an output may not replace them."""
    return {f"nodes[{i}].cpu_mem.pim_config": name for i in range(len(cluster.nodes))
            if (name := _pim_name(cluster, i)).suffix == ".ini"}


def run_inputs(cluster: ClusterSpec, workload: Workload, efficiency_file: str) -> dict[str, str]:
    """The files a run reads (its cluster config, trace, efficiency fit and PIM device files), by the key that
    names them, as absolute paths: recorded with its results, which may then not be saved over one of them."""
    files = {"cluster_config": cluster.source, "trace": workload.name if workload.lines is not None else "",
             "efficiency_file": efficiency_file, **pim_files(cluster)}
    return {key: os.path.abspath(path) for key, path in files.items() if path and Path(path).is_file()}


def pim_device(cluster: ClusterSpec, node: int, layout: ReferenceLayout) -> PimDevice:
    """The PIM device a node's ``cpu_mem.pim_config`` names: a device name, or an INI path relative to
    the cluster file."""
    src = cluster.source
    key, name = f"nodes[{node}].cpu_mem.pim_config", _pim_name(cluster, node)
    if name.suffix == ".ini" and not name.is_file():
        raise InputError(f"no PIM device file {name}", src, key)
    if name.parent != Path(".") and name.suffix != ".ini":   # any file would be read as a device and fail inside
        raise InputError(f"names {name}, which is not a PIM device: give a device's name or its .ini file", src, key)
    try:
        return load_pim_device(name, layout.pim_dirs())
    except InputError as e:
        if e.where != "pim_config":    # a problem inside the device file: that file and line say it best
            raise
        raise InputError(e.message, src, key) from None


def build_instance(cluster: ClusterSpec, inst: InstanceSpec, engine: EngineConfig, layout: ReferenceLayout,
                   node: int = 0, expert_gate: str = "balanced", gate_skew: float = 1.0,
                   seed: int = 0, ep_link: Link | None = None, attn_offload: bool = False,
                   sub_batches: bool = False, latency: LatencyChoice = LatencyChoice()) -> simulator.InstanceSetup:
    src = cluster.source
    try:
        config = layout.model_config(inst.model_name)
    except InputError as e:     # the cluster file names the model: point there, then say where we looked
        raise InputError(e.message, src, f"{inst.where}.model_name") from None
    model = ModelSpec.from_hf_config(config, inst.model_name)
    log.info("%s: model config %s", inst.where, config)
    eng = engine.with_overrides(inst.engine_overrides, src,
                                lambda k: f"{inst.where}.{k}" if k in inst.engine_overrides else k)
    dtype = eng.dtype or model.torch_dtype
    if dtype not in _SHORT_DTYPE:
        where = f"{inst.where}.dtype" if "dtype" in inst.engine_overrides else "dtype"
        raise InputError(f"unsupported dtype {dtype!r}", src, where)
    model.check_parallelism(inst.tp_size, inst.pp_size, src, inst.where)
    ep = inst.ep_size or (inst.tp_size if model.is_moe else 1)
    if model.is_moe and model.num_experts % ep:
        raise InputError(f"ep_size {ep} does not divide the model's {model.num_experts} experts", src,
                         f"{inst.where}.ep_size")
    if not model.is_moe and inst.ep_size not in (None, 1):
        raise InputError(f"ep_size {inst.ep_size} given for a dense model", src, f"{inst.where}.ep_size")
    if inst.dp_group is None and ep > inst.tp_size:
        raise InputError(f"ep_size {ep} exceeds tp_size {inst.tp_size}; expert parallelism wider than one "
                         "instance needs a dp_group", src, f"{inst.where}.ep_size")
    profile = load_profile(layout, inst, model, profile_variant(dtype, eng.kv_cache_dtype), latency, src)
    intra = Link(*cluster.link(0))
    pim, sbi = pim_for(cluster, inst, node, model, layout, attn_offload, sub_batches)
    latency = IterationModel(profile, model, inst.tp_size, intra, inst.npu_mem.mem_bw, pp=inst.pp_size,
                             ep_link=ep_link or intra, pad_shapes=pads_shapes(inst.hardware), pim=pim,
                             sub_batches=sbi)
    if eng.max_model_len and eng.max_model_len > model.max_position_embeddings:   # vLLM refuses it as well
        own = "max_model_len" in inst.engine_overrides
        raise InputError(f"{eng.max_model_len} is longer than {inst.model_name} allows "
                         f"({model.max_position_embeddings} tokens)", src if own else "engine settings",
                         f"{inst.where}.max_model_len" if own else "max_model_len")
    max_len = eng.max_model_len or model.max_position_embeddings
    offloaded, stream = weight_placement(cluster, inst, model, ep, DTYPE_BYTES[dtype], node)
    blocks = kv_cache_blocks(model, inst, eng, src, ep, offloaded)
    kv_b = 1 if eng.kv_cache_dtype == "fp8" else DTYPE_BYTES[dtype]
    kv_tok = model.kv_bytes_per_token(inst.tp_size, inst.pp_size, kv_b)
    resident = (model.weight_bytes_per_rank(inst.tp_size, inst.pp_size, ep, DTYPE_BYTES[dtype]) - offloaded
                + model.runtime_buffer_bytes(DTYPE_BYTES[dtype]))
    moe = None
    if model.is_moe:
        moe = {"num_experts": model.num_experts, "top_k": model.experts_per_token, "ep": ep,
               "num_layers": model.num_layers, "policy": expert_gate, "seed": seed, "skew": gate_skew}
    info = {"model": inst.model_name, "hardware": inst.hardware, "tp_size": inst.tp_size, "pp_size": inst.pp_size,
            "ep_size": ep, "dp_group": inst.dp_group or "", "pd_type": inst.pd_type or "", "node": node,
            "num_gpu_blocks": blocks, "kv_cache_tokens": blocks * eng.block_size,
            "latency_source": f"{profile.kind}:{profile.source}", "engine_json": json.dumps(eng.to_dict()),
            "attn_offload": f"pim:{pim.device.name}x{pim.num_channels}" if pim else "",
            "sub_batch_interleaving": int(latency.sub_batches)}
    return simulator.InstanceSetup(inst.where, eng, latency, blocks, max_len, info, role=inst.pd_type,
                                   # vLLM keeps DP ranks in lockstep for MoE models only; a dense model's
                                   # ranks are independent engines
                                   node=node, dp_group=inst.dp_group if model.is_moe else None, pp=inst.pp_size,
                                   lanes=inst.num_npus,
                                   kv_bytes_per_token=kv_tok, moe=moe, weight_bytes=resident,
                                   block_bytes=kv_tok * eng.block_size, weight_stream=stream)


def build_setups(spec: ClusterSpec, engine: EngineConfig, layout: ReferenceLayout, expert_gate: str = "balanced",
                 gate_skew: float = 1.0, seed: int = 0, attn_offload: bool = False,
                 sub_batches: bool = False, latency: LatencyChoice = LatencyChoice()) -> list[simulator.InstanceSetup]:
    """One setup per instance of the cluster, in config order."""
    spec.check_supported()
    nodes = spec.node_of()
    group_nodes: dict[str, set[int]] = {}
    for inst, n in zip(spec.instances, nodes):
        if inst.dp_group is not None:
            group_nodes.setdefault(inst.dp_group, set()).add(n)
    inter = Link(*spec.link(-1))
    setups = []
    for inst, n in zip(spec.instances, nodes):
        spans_nodes = inst.dp_group is not None and len(group_nodes[inst.dp_group]) > 1
        setups.append(build_instance(spec, inst, engine, layout, n, expert_gate, gate_skew, seed,
                                     inter if spans_nodes else None, attn_offload, sub_batches, latency))
    return setups


def memory_setup(spec: ClusterSpec, setups: list[simulator.InstanceSetup], prefix_storage: str | None,
                 prefix_sharing: str) -> simulator.MemorySetup:
    """CPU memory of every node and the CXL devices as tiers, and the lower prefix pool settings."""
    tiers = [simulator.TierSetup(f"cpu:{n}", node.cpu_mem.bytes, node.cpu_mem.mem_bw, node.cpu_mem.mem_latency)
             for n, node in enumerate(spec.nodes)]
    cxl = spec.cxl_mem
    if cxl is not None:
        per = cxl.mem_size * GIB / cxl.num_devices
        tiers += [simulator.TierSetup(f"cxl:{k}", per, cxl.mem_bw, cxl.mem_latency) for k in range(cxl.num_devices)]
        tiers.append(simulator.TierSetup("cxl", cxl.mem_size * GIB, cxl.mem_bw * cxl.num_devices, cxl.mem_latency))
    elif prefix_storage == "cxl":   # the option asked for it, so name the option; the file lacks the memory
        raise InputError(f"'cxl' needs CXL memory, and {spec.source} has no cxl_mem section", "settings",
                         "prefix_storage")
    held = simulator.weights_held(setups)
    pooled = {simulator.pool_tier(s, prefix_storage, prefix_sharing) for s in setups} if prefix_storage else set()
    for t in tiers:   # each instance's weights were checked alone; together they must fit too
        key = "cxl_mem.mem_size" if t.name.startswith("cxl") else f"nodes[{t.name[4:]}].cpu_mem.mem_size"
        if held.get(t.name, 0.0) > t.capacity_bytes:
            raise InputError(f"the weights the instances keep in {t.name} ({held[t.name] / GIB:.2f} GiB together) do "
                             f"not fit its {t.capacity_bytes / GIB:g} GiB", spec.source, key)
        if t.name in pooled and held.get(t.name, 0.0) >= t.capacity_bytes:
            raise InputError(f"the weights kept in {t.name} fill it; a prefix pool there has no room", spec.source,
                             key)
    if prefix_storage:
        for s in setups:
            if not s.engine.enable_prefix_caching:
                raise InputError(f"a lower prefix-cache tier needs prefix caching on ({s.name} has it off)",
                                 "settings", "prefix_storage")
            if CHUNK_TOKENS % s.engine.block_size:   # LMCache's rule: a chunk is whole blocks
                raise InputError(f"a lower prefix-cache tier keeps {CHUNK_TOKENS}-token chunks of whole KV blocks, "
                                 f"so block_size must divide {CHUNK_TOKENS}; {s.name} has {s.engine.block_size}",
                                 "engine settings", "block_size")
    return simulator.MemorySetup(tiers, prefix_storage, prefix_sharing)


def node_power(spec: ClusterSpec, setups: list[simulator.InstanceSetup]) -> list[power.NodePower | None]:
    """Power specs per node; a node whose PIM device computes draws the device's channel powers
    in place of its DIMMs'."""
    out: list[power.NodePower | None] = []
    bare = [n for n, node in enumerate(spec.nodes) if not node.power and any(s.node == n for s in setups)]
    if bare and any(node.power for node in spec.nodes):   # LLMServingSim turns power off for all; here the rest count
        log.warning("%s: nodes %s have no power section, so their energy counts as zero: the energy and the J per "
                    "output token (which divides by every instance's tokens) cover nodes %s only", spec.source,
                    bare, [n for n, node in enumerate(spec.nodes) if node.power])
    for n, node in enumerate(spec.nodes):
        if not node.power:
            out.append(None)
            continue
        pims = [s.latency.pim for s in setups if s.node == n and s.latency.pim is not None]
        if pims:
            dev, ch = pims[0].device, pims[0].num_channels
            out.append(power.NodePower(node.power, node.cpu_mem.mem_size, ch * dev.idle_w, dev.peak_w - dev.idle_w))
        else:
            out.append(power.NodePower(node.power, node.cpu_mem.mem_size))
    return out


def _check_fits(workload: Workload, setups: list[simulator.InstanceSetup], cluster: ClusterSpec) -> None:
    """A request that can never fit would wait forever: refuse it up front, naming its trace line, or for a
    workload from no file (a generator's) the setting that bounds it, which is what its writer can change."""
    for inst, s in zip(cluster.instances, setups):
        _check_fits_one(workload, s, cluster, inst)


def _check_fits_one(workload: Workload, s: simulator.InstanceSetup, cluster: ClusterSpec, inst: InstanceSpec) -> None:
    # a prefill instance holds a request until its first token, then hands it over
    prefill = s.role == "prefill"
    total = workload.input_toks + (np.minimum(workload.output_toks, 1) if prefill else workload.output_toks)

    def tokens(i: int) -> str:
        out = "its first token" if prefill else f"output {int(workload.output_toks[i])}"
        return f"{int(total[i])} tokens (input {int(workload.input_toks[i])} + {out})"

    def set_by(key: str, unset: str) -> tuple[str, str]:
        """Where the engine setting ``key`` was set: the instance's own key, else the run's settings; its
        instance's key ``unset`` where it is not set (the memory that sizes the KV cache, the model's length)."""
        if not getattr(s.engine, key):
            return cluster.source, f"{inst.where}.{unset}"
        return (cluster.source, f"{inst.where}.{key}") if key in inst.engine_overrides else ("engine settings", key)

    def refuse(needs: str, i: int, limit: tuple[str, str]) -> None:
        if workload.lines is not None:   # a trace's: its line
            raise InputError(f"request needs {needs}", workload.name, workload.where(i))
        raise InputError(f"{workload.where(i)} of {workload.name} needs {needs}", *limit)

    kv = s.num_blocks * s.engine.block_size
    length = set_by("max_model_len", "model_name")
    cap = min(kv, s.max_model_len)
    bad = np.flatnonzero(total > cap)
    if len(bad):
        i = int(bad[0])
        what, limit = ("KV cache", set_by("num_gpu_blocks", "npu_mem.mem_size")) if cap == kv else \
            ("max_model_len" if s.engine.max_model_len else "max_model_len (the model's context length)", length)
        refuse(f"{tokens(i)} but the {what} of {s.name} holds at most {cap} ({len(bad)} such requests)", i, limit)
    budget = s.engine.max_num_batched_tokens or s.max_model_len   # 0: no budget of its own
    if not s.engine.enable_chunked_prefill:
        # a preempted request is recomputed in one step, prompt and output so far: vLLM refuses a budget
        # below max_model_len at start-up for this; a request that cannot fit would wait forever
        long = np.flatnonzero(total - 1 > budget)
        if len(long):
            i = int(long[0])
            refuse(f"{tokens(i)} to fit one step whole, as it must with chunked prefill off (if preempted it is "
                   f"recomputed at once), but the max_num_batched_tokens of {s.name} is {budget} ({len(long)} such "
                   "requests); raise max_num_batched_tokens or turn chunked prefill on", i,
                   set_by("max_num_batched_tokens", "max_num_batched_tokens") if s.engine.max_num_batched_tokens
                   else length)


def routes(pd_types: list[str | None]) -> bool:
    """Whether a router has a choice to make among instances of these pd_types: more than one takes new requests,
    or more than one continues them after a prefill/decode split."""
    decoders = pd_types.count("decode")
    return len(pd_types) - decoders > 1 or decoders > 1


def _warn_unused_options(setups: list[simulator.InstanceSetup], kv_transfer: str, expert_gate: str,
                         prefix_storage: str | None, prefix_sharing: str, gate_skew: float,
                         efficiency_file: str, router: str) -> None:
    """Policies that this cluster never exercises: say so, as a user who asked for them expects an effect."""
    if router != "load_score" and not routes([s.role for s in setups]):
        log.warning("router=%r has no effect: one instance takes every request%s, so there is nothing to route",
                    router, " (and one decode instance continues them)" if "decode" in [s.role for s in setups]
                    else "")
    elif router == "prefix_aware" and not any(s.engine.enable_prefix_caching for s in setups):
        log.warning("router='prefix_aware' routes as 'load_score' here: no instance caches prefixes "
                    "(enable_prefix_caching is off)")
    if efficiency_file and all(s.info["latency_source"].startswith("profile") for s in setups):
        log.warning("efficiency_file=%r has no effect: every instance runs on a measured profile (latency 'auto' "
                    "prefers one); latency='analytical' uses the curves", efficiency_file)
    if kv_transfer != "layer" and not any(s.role == "prefill" for s in setups):
        log.warning("kv_transfer=%r has no effect: the cluster has no prefill/decode split", kv_transfer)
    if prefix_sharing != "instance" and prefix_storage is None:
        log.warning("prefix_sharing=%r has no effect without a lower prefix tier (prefix_storage)", prefix_sharing)
    if expert_gate != "balanced" and not any(s.moe for s in setups):
        log.warning("expert_gate=%r has no effect: no instance serves a mixture-of-experts model", expert_gate)
    if gate_skew != 1.0 and expert_gate != "zipf":
        log.warning("gate_skew=%r has no effect: only the zipf expert gate is skewed", gate_skew)


def _warn_overridden_engine(spec: ClusterSpec, engine: EngineConfig) -> None:
    """Engine settings given for the run that the cluster config sets per instance, which wins there."""
    default = EngineConfig()
    for f in fields(engine):
        value = getattr(engine, f.name)
        if value == getattr(default, f.name):
            continue
        own = [inst for inst in spec.instances if f.name in inst.own_engine_keys]
        if own:
            log.warning("%s=%r has no effect on %d of %d instances: %s sets its own", f.name, value, len(own),
                        len(spec.instances), spec.source)


def _warn_block_size(spec: ClusterSpec, setups: list[simulator.InstanceSetup]) -> None:
    """A KV block size no vLLM accepts (7, 24): the kernel pages KV in blocks of any size, so the run goes on,
    but its numbers stand for no engine a user could start."""
    odd: dict[int, list[str]] = {}
    for inst, s in zip(spec.instances, setups):
        if s.engine.block_size not in VLLM_BLOCK_SIZES:
            odd.setdefault(s.engine.block_size, []).append(
                f"{spec.source}: {inst.where}.block_size" if "block_size" in inst.own_engine_keys else inst.where)
    for size, where in odd.items():
        log.warning("block_size=%d (%s) is not a KV block size vLLM accepts (%s); the run pages the KV cache in "
                    "blocks of %d tokens all the same", size, ", ".join(where),
                    ", ".join(map(str, VLLM_BLOCK_SIZES)), size)


def _check_handoffs(setups: list[simulator.InstanceSetup], source: str) -> None:
    """A decode instance continues from the KV cache a prefill instance hands it: both must run the same
    model with the same KV layout (dtype and tensor-parallel shards)."""
    split = [s for s in setups if s.role in ("prefill", "decode")]
    kinds = {(s.info["model"], s.kv_bytes_per_token * s.lanes) for s in split}
    if len(kinds) > 1:
        names = ", ".join(sorted(f"{s.name} ({s.role}: {s.info['model']}, TP{s.info['tp_size']})" for s in split))
        raise InputError(f"prefill and decode instances must serve one model with one KV layout, got {names}",
                         source, "pd_type")


def _is_path(value: Any) -> bool:
    return isinstance(value, PathLike) or (isinstance(value, str) and bool(value.strip()))


@permission_named()
def simulate(cluster: ClusterSpec | str | Path, workload: Workload | str | Path,
             engine: EngineConfig | dict[str, Any] | None = None, reference_dir: str | Path | None = None,
             num_requests: int | None = None, progress: Callable[[int], None] | None = None,
             router: str = "load_score", expert_gate: str = "balanced", gate_skew: float = 1.0,
             kv_transfer: str = "layer", seed: int = 0, prefix_storage: str | None = None,
             prefix_sharing: str = "instance", attn_offload: bool = False,
             sub_batch_interleaving: bool = False, latency: str = "auto", what_if: dict | None = None,
             efficiency_file: str | Path | None = None, bin_s: float = 1.0, memory_sample_s: float | None = None,
             stop_when: Callable[[Any, float], bool] | None = None) -> Results:
    """Simulate serving ``workload`` on ``cluster`` and return the results.

    ``cluster`` is a cluster JSON path or a :class:`ClusterSpec`; ``workload`` a JSONL trace path
    (relative paths are tried under the reference folder too) or a :class:`Workload`; ``engine``
    vLLM engine settings (per-instance keys in the cluster config win over them). ``reference_dir`` holds the
    profiles, model configs and traces (None: ``$LLMSS_REFERENCE_DIR``, ``../shared/reference/llmservingsim`` or
    the fetch cache); ``num_requests`` keeps only the first N requests of the workload.
    ``progress`` is called with 1 for every finished request. ``router`` picks the routing policy
    (:data:`llmss_lab.kernel.router.ROUTERS`), ``expert_gate`` and ``gate_skew`` the MoE gate
    (:data:`llmss_lab.kernel.moe.GATES`), ``kv_transfer`` how a prefill/decode split moves KV
    (``"layer"``: pushed, streamed behind the prefill; ``"whole"``: pushed after it; ``"pull"``: read by the
    decode instance once it sees the request, as vLLM V1's asynchronous connectors do); ``seed`` seeds
    every random policy.
    ``prefix_storage`` (``"cpu"`` or ``"cxl"``) adds a lower prefix-cache tier in the manner of LMCache,
    ``prefix_sharing`` says who shares a pool (``"instance"``, ``"node"`` or ``"cluster"``).
    ``attn_offload`` runs decode attention on the node's PIM device (``cpu_mem.pim_config``),
    ``sub_batch_interleaving`` overlaps NPU and PIM work of two sub-batches; per-instance keys
    ``enable_attn_offloading`` / ``enable_sub_batch_interleaving`` in the cluster config win.
    ``latency`` picks where step latencies come from (``"auto"``: a measured profile where one
    exists, else the analytical model from ``profiles/hardware``; ``"profile"``; ``"analytical"``),
    ``what_if`` scales the hardware spec for the analytical model (``{"memory_bw_gbs": 2}``) and
    ``efficiency_file`` replaces its fitted curves; the results' ``latency_source`` attr says which ran.
    ``bin_s`` is the width of ``Results.timeseries``' and ``Results.power``'s bins in seconds (coarser for long
    runs: a day at 1 s is 86,400 rows per instance); ``memory_sample_s`` spaces the samples of ``Results.memory`` (default: ``bin_s``;
    finer, to read memory at exact instants).
    ``stop_when(requests, now_ns)`` is asked after each step that finishes requests (the kernel's request table,
    times in ns, -1 where not yet; ``requests.num_finished`` counts the finished), and every
    ``kernel.simulator.STOP_POLL_STEPS`` steps besides; True ends the run there with
    ``kernel.simulator.RunStopped`` (no results): a capacity search stops a run whose SLO is already lost, or
    already won, or that it no longer wants.
    """
    # numpy scalars (from a user's arrays) as the plain values they hold
    num_requests, seed, gate_skew, bin_s, memory_sample_s = map(plain, (num_requests, seed, gate_skew, bin_s,
                                                                        memory_sample_s))
    for key, value, high in (("bin_s", bin_s, MAX_BIN_S), ("memory_sample_s", memory_sample_s, 3600)):
        if (value is not None or key == "bin_s") and (isinstance(value, bool) or not (
                isinstance(value, (int, float)) and MIN_BIN_S <= value <= high)):   # NaN is in no range
            raise InputError(f"must be a number of seconds in [{MIN_BIN_S}, {high}], got {value!r}", "settings", key)
    if not isinstance(cluster, ClusterSpec) and not _is_path(cluster):
        raise InputError(f"expected a ClusterSpec (ClusterSpec.single(model, hardware, mem_size) builds one) or "
                         f"the path of a cluster JSON, got {cluster!r}", "settings", "cluster")
    if not isinstance(workload, Workload) and not _is_path(workload):
        raise InputError(f"expected a Workload (synthetic() or load_trace() builds one) or the path of a JSONL "
                         f"trace, got {workload!r}", "settings", "workload")
    if engine is not None and not isinstance(engine, (EngineConfig, dict)):
        raise InputError(f"expected an EngineConfig, a dict of vLLM settings or None, got {engine!r}", "settings",
                         "engine")
    if progress is not None and not callable(progress):
        raise InputError(f"expected a function called with each finished request, got {progress!r}", "settings",
                         "progress")
    if stop_when is not None and not callable(stop_when):
        raise InputError(f"expected a function of (requests, now_ns) or None, got {stop_when!r}", "settings",
                         "stop_when")
    ROUTERS.get(router, "router")
    GATES.get(expert_gate, "expert_gate")   # a typo is named even where no MoE model would use the gate
    if prefix_storage not in (None, "cpu", "cxl"):
        raise InputError(f"must be 'cpu', 'cxl' or none, got {prefix_storage!r}", "settings", "prefix_storage")
    if prefix_sharing not in ("instance", "node", "cluster"):
        raise InputError(f"must be 'instance', 'node' or 'cluster', got {prefix_sharing!r}", "settings",
                         "prefix_sharing")
    if kv_transfer not in simulator.KV_TRANSFERS:
        raise InputError(f"must be one of {', '.join(simulator.KV_TRANSFERS)}, got {kv_transfer!r}", "settings",
                         "kv_transfer")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"must be a whole number >= 0, got {seed!r}", "settings", "seed")
    if isinstance(gate_skew, bool) or not (isinstance(gate_skew, (int, float)) and 0 <= gate_skew <= MAX_GATE_SKEW):
        raise InputError(f"must be a number from 0 (uniform) to {MAX_GATE_SKEW}, got {gate_skew!r}", "settings",
                         "gate_skew")
    if num_requests is not None and (isinstance(num_requests, bool) or not isinstance(num_requests, int)
                                     or num_requests < 1):
        raise InputError(f"must be a whole number >= 1, got {num_requests!r}", "settings", "num_requests")
    choice = LatencyChoice.of(latency, what_if, efficiency_file)
    t0 = time.perf_counter()
    if isinstance(engine, dict):
        engine = EngineConfig().with_overrides(engine, "engine settings")
    engine = engine or EngineConfig()
    spec = cluster if isinstance(cluster, ClusterSpec) else load_cluster(cluster)
    layout = ReferenceLayout(resolve_reference_dir(reference_dir))
    if not isinstance(workload, Workload):
        workload = load_trace(layout.find(workload), num_requests)
    elif num_requests:
        workload = workload.head(num_requests)
    if len(workload) > LONG_RUN:
        _warn_long_run(len(workload))
    setups = build_setups(spec, engine, layout, expert_gate, gate_skew, seed, attn_offload, sub_batch_interleaving,
                          choice)
    _check_handoffs(setups, spec.source)
    _warn_unused_options(setups, kv_transfer, expert_gate, prefix_storage, prefix_sharing, gate_skew,
                         choice.efficiency_file, router)
    _warn_overridden_engine(spec, engine)
    _warn_block_size(spec, setups)
    _check_fits(workload, setups, spec)
    memory = memory_setup(spec, setups, prefix_storage, prefix_sharing)
    links = (Link(*spec.link(0)), Link(*spec.link(-1)))
    _log_setups(spec, setups, workload)
    raw = simulator.run(setups, workload, router, progress, links, kv_transfer, seed, memory, stop_when)
    done = raw.requests.num_finished
    if raw.interrupted and not done:
        raise RunInterrupted(interrupted_note({"interrupted": 1, "simulated_s": raw.end_ns * 1e-9,
                                               "requests_finished": 0, "requests_total": len(workload)}), None)
    # a Ctrl-C while the results are built waits until they are (0.02-0.04 s for 20,000 requests): an interrupted run's
    # is ignored, as the run is stopping already; a finished run's then stops it with its results, not without
    pressed: list[bool] = []
    with ctrl_c_calls(lambda: pressed.append(True)):
        energy = power.account(raw, node_power(spec, setups), bin_s=bin_s)
        attrs = {
            "title": "llmss_lab simulation",
            "Conventions": "CF-1.10",
            "llmss_lab_version": __version__,
            "git_hash": git_hash(),
            "cluster": str(spec.source),
            "workload": workload.name,
            "simulated_s": raw.end_ns * 1e-9,
            "num_steps": sum(len(i.log.start) for i in raw.instances),
            "latency_model": choice.mode,
            "what_if": choice.what_if.label(),
        }
        attrs.update({k: v for k, v in setups[0].info.items() if len(setups) == 1})
        if len(setups) > 1:   # every model and hardware of the cluster (per instance: the results' instance coords)
            attrs.update({k: ", ".join(dict.fromkeys(str(s.info[k]) for s in setups)) for k in ("model", "hardware")})
        attrs["latency_source"] = " | ".join(dict.fromkeys(s.info["latency_source"] for s in setups))
        attrs.update({"num_instances": len(setups), "router": router, "kv_transfer": kv_transfer,
                      "expert_gate": expert_gate, "seed": seed, "kv_bytes_transferred": raw.kv_bytes_moved,
                      "prefix_storage": prefix_storage or "",
                      "prefix_sharing": prefix_sharing if prefix_storage else "",
                      "input_files_json": json.dumps(run_inputs(spec, workload, choice.efficiency_file)),
                      "reference_dir": str(bench_root(layout.root).absolute())})   # which Results.save keeps out of
        if raw.interrupted:   # what the results hold: the requests finished by then (Results.summary)
            attrs.update({"interrupted": 1, "requests_finished": done, "requests_total": len(workload)})
        res = Results.from_raw(raw, attrs, energy, memory_sample_s, bin_s)
        res.set_attr("sim_wall_s", time.perf_counter() - t0)  # inputs read to results built
    log.info("simulated %.1f s of serving in %d steps: %.2f s of wall time from inputs to results",
             attrs["simulated_s"], attrs["num_steps"], res.attrs["sim_wall_s"])
    if raw.interrupted:
        raise RunInterrupted(interrupted_note(res.attrs), res)
    if pressed:
        raise RunInterrupted(f"interrupted as the results were built, all {done:,} requests finished", res)
    return res


def _log_setups(spec: ClusterSpec, setups: list, workload: Workload) -> None:
    """What a run is about to simulate, for ``-v``: its cluster config, workload, and each instance's shape, KV
    cache and latency source."""
    if not log.isEnabledFor(logging.INFO):
        return
    log.info("cluster %s: %d node%s", spec.source, len(spec.nodes), "s" if len(spec.nodes) > 1 else "")
    log.info("workload %s: %d requests", workload.name, len(workload))
    for s in setups:
        i = s.info
        role = f" ({i['pd_type']})" if i["pd_type"] else ""
        log.info("%s%s: %s on %s, TP%d PP%d, %d KV blocks (%d tokens), latency %s", s.name, role, i["model"],
                 i["hardware"], i["tp_size"], i["pp_size"], i["num_gpu_blocks"], i["kv_cache_tokens"],
                 i["latency_source"])
