"""Does the kernel's step log waste memory as it grows? Over-allocation and fragmentation on a long run.

Run: python benchmarks/bench_steplog.py [--reference-dir ROOT] [--requests 100000] [--tracemalloc]
One fresh process runs the kernel alone (bench_scaling.py's workload: Llama-3.1-8B on an RTX PRO 6000, seeded
ShareGPT-like requests at 8 req/s) and prints, when it returns:
* the step log's values against the bytes its typed arrays hold (``sys.getsizeof``: CPython's array grows by about
  1/16 on each resize, so up to ~6 % can be slack);
* glibc's heap (mallinfo2): bytes in use, bytes free but kept (what fragmentation would hold), bytes in mmapped
  chunks (large arrays: glibc resizes those with mremap, which copies nothing and leaves no hole) and how much of
  the step log sits in the heap, where a resize that cannot grow in place moves the array and leaves a hole
  (glibc maps a block only above its mmap threshold, which rises to the size of each mapped block freed);
* the process's RSS now and at its peak;
* with --tracemalloc, Python's allocations at their peak against at the end (traced runs are ~2x slower).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from machine import banner, default_reference_dir

CHILD = """
import ctypes, json, sys, time, tracemalloc
from array import array
import llmss_lab as ll
from llmss_lab.kernel import simulator

n, ref, traced = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
kept = {}
run = simulator.run

def timed(*a, **k):
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    raw = kept["raw"] = run(*a, **k)
    kept["kernel_s"] = time.perf_counter() - t0
    if traced:
        kept["traced"] = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    raise SystemExit   # the kernel alone: results are not built

class Mallinfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]

simulator.run = timed
spec = ll.ClusterSpec.single("meta-llama/Llama-3.1-8B", "RTXPRO6000", mem_size=96, mem_bw=1597)
try:
    ll.simulate(spec, ll.synthetic(n, rate=8, seed=1), reference_dir=ref)
except SystemExit:
    pass
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
m = libc.mallinfo2()
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
log = kept["raw"].instances[0].log
cols = [v for v in vars(log).values() if isinstance(v, array)]
empty = sys.getsizeof(array("d"))
heap = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in open("/proc/self/maps") if "[heap]" in line]
in_heap = sum(sys.getsizeof(c) - empty for c in cols if any(lo <= c.buffer_info()[0] < hi for lo, hi in heap))
out = {"steps": len(log.start), "in_heap_mb": in_heap / 2**20, "kernel_s": kept["kernel_s"], "columns": len(cols),
       "values_mb": sum(len(c) * c.itemsize for c in cols) / 2**20,
       "held_mb": sum(sys.getsizeof(c) - empty for c in cols) / 2**20,
       "heap_used_mb": m.uordblks / 2**20, "heap_free_mb": m.fordblks / 2**20, "mmapped_mb": m.hblkhd / 2**20,
       "rss_mb": int(status["VmRSS"].split()[0]) / 1024, "hwm_mb": int(status["VmHWM"].split()[0]) / 1024}
if traced:
    out["traced_now_mb"], out["traced_peak_mb"] = (x / 2**20 for x in kept["traced"])
print(json.dumps(out))
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reference-dir", default=default_reference_dir())
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--tracemalloc", action="store_true", help="trace Python's allocations (about 2x slower)")
    args = p.parse_args()
    print(banner())
    run = subprocess.run([sys.executable, "-c", CHILD, str(args.requests), args.reference_dir,
                          "1" if args.tracemalloc else "0"], capture_output=True, text=True, check=True)
    r = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"{args.requests} requests, {r['steps']} steps, kernel {r['kernel_s']:.1f} s")
    print(f"step log: {r['columns']} columns, values {r['values_mb']:.1f} MB, arrays hold {r['held_mb']:.1f} MB "
          f"({(r['held_mb'] / r['values_mb'] - 1) * 100:+.1f} %)")
    print(f"glibc heap: in use {r['heap_used_mb']:.1f} MB, free but kept {r['heap_free_mb']:.1f} MB; "
          f"mmapped chunks {r['mmapped_mb']:.1f} MB; {r['in_heap_mb']:.1f} MB of the step log in the heap")
    print(f"RSS {r['rss_mb']:.0f} MB, peak {r['hwm_mb']:.0f} MB")
    if args.tracemalloc:
        print(f"tracemalloc over the kernel: {r['traced_now_mb']:.1f} MB at the end, {r['traced_peak_mb']:.1f} MB "
              "at the peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
