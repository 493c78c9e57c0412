"""Config and specs: the first room. Nothing here knows about the kernel."""
from .cluster import ClusterSpec, InstanceSpec, MemorySpec, NodeSpec, load_cluster
from .engine import EngineConfig
from .model import ModelSpec

__all__ = ["ClusterSpec", "InstanceSpec", "MemorySpec", "NodeSpec", "load_cluster", "EngineConfig", "ModelSpec"]
