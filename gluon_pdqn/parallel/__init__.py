"""Devices and parallel machinery: context parsing (the only place that names MXNet devices), the topology,
the kvstore, and the launcher of parameter-server jobs.

The names below are loaded when first used: the launcher and the remote watcher of ``launch --launcher ssh``
(``parallel.remote``) run without MXNet, which takes seconds to import.
"""
import importlib

_EXPORTS = {"parse_contexts": ".contexts", "Topology": ".topology", "make_topology": ".topology"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
