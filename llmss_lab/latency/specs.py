"""Accelerator specifications as data: ``profiles/hardware/<name>.yaml`` in the project, one file per
accelerator with its sources (peak dense BF16/FP8 FLOP/s, memory size and bandwidth, interconnect,
TDP and idle power, and for GPUs their SM count and last-level cache). They feed the analytical latency
model for hardware without a profile: the SMs set how many attention tiles run at once, the cache how much
of a KV group's reads it keeps (:mod:`.roofline`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config.reader import read_yaml
from ..errors import InputError


def profiles_dir() -> Path:
    """The kit's own ``profiles/``: package data ``llmss_lab/profiles`` in a regular install (pyproject.toml maps the
    repo's top-level folder there), the top-level folder beside the package in a checkout or editable install."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "profiles"
    return installed if installed.is_dir() else package.parent / "profiles"


SPECS_DIR = profiles_dir() / "hardware"
REQUIRED = ("name", "vendor", "memory_gib", "memory_bw_gbs", "bf16_tflops", "sources")
OPTIONAL = ("fp8_tflops", "interconnect", "host_link", "tdp_w", "idle_w", "sms", "cache_mb", "notes")


@dataclass(frozen=True)
class HardwareSpec:
    name: str
    vendor: str
    memory_gib: float
    memory_bw_gbs: float
    bf16_tflops: float
    fp8_tflops: float | None
    interconnect_gbs: float | None
    tdp_w: float | None
    idle_w: float | None
    sources: tuple[str, ...]
    path: str = ""
    sms: float | None = None        # streaming multiprocessors (AMD: compute units); None where there are none (TPU)
    cache_mb: float | None = None   # on-chip cache every SM shares (NVIDIA: L2; AMD MI300X: Infinity Cache), MB

    def scaled(self, **factors: float) -> "HardwareSpec":
        """A what-if copy: ``spec.scaled(memory_bw_gbs=2)`` doubles the memory bandwidth."""
        changes = {}
        for key, f in factors.items():
            value = getattr(self, key, None)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise InputError(f"not a numeric spec field of {self.name}", "spec", key)
            changes[key] = value * f
        return replace(self, **changes)


def _number(data: dict, key: str, path: Path, required: bool) -> float | None:
    v = data.get(key)
    if v is None:
        if required:
            raise InputError("missing required key", path, key)
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1e9:
        raise InputError(f"must be a positive number, got {v!r}", path, key)
    return float(v)


def load_spec(path: str | Path) -> HardwareSpec:
    path = Path(path)
    data: Any = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError("a hardware spec is a mapping of keys", path)
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise InputError(f"unknown key(s) {unknown}", path, unknown[0])
    for key in ("name", "vendor"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise InputError("missing required key (a name)", path, key)
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        raise InputError("every spec names its sources: a non-empty list of strings", path, "sources")
    link = data.get("interconnect")
    link_bw = None
    if link is not None:
        if not isinstance(link, dict):
            raise InputError("must be a mapping {kind, bw_gbs}", path, "interconnect")
        link_bw = _number(link, "bw_gbs", path, False)
    return HardwareSpec(
        name=data["name"], vendor=data["vendor"],
        memory_gib=_number(data, "memory_gib", path, True), memory_bw_gbs=_number(data, "memory_bw_gbs", path, True),
        bf16_tflops=_number(data, "bf16_tflops", path, True), fp8_tflops=_number(data, "fp8_tflops", path, False),
        interconnect_gbs=link_bw, tdp_w=_number(data, "tdp_w", path, False), idle_w=_number(data, "idle_w", path, False),
        sources=tuple(sources), path=str(path), sms=_number(data, "sms", path, False),
        cache_mb=_number(data, "cache_mb", path, False))


def read_specs(folder: str | Path = SPECS_DIR) -> tuple[dict[str, HardwareSpec], list[InputError]]:
    """Every readable spec in ``folder`` by name, and the error of each file that is not: one file being
    edited should not stop a run, or the explorer, on other hardware."""
    folder = Path(folder)
    if not folder.is_dir():
        if folder == SPECS_DIR:   # an install made before the wheel carried profiles/, or a partial copy
            raise InputError("the profiles/ folder (the analytical model's hardware specs) is neither in nor beside "
                             "the installed package; reinstall it from a checkout (`python -m pip install .`)", folder)
        raise InputError("hardware spec folder does not exist", folder)
    specs: dict[str, HardwareSpec] = {}
    errors: list[InputError] = []
    for p in sorted(folder.glob("*.yaml")):
        try:
            s = load_spec(p)
            if s.name in specs:
                raise InputError(f"hardware {s.name!r} is also described in {specs[s.name].path}", p, "name")
        except InputError as exc:
            errors.append(exc)
            continue
        specs[s.name] = s
    return specs, errors


def load_specs(folder: str | Path = SPECS_DIR) -> dict[str, HardwareSpec]:
    """Every spec in ``folder`` by name; the first unreadable file is an error (a fit needs them all)."""
    specs, errors = read_specs(folder)
    if errors:
        raise errors[0]
    return specs
