"""Horovod jobs: a rank joining one (in the training process), and the job's rendezvous (in the launcher).

Horovod (Sergeev & Del Balso 2018) averages gradients over processes by ring allreduce; here over Gloo, its
TCP transport that needs no MPI. MXNet 1.9.1 registers no ``horovod`` kvstore (that came with 2.0), so the
learner uses ``horovod.mxnet.DistributedTrainer`` (see ``learners.allreduce``).

``horovodrun`` is not used to start the ranks: it binds its rendezvous server to every interface (an empty host
in ``runner/util/network.py``), and when one rank dies it leaves the others blocked in their next allreduce
until they all end. ``gluon-pdqn launch`` instead runs Horovod's own rendezvous server (``Rendezvous``: the HTTP
key-value store through which the ranks' Gloo contexts find each other) bound to the job's address only, and
starts each rank itself with the same environment horovodrun gives it (``rank_environment``), under the same
watchdog as a parameter-server job's workers. This module imports neither MXNet nor Horovod until asked: the
launcher runs without them.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ..errors import UserError

VERSION = "0.28.1"
INSTALL = (f"install Horovod {VERSION} built for MXNet with Gloo: `make horovod` (a source build of about 2 "
           "minutes that needs g++ and cmake)")
RANK_VARIABLE = "HOROVOD_RANK"  # set for every rank of a Horovod job


def is_rank() -> bool:
    """Whether this process is a rank of a Horovod job."""
    return RANK_VARIABLE in os.environ


def require():
    """``horovod.mxnet``, or a one-line error that says how to install it."""
    try:
        import horovod.mxnet as hvd
    except ImportError:
        raise UserError(f"the horovod learner needs Horovod: {INSTALL}") from None
    return hvd


def installed() -> bool:
    """Whether Horovod for MXNet can be imported here (without importing MXNet to find out)."""
    import importlib.util

    try:
        return importlib.util.find_spec("horovod.mxnet") is not None
    except (ImportError, ValueError):  # no horovod package (or one that cannot be imported)
        return False


def join() -> tuple[int, int]:
    """Join the Horovod job this process was started in; return (rank, size).

    Call it before building any network, as a parameter-server worker joins its job first.
    """
    if not is_rank():
        raise UserError("the horovod learner runs inside a job: start it with gluon-pdqn launch --workers N -- "
                        "train --mode dist --learner horovod ...")
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        # torch loaded after Horovod's MXNet library crashes the process (seen here: a segmentation fault; both
        # carry Gloo), and tensorboardX imports torch wherever it is installed. Loaded first, both work.
        importlib.import_module("torch")
    hvd = require()
    hvd.init()
    return hvd.rank(), hvd.size()


# --- the launcher's side: no MXNet, no Horovod extension ---------------------------------------------


@dataclass(frozen=True)
class Slot:
    """Where one rank runs, as Horovod numbers it: its host, and its place among the ranks of that host
    (local) and among the ranks of the same local rank on every host (cross)."""

    hostname: str
    rank: int
    size: int
    local_rank: int
    local_size: int
    cross_rank: int
    cross_size: int


def slots(hosts: list[str]) -> list[Slot]:
    """The slots of ranks 0..N-1 placed on ``hosts`` (rank r on ``hosts[r]``; a host may repeat)."""
    by_host: dict[str, list[int]] = {}
    for rank, host in enumerate(hosts):
        by_host.setdefault(host, []).append(rank)
    local_rank = {rank: ranks.index(rank) for ranks in by_host.values() for rank in ranks}
    result = []
    for rank, host in enumerate(hosts):
        same_local = [h for h, ranks in by_host.items() if len(ranks) > local_rank[rank]]  # hosts in host order
        result.append(Slot(host, rank, len(hosts), local_rank[rank], len(by_host[host]), same_local.index(host),
                           len(same_local)))
    return result


def rank_environment(slot: Slot, rendezvous_host: str, rendezvous_port: int, interface: str) -> dict[str, str]:
    """The variables one rank reads (those horovodrun's Gloo launcher sets): its slot, the rendezvous, and the
    interface its Gloo sockets bind to."""
    return {
        RANK_VARIABLE: str(slot.rank), "HOROVOD_SIZE": str(slot.size), "HOROVOD_HOSTNAME": slot.hostname,
        "HOROVOD_LOCAL_RANK": str(slot.local_rank), "HOROVOD_LOCAL_SIZE": str(slot.local_size),
        "HOROVOD_CROSS_RANK": str(slot.cross_rank), "HOROVOD_CROSS_SIZE": str(slot.cross_size),
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": rendezvous_host, "HOROVOD_GLOO_RENDEZVOUS_PORT": str(rendezvous_port),
        "HOROVOD_CONTROLLER": "gloo", "HOROVOD_CPU_OPERATIONS": "gloo", "HOROVOD_GLOO_IFACE": interface,
        # Rank 0 evaluates while the others wait in their next allreduce: not a stall. The launcher's watchdog
        # ends a job whose ranks stop making progress.
        "HOROVOD_STALL_CHECK_DISABLE": "1",
    }


class Rendezvous:
    """Horovod's rendezvous server for the ranks of ``job_slots``, listening on ``host``:``port`` only.

    Args:
        host: the address to listen on (loopback, or the job's interface's).
        port: the port (0: a free one).
        job_slots: every rank's slot (``slots``).
    """

    def __init__(self, host: str, port: int, job_slots: list[Slot]):
        try:
            from horovod.runner.common.util.hosts import SlotInfo
            from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer
        except ImportError:
            raise UserError(f"a Horovod job needs Horovod: {INSTALL}") from None
        try:
            self._server = RendezvousHTTPServer((host, port), RendezvousHandler, 0)
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port} for the Horovod rendezvous: {e.strerror}") from None
        self._server.init([SlotInfo(s.hostname, s.rank, s.local_rank, s.cross_rank, s.size, s.local_size,
                                    s.cross_size) for s in job_slots])
        self.host, self.port = host, self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="horovod-rendezvous", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
