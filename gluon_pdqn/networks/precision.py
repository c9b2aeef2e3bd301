"""Lower-precision compute for Q-networks: bf16 on CPUs that have it, fp16 on GPUs; fp32 master weights.

A network is lowered by converting its graph with MXNet's AMP (``amp.convert_symbol``): casts to the low
precision go in front of the convolutions and dense layers, whose kernels then run in bf16 or fp16 (oneDNN's
bf16 kernels on CPUs with avx512_bf16 or AMX), while every parameter stays an fp32 array shared with the
original network. So the optimizer updates fp32 master weights, checkpoints are unchanged, and gradients
arrive in fp32 through the casts. Measured on a 2-core CPU with avx512_bf16 (Nature CNN, batch 32): forward
7.7 -> 4.0 ms, forward + backward 25 -> 14 ms. At batch 1 the casts cost more than they save (0.46 -> 0.71
ms), so acting one observation at a time stays in fp32.

``amp.init()`` is not used: it patches every MXNet operator process-wide, and a whole training step under it
took 79 ms against 27 ms in fp32 here.
"""
from __future__ import annotations

import mxnet as mx
from mxnet import gluon

from ..errors import UserError

_AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (empty where /proc/cpuinfo cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (avx512_bf16 or AMX), which oneDNN's bf16 kernels need."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def check_precision(precision: str, contexts: list[mx.Context]) -> None:
    """Refuse a precision these devices cannot run, in one line naming what would work."""
    kinds = {ctx.device_type for ctx in contexts}
    if precision == "bf16":
        if kinds != {"cpu"}:
            raise UserError("run.precision=bf16 runs on CPUs only (MXNet 1.9 has no bf16 GPU kernels); "
                            "use fp16 on GPUs")
        if not cpu_has_bf16():
            raise UserError("run.precision=bf16 needs a CPU with avx512_bf16 or AMX, which this one lacks; "
                            "use fp32")
    if precision == "fp16" and kinds != {"gpu"}:
        raise UserError("run.precision=fp16 needs GPU devices (MXNet has no fp16 CPU kernels); on a CPU use "
                        "bf16 where it has avx512_bf16, else fp32")


def lower_precision(block: gluon.HybridBlock, precision: str) -> gluon.HybridBlock:
    """``block`` computing in ``precision``, sharing its (fp32) parameters; ``block`` itself for fp32.

    The result is a SymbolBlock of one input, which composes inside other hybridized blocks (the loss graph).
    """
    if precision == "fp32":
        return block
    from mxnet.contrib import amp

    data = mx.sym.var("data")
    converted = amp.convert_symbol(block(data), target_dtype=_AMP_DTYPES[precision])
    return gluon.SymbolBlock(converted, data, params=block.collect_params())
