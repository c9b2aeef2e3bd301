"""Experience replay (numpy): per-environment frame rings, n-step transitions, prioritized sampling."""
from .buffer import Batch, ReplayBuffer, available_memory_bytes
from .sum_tree import SumTree

__all__ = ["Batch", "ReplayBuffer", "SumTree", "available_memory_bytes"]
