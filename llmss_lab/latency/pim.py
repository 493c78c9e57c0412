"""Processing-in-memory (PIM) devices and the PIM decode-attention latency model.

LLMServingSim 2.0 can offload decode attention to PIM channels in a node's CPU memory. This
module reproduces its two parts:

* :class:`PimDevice`: one PIM channel as described by a DRAMSim3-style INI file
  (``configs/pim/*.ini``): capacity, bandwidth, read latency and power. The capacity decides
  how many channels a node's memory holds (:func:`pim_channels`).
* :class:`PimAttention`: how long one layer of decode attention takes on those channels.

Where the latency model comes from: the reference fits a straight line per device,
``time = slope * L + intercept`` ns per request, calibrated on Llama-3.1-8B with the NeuPIMs
simulator (simulated PIM, *not* measured hardware). Other models are scaled from it: the
slope (KV bytes read per token) grows with the GQA group size ``n_heads / kv_heads`` relative to
Llama-3.1-8B's 4, the intercept (fixed per-request work) with the hidden size
``n_heads * head_dim`` relative to 4096. A request's KV heads are spread over
``channel_split = min(num_channels, kv_heads)`` channels, each doing ``1 / channel_split`` of
the work, and requests are placed greedily, longest first, on the least-loaded channel.

Deliberate difference from the reference: ``L`` here is the request's *current* KV length
(the context attention actually reads at this decode step). The reference uses the original
prompt length (``req.input``), so its PIM time does not grow as the output gets longer.
"""
from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config.reader import read_text
from ..errors import InputError

GIB = 2**30
MIB = 2**20

# Base (slope, intercept) in ns, fitted on Llama-3.1-8B (32 heads, 8 KV heads, head_dim 128).
# Keys are device stems without the ``_pim`` suffix.
BASE_COEFFICIENTS: dict[str, tuple[float, float]] = {
    "LPDDR4X_2GB_4266": (432.4458, 33918.1734),
    "DDR4_8GB_3200": (333.2538, 30675.2739),
    "LPDDR5_2GB_6400": (282.4338, 15996.7018),
    "HBM2_1GB_2000": (242.0548, 14513.5015),
}
_REF_GQA_GROUP = 4.0        # Llama-3.1-8B: 32 / 8
_REF_HIDDEN = 4096.0        # Llama-3.1-8B: 32 * 128

# Keys the derivation reads; the first group must be whole numbers (they count things).
_COUNT_KEYS = ("bankgroups", "banks_per_group", "rows", "columns", "device_width", "bus_width")
_REAL_KEYS = ("channel_size", "data_rate", "CL", "tCK", "idle_power", "peak_power")
_SECTION = re.compile(r"\[([^\]]*)\]$")


def _cut(text: str, limit: int = 60) -> str:
    """Text of the file for an error message, cut short: a path given by mistake may name any text file."""
    return text if len(text) <= limit else text[:limit] + "..."


def _quoted(text: str) -> str:
    return repr(_cut(text))


