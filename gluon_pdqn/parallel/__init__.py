"""Devices and parallel machinery: context parsing (the only place that names MXNet devices)."""
from .contexts import describe_contexts, parse_contexts

__all__ = ["describe_contexts", "parse_contexts"]
