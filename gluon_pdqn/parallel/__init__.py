"""Devices and parallel machinery: context parsing (the only place that names MXNet devices), the topology."""
from .contexts import parse_contexts
from .topology import Topology, make_topology

__all__ = ["Topology", "make_topology", "parse_contexts"]
