"""gluon_pdqn: train Deep Q-Networks in parallel on Apache MXNet/Gluon."""
import os
import sys
import warnings

__version__ = "0.1.0"


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


# MXNet gives its OpenMP kernels (oneDNN's convolutions included) half of the CPUs unless OMP_NUM_THREADS says
# otherwise: it assumes every core runs two hyperthreads. Where a core runs one thread, that leaves half the
# machine idle: on this project's 2-core machine the Nature CNN's forward+backward (batch 32) took 24 ms with
# MXNet's default of 1 thread and 15 ms with 2. So, unless the user set it, OMP_NUM_THREADS is set to the
# physical cores before MXNet loads (it reads the variable once, when its library is loaded: import gluon_pdqn
# before mxnet for this to apply).
OMP_THREADS_SET_BY_USER = "OMP_NUM_THREADS" in os.environ
if not OMP_THREADS_SET_BY_USER:
    os.environ["OMP_NUM_THREADS"] = str(physical_cores())
    if "mxnet" in sys.modules:
        warnings.warn("mxnet was imported before gluon_pdqn, so MXNet keeps its kernels to half the CPUs; import "
                      "gluon_pdqn first, or set OMP_NUM_THREADS", stacklevel=2)
