"""PIM devices (from the reference INIs) and the PIM decode-attention latency model."""
from __future__ import annotations

import heapq
from pathlib import Path

import numpy as np
import pytest

from llmss_lab.errors import InputError
from llmss_lab.latency.pim import PimAttention, PimDevice, load_pim_device, pim_channels

# NOTES-simulator.md 3.4: capacity GB, BW GB/s per channel, latency ns, idle / peak mW.
TABLE = {
    "DDR4_8GB_3200_pim": (8, 25.6, 13.86, 623, 3803),
    "HBM2_1GB_2000_pim": (1, 32.0, 14.00, 160, 760),
    "LPDDR4X_2GB_4266_pim": (2, 8.532, 16.848, 70, 771),
    "LPDDR5_2GB_6400_pim": (2, 12.8, 10.625, 71, 877),
}

GOOD_INI = """\
# a small test device
[dram_structure]
protocol = DDR4
bankgroups = 2
banks_per_group = 4
rows = 65536
columns = 1024
device_width = 16

[timing]   # cycles
tCK = 0.63
CL = 22

[system]
channel_size = 8192   # MB
bus_width = 64

[other]
data_rate = 3200 # MT/s
idle_power = 623 # mW
peak_power = 3803 # mW
"""


@pytest.fixture(scope="module")
def pim_dirs(ref) -> list[Path]:
    return [ref / "configs" / "pim", ref / "ispass26" / "pim_config"]


# ---------------------------------------------------------------- devices


@pytest.mark.parametrize("stem", sorted(TABLE))
@pytest.mark.parametrize("folder", ["configs/pim", "ispass26/pim_config"])
def test_device_numbers_match_table(ref, stem, folder):
    gb, bw, lat, idle, peak = TABLE[stem]
    d = PimDevice.from_ini(ref / folder / f"{stem}.ini")
    assert d.name == stem
    assert d.channel_bytes == gb * 2**30
    assert d.channel_gb == gb
    assert d.bandwidth_gbs == pytest.approx(bw)
    assert d.latency_ns == pytest.approx(lat)
    assert d.idle_w == pytest.approx(idle / 1000)
    assert d.peak_w == pytest.approx(peak / 1000)


def test_load_by_stem_and_path(pim_dirs):
    by_stem = load_pim_device("LPDDR5_2GB_6400_pim", pim_dirs)
    by_path = load_pim_device(pim_dirs[0] / "LPDDR5_2GB_6400_pim.ini", [])
    assert by_stem == by_path
    assert load_pim_device(str(pim_dirs[0] / "LPDDR5_2GB_6400_pim.ini"), []) == by_stem


def test_unknown_stem_lists_available(pim_dirs):
    with pytest.raises(InputError) as e:
        load_pim_device("GDDR7_pim", pim_dirs)
    msg = str(e.value)
    assert "GDDR7_pim" in msg
    for stem in TABLE:
        assert stem in msg


def test_pim_channels():
    d = PimDevice("X", 2**30, 1.0, 32.0, 14.0, 0.16, 0.76)
    assert pim_channels(256, d) == 256
    assert pim_channels(1.5, d) == 1
    d8 = PimDevice("Y", 8 * 2**30, 8.0, 25.6, 13.86, 0.623, 3.803)
    assert pim_channels(512, d8) == 64
    with pytest.raises(InputError):
        pim_channels(4, d8)          # less than one channel
    with pytest.raises(InputError):
        pim_channels(0, d8)


def test_good_ini_written_by_hand(tmp_path):
    p = tmp_path / "DDR4_8GB_3200.ini"
    p.write_text(GOOD_INI)
    d = PimDevice.from_ini(p)
    assert d.name == "DDR4_8GB_3200"
    assert d.channel_bytes == 8 * 2**30
    # Calibrated without the _pim suffix too.
    assert PimAttention(d, 64, 32, 8, 128).slope == pytest.approx(333.2538)


def test_small_channel_size_rounds_up_to_one_rank(tmp_path):
    p = tmp_path / "dev.ini"
    p.write_text(GOOD_INI.replace("channel_size = 8192", "channel_size = 1000"))
    assert PimDevice.from_ini(p).channel_bytes == 4096 * 2**20     # one 4096 MB rank


