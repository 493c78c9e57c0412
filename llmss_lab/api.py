"""``simulate(...)``: resolve the inputs, build the kernel, run it, return xarray results."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .config.cluster import ClusterSpec, InstanceSpec, load_cluster
from .config.engine import EngineConfig
from .config.model import DTYPE_BYTES, GIB, ModelSpec
from .errors import InputError
from .kernel import simulator
from .latency.interconnect import Link
from .latency.iteration import IterationModel
from .latency.legacy import is_legacy_dir, load_legacy
from .latency.profile import LatencyProfile, load_bundle
from .reference import ReferenceLayout, resolve_reference_dir
from .results.dataset import Results
from .workload import Workload, load_trace

_SHORT_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "fp8": "fp8", "int8": "int8"}


def profile_variant(dtype: str, kv_cache_dtype: str) -> str:
    """The bundle folder for a dtype: ``bf16``, or ``bf16-kvfp8`` with an fp8 KV cache."""
    v = _SHORT_DTYPE[dtype]
    return v if kv_cache_dtype == "auto" else f"{v}-kv{kv_cache_dtype}"


def kv_cache_blocks(model: ModelSpec, inst: InstanceSpec, engine: EngineConfig, source: str, ep: int = 1) -> int:
    """vLLM's sizing: (memory x utilisation - weights) / bytes per block, per rank."""
    if engine.num_gpu_blocks:
        return engine.num_gpu_blocks
    dtype_b = DTYPE_BYTES[engine.dtype or model.torch_dtype]
    kv_b = 1 if engine.kv_cache_dtype == "fp8" else dtype_b
    util = inst.mem_util if inst.mem_util is not None else engine.gpu_memory_utilization
    weights = model.weight_bytes_per_rank(inst.tp_size, inst.pp_size, ep, dtype_b)
    budget = inst.npu_mem.mem_size * GIB * util - weights
    per_block = model.kv_bytes_per_token(inst.tp_size, inst.pp_size, kv_b) * engine.block_size
    blocks = int(budget // per_block)
    if blocks <= 0:
        raise InputError(f"the weights ({weights / GIB:.2f} GiB per GPU) leave no room for a KV cache in "
                         f"{inst.npu_mem.mem_size} GiB x {util} utilisation; raise mem_size or tp_size",
                         source, f"{inst.where}.npu_mem.mem_size")
    return blocks


def _git_hash() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pads_shapes(hardware: str) -> bool:
    """vLLM on TPU runs precompiled power-of-two batch shapes; GPU runs here are eager (exact shapes)."""
    return "tpu" in hardware.lower()


def load_profile(layout: ReferenceLayout, inst: InstanceSpec, model: ModelSpec, variant: str) -> LatencyProfile:
    """The instance's per-rank profile, from a current-format bundle or the paper artifact's format."""
    d = layout.profile_dir(inst.hardware, inst.model_name, variant)
    if is_legacy_dir(d):
        return load_legacy(d, inst.tp_size, model.is_moe)
    profile = load_bundle(d).at_tp(inst.tp_size)
    if model.is_moe and profile.moe is None:
        profile.moe = load_bundle(d).at_tp(1).moe   # MoE blocks are profiled at TP=1 only
        if profile.moe is None:
            raise InputError("mixture-of-experts model but the profile has no moe.csv", d, "tp1/moe.csv")
    return profile


def build_instance(cluster: ClusterSpec, inst: InstanceSpec, engine: EngineConfig, layout: ReferenceLayout,
                   node: int = 0, expert_gate: str = "balanced", gate_skew: float = 1.0,
                   seed: int = 0, ep_link: Link | None = None) -> simulator.InstanceSetup:
    src = cluster.source
    model = ModelSpec.from_hf_config(layout.model_config(inst.model_name), inst.model_name)
    eng = engine.with_overrides(inst.engine_overrides, src)
    dtype = eng.dtype or model.torch_dtype
    if dtype not in _SHORT_DTYPE:
        raise InputError(f"unsupported dtype {dtype!r}", src, "dtype")
    model.check_parallelism(inst.tp_size, inst.pp_size, src)
    ep = inst.ep_size or (inst.tp_size if model.is_moe else 1)
    if model.is_moe and model.num_experts % ep:
        raise InputError(f"ep_size {ep} does not divide the model's {model.num_experts} experts", src,
                         f"{inst.where}.ep_size")
    if not model.is_moe and inst.ep_size not in (None, 1):
        raise InputError(f"ep_size {inst.ep_size} given for a dense model", src, f"{inst.where}.ep_size")
    if inst.dp_group is None and ep > inst.tp_size:
        raise InputError(f"ep_size {ep} exceeds tp_size {inst.tp_size}; expert parallelism wider than one "
                         "instance needs a dp_group", src, f"{inst.where}.ep_size")
    profile = load_profile(layout, inst, model, profile_variant(dtype, eng.kv_cache_dtype))
    intra = Link(*cluster.link(0))
    latency = IterationModel(profile, model, inst.tp_size, intra, inst.npu_mem.mem_bw, pp=inst.pp_size,
                             ep_link=ep_link or intra, pad_shapes=pads_shapes(inst.hardware))
    max_len = min(eng.max_model_len or model.max_position_embeddings, model.max_position_embeddings)
    blocks = kv_cache_blocks(model, inst, eng, src, ep)
    kv_b = 1 if eng.kv_cache_dtype == "fp8" else DTYPE_BYTES[dtype]
    moe = None
    if model.is_moe:
        moe = {"num_experts": model.num_experts, "top_k": model.experts_per_token, "ep": ep,
               "num_layers": model.num_layers, "policy": expert_gate, "seed": seed, "skew": gate_skew}
    info = {"model": inst.model_name, "hardware": inst.hardware, "tp_size": inst.tp_size, "pp_size": inst.pp_size,
            "ep_size": ep, "dp_group": inst.dp_group or "", "pd_type": inst.pd_type or "", "node": node,
            "num_gpu_blocks": blocks, "kv_cache_tokens": blocks * eng.block_size,
            "latency_source": f"profile:{profile.source}", "engine_json": json.dumps(eng.to_dict())}
    return simulator.InstanceSetup(inst.where or "instance0", eng, latency, blocks, max_len, info, role=inst.pd_type,
                                   node=node, dp_group=inst.dp_group, pp=inst.pp_size, lanes=inst.num_npus,
                                   kv_bytes_per_token=model.kv_bytes_per_token(inst.tp_size, inst.pp_size, kv_b),
                                   moe=moe)


def build_setups(spec: ClusterSpec, engine: EngineConfig, layout: ReferenceLayout, expert_gate: str = "balanced",
                 gate_skew: float = 1.0, seed: int = 0) -> list[simulator.InstanceSetup]:
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
                                     inter if spans_nodes else None))
    return setups


