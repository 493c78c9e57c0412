"""A node's ``power`` section of the cluster JSON, as LLMServingSim writes it.

Watts for powers, pJ/bit for transfer energies, GB (= GiB) for the DIMM size and seconds for how
long an NPU stays in standby after its last step (the reference code's unit; its docs say ns).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .reader import Section

COMPONENTS = ("base_node", "npu", "cpu", "dram", "link", "nic", "storage")
MAX_WATTS = 1e6          # one component of one node: a megawatt means a unit slip (mW, kW)
MAX_PJ_PER_BIT = 1e4     # DRAM and links take ~1-20 pJ/bit
MIN_DIMM_GB, MAX_DIMM_GB = 0.25, 4096   # DIMMs hold 0.25-512 GB; the DIMM count (cpu_mem / dimm_size) sets DRAM idle power
MAX_DEVICES = 4096       # links, NICs or disks of one node


@dataclass(frozen=True)
class NpuPower:
    idle_w: float
    standby_w: float
    active_w: float
    standby_s: float


@dataclass(frozen=True)
class PowerSpec:
    base_node_w: float
    npu: dict[str, NpuPower]        # by hardware name
    cpu_idle_w: float
    cpu_active_w: float
    cpu_util: float                 # background utilisation of the host CPU
    dram_dimm_gb: float
    dram_idle_w: float              # per DIMM
    dram_pj_per_bit: float
    link_count: int
    link_idle_w: float
    link_pj_per_bit: float
    nic_count: int
    nic_idle_w: float
    storage_count: int
    storage_idle_w: float

    # the reference model assumes the host CPU runs at 70 % while an NPU computes
    CPU_BUSY_UTIL = 0.7

    def npu_of(self, hardware: str, source: str, where: str) -> NpuPower:
        p = self.npu.get(hardware)
        if p is None:
            raise InputError(f"no NPU power entry for hardware {hardware!r} (entries: {sorted(self.npu)})",
                             source, f"{where}.npu")
        return p

    @property
    def cpu_busy_extra_w(self) -> float:
        """Extra CPU power while an NPU computes."""
        return (self.cpu_active_w - self.cpu_idle_w) * max(self.CPU_BUSY_UTIL - self.cpu_util, 0.0)

    def static_w(self, cpu_mem_gib: float, npus: dict[str, int], dram_idle_override_w: float | None = None
                 ) -> dict[str, float]:
        """Power drawn all the time, per component: idle NPUs, the CPU at its background load,
        every DIMM (``cpu_mem // dimm_size`` of them, or a PIM device's channels), links, NICs, disks."""
        dram = (dram_idle_override_w if dram_idle_override_w is not None
                else self.dram_idle_w * int(cpu_mem_gib // self.dram_dimm_gb))
        return {
            "base_node": self.base_node_w,
            "npu": sum(self.npu[hw].idle_w * n for hw, n in npus.items()),
            "cpu": self.cpu_idle_w + (self.cpu_active_w - self.cpu_idle_w) * self.cpu_util,
            "dram": dram,
            "link": self.link_idle_w * self.link_count,
            "nic": self.nic_idle_w * self.nic_count,
            "storage": self.storage_idle_w * self.storage_count,
        }


def parse_power(s: Section) -> PowerSpec:
    s.reject_unknown(("base_node_power", "npu", "cpu", "dram", "link", "nic", "storage"))
    npu_s = s.section("npu")
    if not npu_s.data:
        raise s.error("npu", "needs one entry per hardware name")
    npus = {}
    for hw in npu_s.data:
        e = npu_s.section(hw)
        e.reject_unknown(("idle_power", "standby_power", "active_power", "standby_duration"))
        idle = e.number("idle_power", minimum=0, maximum=MAX_WATTS)
        active = e.number("active_power", minimum=0, maximum=MAX_WATTS)
        standby = e.number("standby_power", required=False, default=idle, minimum=0, maximum=MAX_WATTS)
        if active < idle:
            raise e.error("active_power", f"{active} W is below idle_power {idle} W")
        if not idle <= standby <= active:
            raise e.error("standby_power", f"{standby} W is outside idle_power {idle} W .. active_power {active} W "
                                           "(a GPU kept warm between steps draws between the two)")
        npus[hw] = NpuPower(idle, standby, active, e.number("standby_duration", required=False, default=0, minimum=0))
    cpu = s.section("cpu")
    cpu.reject_unknown(("idle_power", "active_power", "util"))
    dram = s.section("dram")
    dram.reject_unknown(("dimm_size", "idle_power", "energy_per_bit"))
    link = s.section("link", required=False) or Section.of({}, s.source, s.key("link"))
    link.reject_unknown(("num_links", "idle_power", "energy_per_bit"))
    nic = s.section("nic", required=False) or Section.of({}, s.source, s.key("nic"))
    nic.reject_unknown(("num_nics", "idle_power"))
    sto = s.section("storage", required=False) or Section.of({}, s.source, s.key("storage"))
    sto.reject_unknown(("num_devices", "idle_power"))
    cpu_idle = cpu.number("idle_power", minimum=0, maximum=MAX_WATTS)
    cpu_active = cpu.number("active_power", minimum=0, maximum=MAX_WATTS)
    if cpu_active < cpu_idle:
        raise cpu.error("active_power", f"{cpu_active} W is below idle_power {cpu_idle} W")
    return PowerSpec(
        base_node_w=s.number("base_node_power", minimum=0, maximum=MAX_WATTS),
        npu=npus,
        cpu_idle_w=cpu_idle,
        cpu_active_w=cpu_active,
        cpu_util=cpu.number("util", minimum=0, maximum=1),
        dram_dimm_gb=dram.number("dimm_size", minimum=MIN_DIMM_GB, maximum=MAX_DIMM_GB),
        dram_idle_w=dram.number("idle_power", minimum=0, maximum=MAX_WATTS),
        dram_pj_per_bit=dram.number("energy_per_bit", minimum=0, maximum=MAX_PJ_PER_BIT),
        link_count=link.integer("num_links", required=False, default=0, minimum=0, maximum=MAX_DEVICES),
        link_idle_w=link.number("idle_power", required=False, default=0, minimum=0, maximum=MAX_WATTS),
        link_pj_per_bit=link.number("energy_per_bit", required=False, default=0, minimum=0, maximum=MAX_PJ_PER_BIT),
        nic_count=nic.integer("num_nics", required=False, default=0, minimum=0, maximum=MAX_DEVICES),
        nic_idle_w=nic.number("idle_power", required=False, default=0, minimum=0, maximum=MAX_WATTS),
        storage_count=sto.integer("num_devices", required=False, default=0, minimum=0, maximum=MAX_DEVICES),
        storage_idle_w=sto.number("idle_power", required=False, default=0, minimum=0, maximum=MAX_WATTS),
    )
