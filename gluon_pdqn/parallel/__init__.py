"""Devices and parallel machinery: context parsing (the only place that names MXNet devices)."""
from .contexts import parse_contexts

__all__ = ["parse_contexts"]
