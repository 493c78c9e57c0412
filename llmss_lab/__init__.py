"""llmss_lab: explore LLM serving infrastructure with a fast, profile-driven vLLM-V1 simulator.

The public names load on first use (PEP 562), so ``llmss --help`` and light imports do not pay for
numpy, xarray and the kernel.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "simulate": ".api",
    "ClusterSpec": ".config", "EngineConfig": ".config", "InstanceSpec": ".config", "MemorySpec": ".config",
    "ModelSpec": ".config", "NodeSpec": ".config", "load_cluster": ".config",
    "ClusterStartError": ".errors", "InputError": ".errors", "LlmssError": ".errors", "RunInterrupted": ".errors",
    "Results": ".results.dataset",
    "Scenario": ".scenario",
    "SLO": ".sweeps", "capacity": ".sweeps", "pareto_front": ".sweeps", "sweep": ".sweeps",
    "LengthDist": ".workload", "Workload": ".workload", "load_trace": ".workload", "synthetic": ".workload",
}

__all__ = ["simulate", "Results", "load_results", "ClusterSpec", "EngineConfig", "InstanceSpec", "MemorySpec",
           "ModelSpec", "NodeSpec", "load_cluster", "InputError", "LlmssError", "ClusterStartError", "RunInterrupted",
           "Workload", "LengthDist", "load_trace", "synthetic", "Scenario", "sweep", "capacity", "SLO", "pareto_front",
           "__version__"]

if TYPE_CHECKING:
    from .api import simulate
    from .config import ClusterSpec, EngineConfig, InstanceSpec, MemorySpec, ModelSpec, NodeSpec, load_cluster
    from .errors import ClusterStartError, InputError, LlmssError, RunInterrupted
    from .results.dataset import Results
    from .scenario import Scenario
    from .sweeps import SLO, capacity, pareto_front, sweep
    from .workload import LengthDist, Workload, load_trace, synthetic


def __getattr__(name: str):
    if name == "load_results":
        return __getattr__("Results").load
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llmss_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
