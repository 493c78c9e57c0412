"""llmss_lab: explore LLM serving infrastructure with a fast, profile-driven vLLM-V1 simulator."""
__version__ = "0.1.0"

from .api import simulate  # noqa: E402
from .config import ClusterSpec, EngineConfig, InstanceSpec, MemorySpec, ModelSpec, NodeSpec, load_cluster  # noqa: E402
from .errors import InputError, LlmssError  # noqa: E402
from .results.dataset import Results  # noqa: E402
from .scenario import Scenario  # noqa: E402
from .sweeps import SLO, capacity, pareto_front, sweep  # noqa: E402
from .workload import LengthDist, Workload, load_trace, synthetic  # noqa: E402

load_results = Results.load

__all__ = ["simulate", "Results", "load_results", "ClusterSpec", "EngineConfig", "InstanceSpec", "MemorySpec",
           "ModelSpec", "NodeSpec", "load_cluster", "InputError", "LlmssError", "Workload", "LengthDist",
           "load_trace", "synthetic", "Scenario", "sweep", "capacity", "SLO", "pareto_front", "__version__"]