@pytest.mark.parametrize("key,old,new,fragment", [
    ("CL", "CL = 22", "", "missing"),
    ("tCK", "tCK = 0.63", "tCK = fast", "number"),
    ("data_rate", "data_rate = 3200", "data_rate = 0", "positive"),
    ("idle_power", "idle_power = 623", "idle_power = -5", "positive"),
    ("rows", "rows = 65536", "rows = 655.36", "whole"),
    ("bus_width", "bus_width = 64", "bus_width = 40", "multiple"),
    ("peak_power", "peak_power = 3803", "peak_power = nan", "positive"),
])
def test_bad_ini_names_file_and_key(tmp_path, key, old, new, fragment):
    p = tmp_path / "bad.ini"
    assert old in GOOD_INI
    p.write_text(GOOD_INI.replace(old, new))
    with pytest.raises(InputError) as e:
        PimDevice.from_ini(p)
    assert e.value.source == str(p)
    assert e.value.where == key
    assert fragment in e.value.message


def test_bad_ini_structure(tmp_path):
    p = tmp_path / "dup.ini"
    p.write_text(GOOD_INI + "\n[extra]\nCL = 20\n")
    with pytest.raises(InputError) as e:
        PimDevice.from_ini(p)
    assert (e.value.source, e.value.where) == (str(p), "CL")

    p = tmp_path / "junk.ini"
    p.write_text(GOOD_INI + "\njust some words\n")
    with pytest.raises(InputError) as e:
        PimDevice.from_ini(p)
    assert e.value.source == str(p) and e.value.where.startswith("line ")

    p = tmp_path / "one_long_line.ini"      # a path given by mistake: the message quotes it cut short
    p.write_text("x" * 5000 + "\n")
    with pytest.raises(InputError) as e:
        PimDevice.from_ini(p)
    assert (e.value.where, e.value.message) == ("line 1", f"expected 'key = value', got {'x' * 60 + '...'!r}")

    p.write_text(f"{'k' * 5000} = 1\n{'k' * 5000} = 2\n")      # so is a long key given twice
    with pytest.raises(InputError) as e:
        PimDevice.from_ini(p)
    assert (e.value.where, e.value.message) == ("k" * 60 + "...", "key given twice (lines 1 and 2)")
    p.write_text(GOOD_INI.replace("CL = ", f"CL = {'9' * 5000}x #"))   # and a long value that is not a number
    with pytest.raises(InputError) as e:
        PimDevice.from_ini(p)
    assert (e.value.where, e.value.message) == ("CL", f"expected a number, got {'9' * 60 + '...'!r}")
    p.write_text(GOOD_INI.replace("CL = ", f"CL = -{'9' * 5000} #"))     # a number, but -inf
    with pytest.raises(InputError) as e:
        PimDevice.from_ini(p)
    assert (e.value.where, e.value.message) == ("CL", f"must be a positive number, got {'-' + '9' * 59 + '...'!r}")


def test_missing_and_non_utf8_file(tmp_path):
    missing = tmp_path / "nope.ini"
    with pytest.raises(InputError) as e:
        load_pim_device(missing, [])
    assert e.value.source == str(missing)
    binary = tmp_path / "bin.ini"
    binary.write_bytes(b"rows = \xff\xfe\n")
    with pytest.raises(InputError) as e:
        PimDevice.from_ini(binary)
    assert e.value.source == str(binary)


def test_uncalibrated_device(tmp_path):
    p = tmp_path / "GDDR6_2GB_pim.ini"
    p.write_text(GOOD_INI)
    d = PimDevice.from_ini(p)
    with pytest.raises(InputError) as e:
        PimAttention(d, 8, 32, 8, 128)
    assert e.value.source == str(p)
    assert "HBM2_1GB_2000" in e.value.message and "GDDR6_2GB_pim" in e.value.message


# ---------------------------------------------------------------- latency model

S, I = 242.0548, 14513.5015     # HBM2 base slope / intercept [ns]


