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
from .latency.profile import load_bundle
from .reference import ReferenceLayout, resolve_reference_dir
from .results.dataset import Results
from .workload import Workload, load_trace

_SHORT_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "fp8": "fp8", "int8": "int8"}


def profile_variant(dtype: str, kv_cache_dtype: str) -> str:
    """The bundle folder for a dtype: ``bf16``, or ``bf16-kvfp8`` with an fp8 KV cache."""
    v = _SHORT_DTYPE[dtype]
    return v if kv_cache_dtype == "auto" else f"{v}-kv{kv_cache_dtype}"


def kv_cache_blocks(model: ModelSpec, inst: InstanceSpec, engine: EngineConfig, source: str) -> int:
    """vLLM's sizing: (memory x utilisation - weights) / bytes per block, per rank."""
    if engine.num_gpu_blocks:
        return engine.num_gpu_blocks
    dtype_b = DTYPE_BYTES[engine.dtype or model.torch_dtype]
    kv_b = 1 if engine.kv_cache_dtype == "fp8" else dtype_b
    util = inst.mem_util if inst.mem_util is not None else engine.gpu_memory_utilization
    weights = model.weight_bytes_per_rank(inst.tp_size, inst.pp_size, inst.ep_size or 1, dtype_b)
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


def build_instance(cluster: ClusterSpec, inst: InstanceSpec, engine: EngineConfig,
                   layout: ReferenceLayout) -> simulator.InstanceSetup:
    src = cluster.source
    model = ModelSpec.from_hf_config(layout.model_config(inst.model_name), inst.model_name)
    eng = engine.with_overrides(inst.engine_overrides, src)
    dtype = eng.dtype or model.torch_dtype
    if dtype not in _SHORT_DTYPE:
        raise InputError(f"unsupported dtype {dtype!r}", src, "dtype")
    model.check_parallelism(inst.tp_size, inst.pp_size, src)
    bundle = load_bundle(layout.profile_dir(inst.hardware, inst.model_name, profile_variant(dtype, eng.kv_cache_dtype)))
    profile = bundle.at_tp(inst.tp_size)
    bw, lat = cluster.link(0)
    latency = IterationModel(profile, model, inst.tp_size, Link(bw, lat), inst.npu_mem.mem_bw)
    max_len = min(eng.max_model_len or model.max_position_embeddings, model.max_position_embeddings)
    blocks = kv_cache_blocks(model, inst, eng, src)
    info = {"model": inst.model_name, "hardware": inst.hardware, "tp_size": inst.tp_size,
            "num_gpu_blocks": blocks, "kv_cache_tokens": blocks * eng.block_size,
            "latency_source": f"profile:{bundle.path}", "engine_json": json.dumps(eng.to_dict())}
    return simulator.InstanceSetup(inst.where or "instance0", eng, latency, blocks, max_len, info)


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
             num_requests: int | None = None, progress: Callable[[int], None] | None = None) -> Results:
    """Simulate serving ``workload`` on ``cluster`` and return the results.

    ``cluster`` is a cluster JSON path or a :class:`ClusterSpec`; ``workload`` a JSONL trace path
    (relative paths are tried under the reference folder too) or a :class:`Workload`; ``engine``
    vLLM engine settings (per-instance keys in the cluster config win over them).
    ``progress`` is called with 1 for every finished request.
    """
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
    inst = spec.require_single_instance()
    setups = [build_instance(spec, inst, engine, layout)]
    _check_fits(workload, setups)
    raw = simulator.run(setups, workload, progress=progress)
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
    attrs.update(setups[0].info)
    res = Results.from_raw(raw, attrs)
    res.set_attr("sim_wall_s", time.perf_counter() - t0)  # inputs read to results built
    return res
