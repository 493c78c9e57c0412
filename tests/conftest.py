"""Shared fixtures. Reference data is read in place from ../shared/reference (or $LLMSS_REFERENCE_DIR)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from llmss_lab.config.engine import EngineConfig
from llmss_lab.kernel.kv_cache import KVCacheManager
from llmss_lab.kernel.requests import RequestTable
from llmss_lab.kernel.scheduler import VLLMV1Scheduler
from llmss_lab.kernel.simulator import InstanceSetup
from llmss_lab.latency.iteration import BatchShape, StepTime

ROOT = Path(__file__).resolve().parent.parent

# Property tests draw the same examples on every run (a failure in CI is one a rerun shows again) and keep no
# example database in the checkout; a test's own @settings still sets its example count.
settings.register_profile("llmss", derandomize=True, database=None)
settings.load_profile("llmss")


def reference_root() -> Path:
    env = os.environ.get("LLMSS_REFERENCE_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "reference" / "llmservingsim"


@pytest.fixture(scope="session")
def ref() -> Path:
    p = reference_root()
    if not p.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"reference data missing at {p}")
        pytest.skip(f"reference data not found at {p} (set LLMSS_REFERENCE_DIR)")
    return p


@contextmanager
def alarm(seconds: int):
    """A call that takes this long is stuck: fail it instead of hanging CI."""
    def stuck(signum, frame):
        raise TimeoutError(f"no result after {seconds} s")
    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def free_port() -> int:
    """A free loopback port for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Stop a server a test started: politely, then for sure."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


class ConstantLatency:
    """A latency model for hand-worked schedules: every step takes the same time."""

    def __init__(self, step_ns: float = 1e6):
        self.step_ns = step_ns
        self.shapes: list[BatchShape] = []
        self.layers = 1

    def step(self, b: BatchShape, padded_tokens=None, routing=None, ep_group_tokens=None) -> StepTime:
        self.shapes.append(b)
        return StepTime(self.step_ns, 0.0, 0.0, stages=(self.step_ns,))


def make_scheduler(prompts, outputs, engine: EngineConfig, num_blocks: int, token_ids=None):
    n = len(prompts)
    R = RequestTable(np.zeros(n, np.int64), np.array(prompts), np.array(outputs))
    kv = KVCacheManager(num_blocks, engine.block_size, engine.enable_prefix_caching)
    s = VLLMV1Scheduler(engine, kv, R, max_model_len=1 << 20)
    for i in range(n):
        s.add(i, None if token_ids is None else token_ids[i])
    return s, R


def setup(engine: EngineConfig, num_blocks: int, latency=None) -> InstanceSetup:
    return InstanceSetup("test", engine, latency or ConstantLatency(), num_blocks, 1 << 20, {})


def local_dask_client(n_workers: int):
    """A LocalCluster of worker processes and its client, for a module-scoped fixture to yield from."""
    from llmss_lab.sweeps import local_client

    with local_client(n_workers) as c:
        yield c


def linked_root(ref: Path, at: Path) -> Path:
    """A reference root of our own at ``at``: links to ``ref``'s folders, so that a write refused at its top level
    would have landed in a scratch folder, never in the real data."""
    at.mkdir()
    for folder in ("configs", "profiles", "workloads"):
        (at / folder).symlink_to(ref / folder)
    return at
