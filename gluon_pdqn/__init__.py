"""gluon_pdqn: train Deep Q-Networks in parallel on Apache MXNet/Gluon."""
import ctypes
import ctypes.util
import os
import platform
import sys
import warnings

__version__ = "0.1.0"

OMP_THREADS_SET_BY_USER = "OMP_NUM_THREADS" in os.environ


def physical_cores() -> int:
    """Cores this process may run on, counting a core's hyperthreads once."""
    cpus = len(os.sched_getaffinity(0))
    try:
        with open("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list") as f:
            siblings = sum(int(b) - int(a) + 1 if a else 1
                           for a, _, b in (part.partition("-") for part in f.read().strip().split(",")))
    except (OSError, ValueError):
        siblings = 1
    return max(1, cpus // max(1, siblings))


def give_mxnet_every_core() -> None:
    """Let MXNet's kernels use every physical core; call it before ``import mxnet``. The user's own
    OMP_NUM_THREADS is left alone.

    Why: MXNet gives its OpenMP kernels, oneDNN's convolutions included, half of the CPUs unless
    OMP_NUM_THREADS says otherwise: it assumes every core runs two hyperthreads. Where a core runs one thread
    that leaves half the machine idle, and convolutional networks pay: on this project's 2-core machine a
    Nature-CNN update took 49 ms with MXNet's default of one thread and 31 ms with two. Small networks pay the
    other way: the CartPole MLP's kernels are too short to share, and with two threads its updates/s fell from
    1,193 to 656 (benchmarks/threads.py). So the command line calls this only for CNNs over large frames
    (`architecture.SHARED_CORE_NETWORKS`), not for MLPs nor the small CNN of MinAtar's 10x10 grids.
    MXNet reads the variable once, when its library loads.
    """
    if OMP_THREADS_SET_BY_USER or os.environ.get("OMP_NUM_THREADS") == str(physical_cores()):
        return  # the user's choice, or an earlier call took effect before MXNet loaded
    if "mxnet" in sys.modules:
        warnings.warn("mxnet is already imported: its kernels keep to half the CPUs (set OMP_NUM_THREADS before "
                      "importing it)", stacklevel=2)
        return
    os.environ["OMP_NUM_THREADS"] = str(physical_cores())


def flush_denormals() -> bool:
    """Flush subnormal floats to zero in this thread and in every thread it starts from now on (MXNet's engine
    workers and OpenMP's included: a new thread inherits its creator's floating-point environment). Returns
    whether it took effect; ``GLUON_PDQN_KEEP_DENORMALS=1`` in the environment keeps them.

    Why: x86 CPUs take about a hundred times longer over a subnormal operand, and an optimizer's state sinks into
    that range wherever a weight's gradient stays zero (a ReLU unit that no longer fires, an input channel that
    stays empty): RMSProp's and Adam's averages decay by a constant factor a step, and the smallest subnormal
    times 0.95 rounds back to itself, so they stay there. Measured (benchmarks/subnormals.py): MXNet's
    ``adam_update`` over 131,072 weights took 9.2 ms with its state subnormal against 0.24 ms; a MinAtar Freeway
    run held 46,138 subnormals in its optimizer's state at 500k frames, and resumed from there ran 1.97x as fast
    with them flushed. Only values below 1.2e-38 change. Unlike TensorFlow and JAX, which flush inside their own
    compute threads, this covers the whole process: numpy, the environments, the user's code. Import gluon_pdqn
    before running MXNet operations, so that MXNet's worker threads start after it.

    Linux on 64-bit x86 (MXCSR's FTZ and DAZ bits) and aarch64 (FPCR's FZ bit); elsewhere it does nothing.
    """
    if os.environ.get("GLUON_PDQN_KEEP_DENORMALS", "") not in ("", "0"):
        return False
    machine = platform.machine().lower()
    if (not sys.platform.startswith("linux") or machine not in ("x86_64", "amd64", "aarch64", "arm64")
            or ctypes.sizeof(ctypes.c_void_p) != 8):
        return False
    import numpy as np

    for dtype in (np.float16, np.float32, np.float64, np.longdouble):
        np.finfo(dtype)  # cached now: computed after, it warns that the smallest subnormal is zero
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    except OSError:
        return False
    # glibc's fenv_t: on x86_64 32 bytes, the x87 environment then MXCSR; on aarch64 FPCR then FPSR.
    env = (ctypes.c_uint32 * 8)()
    if libm.fegetenv(env) != 0:
        return False
    if machine in ("x86_64", "amd64"):
        env[7] |= 0x8000 | 0x0040  # MXCSR: flush-to-zero (results) and denormals-are-zero (operands)
    else:
        env[0] |= 1 << 24  # FPCR.FZ
    if libm.fesetenv(env) != 0:
        return False
    return float(np.float32(1e-40)) == 0.0  # the conversion's subnormal result is flushed only if it took


DENORMALS_FLUSHED = flush_denormals()  # before any MXNet thread starts