def test_llama8b_hbm2_hand_computed(pim_dirs):
    dev = load_pim_device("HBM2_1GB_2000_pim", pim_dirs)
    C = pim_channels(256, dev)
    assert C == 256
    att = PimAttention(dev, C, n_heads=32, kv_heads=8, head_dim=128)
    assert att.channel_split == 8
    # One request of L = 128: 8 copies of (S*128 + I)/8 on 8 different idle channels.
    per = (S * 128 + I) / 8
    assert att.layer_time(np.array([128])) == pytest.approx((per, 8 * per))
    # 32 requests fill the 32 groups of 8 channels one each: makespan = the longest one.
    lens = np.arange(1, 33) * 100
    mk, busy = att.layer_time(lens)
    assert mk == pytest.approx((S * 3200 + I) / 8)
    assert busy == pytest.approx(sum(S * L + I for L in lens.tolist()))
    # 33 requests of equal length: the 33rd lands on a group that already has one -> 2x.
    mk, _ = att.layer_time(np.full(33, 1000))
    assert mk == pytest.approx(2 * (S * 1000 + I) / 8)
    assert att.layer_time(np.array([], dtype=np.int64)) == (0.0, 0.0)


def test_scaling_with_model_shape(pim_dirs):
    dev = load_pim_device("HBM2_1GB_2000_pim", pim_dirs)
    # 64 heads, 8 KV heads, head_dim 128 (Llama-70B-like): slope x2, intercept x2.
    att = PimAttention(dev, 4, n_heads=64, kv_heads=8, head_dim=128)
    assert att.channel_split == 4
    assert att.slope == pytest.approx(2 * S) and att.intercept == pytest.approx(2 * I)
    # Two requests on 4 channels, split 4: each channel gets both.
    mk, busy = att.layer_time(np.array([10, 20]))
    expect = (2 * S * 10 + 2 * I) / 4 + (2 * S * 20 + 2 * I) / 4
    assert mk == pytest.approx(expect) and busy == pytest.approx(4 * expect)


def test_bad_attention_arguments(pim_dirs):
    dev = load_pim_device("HBM2_1GB_2000_pim", pim_dirs)
    for args in [(0, 32, 8, 128), (8, 32, 0, 128), (8, 30, 8, 128), (8, 32, 8, -1), (8.5, 32, 8, 128)]:
        with pytest.raises(InputError):
            PimAttention(dev, *args)
    att = PimAttention(dev, 8, 32, 8, 128)
    for bad in [np.array([-1, 5]), np.array([np.nan]), np.ones((2, 2))]:
        with pytest.raises(InputError):
            att.layer_time(bad)


def brute_force(att: PimAttention, lens: np.ndarray) -> tuple[float, float]:
    """Greedy placement exactly as described: every copy to the currently least-loaded channel."""
    loads = [0.0] * att.num_channels
    for L in sorted(lens.tolist(), reverse=True):
        t = (att.slope * L + att.intercept) / att.channel_split
        for _ in range(att.channel_split):
            heapq.heapreplace(loads, loads[0] + t)
    return max(loads), sum(loads)


@pytest.mark.parametrize("channels,kv_heads", [(256, 8), (64, 8), (12, 8), (5, 8), (3, 2), (1, 8), (16, 16)])
def test_fast_path_matches_brute_force_and_balances(pim_dirs, channels, kv_heads):
    dev = load_pim_device("HBM2_1GB_2000_pim", pim_dirs)
    att = PimAttention(dev, channels, 32, kv_heads, 128)
    rng = np.random.default_rng(channels * 100 + kv_heads)
    for n in [1, 3, 31, 33, 100, 257]:
        lens = rng.integers(1, 8192, size=n)
        mk, busy = att.layer_time(lens)
        bmk, bbusy = brute_force(att, lens)
        assert mk == pytest.approx(bmk, rel=1e-12)
        assert busy == pytest.approx(bbusy, rel=1e-12)
        biggest = float(att.request_ns(lens.astype(float)).max())
        assert mk <= busy / channels + biggest * (1 + 1e-12)
        assert mk >= busy / channels * (1 - 1e-12)
