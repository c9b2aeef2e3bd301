"""Parsing device lists (``cpu:0``, ``gpu:0-3``, ``gpu:0,gpu:2``) into MXNet contexts, checked against the machine."""
from __future__ import annotations

import re

import mxnet as mx

from ..errors import UserError

_ITEM = re.compile(r"^(cpu|gpu)(?::(\d+)(?:-(\d+))?)?$")


def parse_contexts(text: str) -> list[mx.Context]:
    """Contexts named by ``text``; a GPU the machine does not have is an error naming what it does have."""
    contexts: list[mx.Context] = []
    for item in (part.strip().lower() for part in text.split(",")):
        match = _ITEM.match(item)
        if not match:
            raise UserError(f"malformed --ctx item '{item}' in '{text}'; use e.g. cpu:0, gpu:0, gpu:0-3, "
                            "gpu:0,gpu:2")
        kind, first, last = match.group(1), int(match.group(2) or 0), match.group(3)
        last = int(last) if last is not None else first
        if last < first:
            raise UserError(f"empty device range '{item}' in --ctx")
        for index in range(first, last + 1):
            contexts.append(mx.gpu(index) if kind == "gpu" else mx.cpu(index))
    if len(set(contexts)) != len(contexts):
        raise UserError(f"--ctx '{text}' names a device twice")
    gpus = [c.device_id for c in contexts if c.device_type == "gpu"]
    if gpus:
        available = mx.context.num_gpus()
        missing = [g for g in gpus if g >= available]
        if missing:
            seen = f"{available} GPU(s)" if available else "no GPU"
            build = "" if mx.runtime.Features().is_enabled("CUDA") else " (this mxnet build has no CUDA; see README)"
            raise UserError(f"--ctx asks for gpu:{missing[0]} but MXNet sees {seen}{build}")
    return contexts

