"""What a reference folder offers: profiled (hardware, model) pairs, cluster configs, traces, PIM
devices, and the memory and power figures its cluster configs give each kind of hardware.

The explorer fills its drop-downs from here, so a user only ever picks things that can run.
Everything is read from the folder in place; nothing is bundled.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

CLUSTER_DIRS = ("configs/cluster", "cluster_config")
PIM_DIRS = ("configs/pim", "pim_config")
TRACE_DIRS = ("workloads", "dataset")


@dataclass(frozen=True)
class Hardware:
    """An NPU type with at least one profiled model; memory and power as the cluster configs give them."""

    name: str
    models: dict[str, tuple[int, ...]]       # model name -> profiled TP degrees
    mem_size: float | None = None             # GiB
    mem_bw: float | None = None               # GB/s
    power: dict[str, Any] | None = field(default=None, compare=False)   # a node "power" section naming it


@dataclass(frozen=True)
class Catalog:
    root: Path
    hardware: dict[str, Hardware]
    cluster_configs: dict[str, Path]          # stem -> path
    traces: dict[str, Path]                   # stem -> path
    pim_devices: tuple[str, ...]


def _tps(model_dir: Path) -> tuple[int, ...]:
    """TP degrees profiled for one model: ``<variant>/tpN`` (current format) or ``tpN`` (paper artifact)."""
    dirs = [d for d in model_dir.glob("tp*") if d.is_dir()]
    for variant in sorted(model_dir.iterdir()):
        if variant.is_dir() and not variant.name.startswith("tp"):
            dirs += [d for d in variant.glob("tp*") if d.is_dir()]
    out = set()
    for d in dirs:
        try:
            out.add(int(d.name[2:]))
        except ValueError:
            continue
    return tuple(sorted(out))


def _profiled(root: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    found: dict[str, dict[str, tuple[int, ...]]] = {}
    prof = root / "profiles"
    if not prof.is_dir():
        return found
    for hw in sorted(d for d in prof.iterdir() if d.is_dir()):
        for org in sorted(d for d in hw.iterdir() if d.is_dir()):
            for model in sorted(d for d in org.iterdir() if d.is_dir()):
                tps = _tps(model)
                if tps:
                    found.setdefault(hw.name, {})[f"{org.name}/{model.name}"] = tps
    return found


def _config_facts(paths: list[Path]) -> tuple[dict[str, tuple[float, float]], dict[str, dict]]:
    """Per hardware: (mem_size, mem_bw) and a node power section, from the first config naming it.
    Unreadable configs are skipped here; running them reports their errors properly."""
    mem: dict[str, tuple[float, float]] = {}
    power: dict[str, dict] = {}
    for p in paths:
        try:
            data = json.loads(p.read_text())
            nodes = data["nodes"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            continue
        for node in nodes if isinstance(nodes, list) else []:
            if not isinstance(node, dict):
                continue
            for inst in node.get("instances") or []:
                try:
                    hw, m = inst["hardware"], inst["npu_mem"]
                    mem.setdefault(hw, (float(m["mem_size"]), float(m["mem_bw"])))
                except (KeyError, TypeError, ValueError):
                    continue
            pw = node.get("power")
            if isinstance(pw, dict) and isinstance(pw.get("npu"), dict):
                for hw in pw["npu"]:
                    power.setdefault(hw, pw)
    return mem, power


def scan(root: str | Path) -> Catalog:
    """The catalog of one reference root (``.../llmservingsim`` or its ``ispass26`` paper artifact)."""
    return _scan(str(Path(root).resolve()))


@lru_cache(maxsize=8)
def _scan(root_s: str) -> Catalog:
    root = Path(root_s)
    configs = sorted(p for d in CLUSTER_DIRS for p in (root / d).glob("*.json"))
    figure_configs = sorted((root / "figures").glob("*/config/*.json")) + sorted(
        (root / "ispass26" / "figures").glob("*/config/*.json"))
    mem, power = _config_facts(configs + figure_configs)
    hardware = {hw: Hardware(hw, models, *mem.get(hw, (None, None)), power.get(hw))
                for hw, models in _profiled(root).items()}
    traces = {p.stem: p for d in TRACE_DIRS for p in sorted((root / d).glob("*.jsonl"))}
    pims = tuple(sorted({p.stem for d in PIM_DIRS for p in (root / d).glob("*.ini")}))
    return Catalog(root, hardware, {p.stem: p for p in configs}, traces, pims)