def _check_fits(workload: Workload, setups: list[simulator.InstanceSetup]) -> None:
    """A request that can never fit would wait forever: refuse it up front, naming its line."""
    total = workload.input_toks + workload.output_toks
    for s in setups:
        cap = min(s.num_blocks * s.engine.block_size, s.max_model_len)
        bad = np.flatnonzero(total > cap)
        if len(bad):
            i = int(bad[0])
            what = "KV cache" if cap == s.num_blocks * s.engine.block_size else "max_model_len"
            raise InputError(f"request needs {int(total[i])} tokens (input {int(workload.input_toks[i])} + output "
                             f"{int(workload.output_toks[i])}) but the {what} of {s.name} holds at most {cap}"
                             f" ({len(bad)} such requests)", workload.name, workload.where(i))


def simulate(cluster: ClusterSpec | str | Path, workload: Workload | str | Path,
             engine: EngineConfig | dict[str, Any] | None = None, reference_dir: str | Path | None = None,
             num_requests: int | None = None, progress: Callable[[int], None] | None = None,
             router: str = "load_score", expert_gate: str = "balanced", gate_skew: float = 1.0,
             kv_transfer: str = "layer", seed: int = 0) -> Results:
    """Simulate serving ``workload`` on ``cluster`` and return the results.

    ``cluster`` is a cluster JSON path or a :class:`ClusterSpec`; ``workload`` a JSONL trace path
    (relative paths are tried under the reference folder too) or a :class:`Workload`; ``engine``
    vLLM engine settings (per-instance keys in the cluster config win over them).
    ``progress`` is called with 1 for every finished request. ``router`` picks the routing policy
    (:data:`llmss_lab.kernel.router.ROUTERS`), ``expert_gate`` and ``gate_skew`` the MoE gate
    (:data:`llmss_lab.kernel.moe.GATES`), ``kv_transfer`` how a prefill/decode split moves KV
    (``"layer"``: streamed behind the prefill, ``"whole"``: after it); ``seed`` seeds every random policy.
    """
    if kv_transfer not in ("layer", "whole"):
        raise InputError(f"must be 'layer' or 'whole', got {kv_transfer!r}", "settings", "kv_transfer")
    t0 = time.perf_counter()
    if isinstance(engine, dict):
        engine = EngineConfig().with_overrides(engine, "engine settings")
    engine = engine or EngineConfig()
    spec = cluster if isinstance(cluster, ClusterSpec) else load_cluster(cluster)
    layout = ReferenceLayout(resolve_reference_dir(reference_dir))
    if not isinstance(workload, Workload):
        wl_path = Path(workload)
        if not wl_path.exists() and not wl_path.is_absolute() and layout.resolve(wl_path).exists():
            wl_path = layout.resolve(wl_path)
        workload = load_trace(wl_path, num_requests)
    elif num_requests:
        workload = workload.head(num_requests)
    setups = build_setups(spec, engine, layout, expert_gate, gate_skew, seed)
    _check_fits(workload, setups)
    links = (Link(*spec.link(0)), Link(*spec.link(-1)))
    raw = simulator.run(setups, workload, router, progress, links, kv_transfer, seed)
    attrs = {
        "title": "llmss_lab simulation",
        "Conventions": "CF-1.10",
        "llmss_lab_version": __version__,
        "git_hash": _git_hash(),
        "cluster": str(spec.source),
        "workload": workload.name,
        "simulated_s": raw.end_ns * 1e-9,
        "num_steps": sum(len(i.log.start) for i in raw.instances),
    }
    attrs.update({k: v for k, v in setups[0].info.items() if len(setups) == 1 or k in ("model", "hardware")})
    attrs.update({"num_instances": len(setups), "router": router, "kv_transfer": kv_transfer,
                  "expert_gate": expert_gate, "seed": seed, "kv_bytes_transferred": raw.kv_bytes_moved})
    res = Results.from_raw(raw, attrs)
    res.set_attr("sim_wall_s", time.perf_counter() - t0)  # inputs read to results built
    return res