def parse_ini(path: str | Path) -> dict[str, tuple[str, int]]:
    """Flatten a DRAMSim3 INI into ``{key: (value, line)}``.

    Written by hand rather than with configparser so that keys keep their case (``CL`` vs
    ``tCK``), inline ``#`` comments are stripped everywhere (section headers included), and a
    key given twice is caught instead of silently overwritten: sections are flattened, so a
    duplicate would make the device ambiguous.
    """
    text = read_text(path)
    out: dict[str, tuple[str, int]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not _SECTION.match(line):
                raise InputError(f"malformed section header {_quoted(line)}", path, f"line {lineno}")
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InputError(f"expected 'key = value', got {_quoted(line)}", path, f"line {lineno}")
        if key in out:
            raise InputError(f"key given twice (lines {out[key][1]} and {lineno})", path, _cut(key))
        out[key] = (value, lineno)
    return out


def _number(ini: dict[str, tuple[str, int]], key: str, path: Path, whole: bool) -> float:
    if key not in ini:
        raise InputError("missing required key", path, key)
    value, _ = ini[key]
    try:
        x = float(value)
    except ValueError:
        raise InputError(f"expected a number, got {_quoted(value)}", path, key) from None
    if not math.isfinite(x) or x <= 0:
        raise InputError(f"must be a positive number, got {_quoted(value)}", path, key)
    if whole and x != int(x):
        raise InputError(f"must be a whole number, got {_quoted(value)}", path, key)
    return x


@dataclass(frozen=True)
class PimDevice:
    """One PIM channel: what the node's memory is divided into, and what each piece can do."""

    name: str               # INI file stem, e.g. "HBM2_1GB_2000_pim"
    channel_bytes: int      # capacity of one channel
    channel_gb: float       # same, in GiB (the "GB" of the device names)
    bandwidth_gbs: float    # per channel: bus bytes x MT/s / 1000, as the reference computes it
    latency_ns: float       # read latency CL * tCK
    idle_w: float
    peak_w: float
    source: str = field(default="", compare=False)  # the INI, for error messages

    @classmethod
    def from_ini(cls, path: str | Path) -> "PimDevice":
        """Derive channel capacity, bandwidth, latency and power the way DRAMSim3 sizes a channel.

        The HBM file also has ``num_dies = 4``; like the reference, it is ignored. Multiplying
        the banks by it would make a rank 2048 MB, one rank per channel, i.e. a 2 GB channel,
        contradicting both the device name (HBM2_1GB) and the reference's 1 GB channels.
        """
        path = Path(path)
        ini = parse_ini(path)
        n = {k: _number(ini, k, path, whole=True) for k in _COUNT_KEYS}
        n.update({k: _number(ini, k, path, whole=False) for k in _REAL_KEYS})
        if n["bus_width"] % n["device_width"]:
            raise InputError(f"must be a multiple of device_width ({n['device_width']:g})", path, "bus_width")
        devices = n["bus_width"] // n["device_width"]
        page_bytes = n["columns"] * n["device_width"] / 8
        mb_per_bank = page_bytes * (n["rows"] / 1024) / 1024
        mb_per_rank = mb_per_bank * n["bankgroups"] * n["banks_per_group"] * devices
        # A channel holds a whole number of ranks, at least one (so a small channel_size target
        # is rounded up to one rank, as DRAMSim3 does).
        ranks = max(1, math.floor(n["channel_size"] / mb_per_rank))
        channel_mb = ranks * mb_per_rank
        return cls(
            name=path.stem,
            channel_bytes=int(round(channel_mb * MIB)),
            channel_gb=channel_mb / 1024,
            bandwidth_gbs=n["bus_width"] / 8 * n["data_rate"] / 1000,
            latency_ns=n["CL"] * n["tCK"],
            idle_w=n["idle_power"] / 1000,
            peak_w=n["peak_power"] / 1000,
            source=str(path),
        )


def load_pim_device(name_or_path: str | Path, search_dirs: list[Path]) -> PimDevice:
    """Load a device from an INI path, or from a stem looked up as ``<dir>/<stem>.ini``.

    Cluster configs name devices by stem (``"HBM2_1GB_2000_pim"``), notebooks often by path.
    """
    p = Path(name_or_path)
    if p.suffix == ".ini" or p.parent != Path("."):
        return PimDevice.from_ini(p)
    for d in search_dirs:
        cand = Path(d) / f"{p.name}.ini"
        if cand.exists():   # a folder or pipe by that name is named as such, not as an unknown device
            return PimDevice.from_ini(cand)
    stems = sorted({f.stem for d in search_dirs if Path(d).is_dir() for f in Path(d).glob("*.ini")})
    dirs = ", ".join(str(d) for d in search_dirs) or "(no folders given)"
    raise InputError(
        f"unknown PIM device {p.name!r}; available: {', '.join(stems) or 'none'} (searched {dirs})",
        "argument", "pim_config")


def pim_channels(cpu_mem_gib: float, device: PimDevice) -> int:
    """How many PIM channels fit in a node's CPU memory (whole channels only)."""
    if not math.isfinite(cpu_mem_gib) or cpu_mem_gib <= 0:
        raise InputError(f"CPU memory must be a positive number of GiB, got {cpu_mem_gib!r}",
                         "argument", "cpu_mem.mem_size")
    n = int(cpu_mem_gib * GIB) // device.channel_bytes
    if n == 0:
        raise InputError(
            f"{cpu_mem_gib:g} GiB of CPU memory holds no {device.channel_gb:g} GB channel of {device.name}",
            device.source or "argument", "cpu_mem.mem_size")
    return n


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InputError(f"must be a positive integer, got {value!r}", "argument", name)
    return int(value)


def _coefficients(device: PimDevice) -> tuple[float, float]:
    stem = device.name.removesuffix("_pim")
    if stem not in BASE_COEFFICIENTS:
        known = ", ".join(f"{k}[_pim]" for k in BASE_COEFFICIENTS)
        raise InputError(f"no PIM attention latency calibration for device {device.name!r}; "
                         f"calibrated devices: {known}", device.source or device.name, "name")
    return BASE_COEFFICIENTS[stem]


class PimAttention:
    """Decode-attention time of one layer on a node's PIM channels (see the module docstring)."""

    def __init__(self, device: PimDevice, num_channels: int, n_heads: int, kv_heads: int, head_dim: int):
        self.device = device
        self.num_channels = _positive_int(num_channels, "num_channels")
        self.n_heads = _positive_int(n_heads, "n_heads")
        self.kv_heads = _positive_int(kv_heads, "kv_heads")
        self.head_dim = _positive_int(head_dim, "head_dim")
        if self.n_heads % self.kv_heads:
            raise InputError(f"n_heads ({self.n_heads}) must be a multiple of kv_heads ({self.kv_heads})",
                             "argument", "kv_heads")
        base_slope, base_intercept = _coefficients(device)
        self.slope = base_slope * (self.n_heads / self.kv_heads) / _REF_GQA_GROUP
        self.intercept = base_intercept * (self.n_heads * self.head_dim) / _REF_HIDDEN
        self.channel_split = min(self.num_channels, self.kv_heads)

    def request_ns(self, kv_lens: np.ndarray) -> np.ndarray:
        """Time of each request on each of its ``channel_split`` channels [ns]."""
        return (self.slope * kv_lens + self.intercept) / self.channel_split

    def layer_time(self, kv_lens: np.ndarray) -> tuple[float, float]:
        """``(makespan_ns, channel_busy_ns)`` of one layer for decode requests of these KV lengths.

        makespan is the most-loaded channel (the layer waits for it); channel_busy is the
        sum over channels of their busy time, which is what PIM energy is charged on.
        """
        lens = np.asarray(kv_lens, dtype=np.float64)
        if lens.ndim != 1:
            raise InputError(f"kv_lens must be one-dimensional, got shape {lens.shape}", "argument", "kv_lens")
        if lens.size == 0:
            return 0.0, 0.0
        if not np.all(np.isfinite(lens)) or lens.min() < 0:
            raise InputError("kv_lens must be finite and non-negative", "argument", "kv_lens")
        t = np.sort(self.request_ns(lens))[::-1]          # longest first
        busy = float(t.sum() * self.channel_split)
        return self._greedy_makespan(t), busy

    def _greedy_makespan(self, t: np.ndarray) -> float:
        """Max channel load after greedy longest-first placement of ``channel_split`` copies each.

        Fast path when ``channel_split`` divides ``num_channels``: think of the channels as
        ``G = num_channels / channel_split`` groups. Starting from all-equal loads, the
        ``channel_split`` copies of a request all go to the channels of one least-loaded group
        (after the first copy the rest of that group is still minimal), so every group stays
        level, and the multiset of loads (hence the makespan, whatever the tie-breaking) equals
        that of plain longest-first scheduling of one copy per request on ``G`` machines. That
        needs one heap operation per request beyond the first ``G`` instead of one per copy.
        """
        C, s = self.num_channels, self.channel_split
        if C % s == 0:
            groups = C // s
            if t.size <= groups:                           # every request gets its own group
                return float(t[0])
            heap = t[:groups].tolist()
            heapq.heapify(heap)
            for x in t[groups:].tolist():
                heapq.heapreplace(heap, heap[0] + x)
            return max(heap)
        # General case: one heap operation per copy (a channel may get two copies of one request
        # if it is still the least loaded, exactly as "least-loaded channel, s times" says).
        heap = [0.0] * C
        for x in t.tolist():
            for _ in range(s):
                heapq.heapreplace(heap, heap[0] + x)
        return max(heap)
