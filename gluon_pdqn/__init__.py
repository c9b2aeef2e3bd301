"""gluon_pdqn: train Deep Q-Networks in parallel on Apache MXNet/Gluon."""
import os
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
