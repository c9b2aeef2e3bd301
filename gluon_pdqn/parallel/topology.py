"""Where a training process stands in its run: decided once, at the top, and passed down to what needs it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    """This process's place among the workers of its run, and the job's kvstore where there is one.

    A run that is not a parameter-server job runs one worker (rank 0 of 1, no kvstore). In a job each worker process of a
    parameter-server job has its rank; the loop derives its run directory, seed, share of the env steps and
    Ape-X epsilon from it, and the learner pushes to and pulls from ``kvstore``.
    """

    rank: int = 0
    num_workers: int = 1
    kvstore: object = None  # mx.kvstore.KVStore of a dist job

    @property
    def is_chief(self) -> bool:
        """Rank 0 evaluates, and writes the run directory."""
        return self.rank == 0


def make_topology(kvstore_type: str) -> Topology:
    """Join the parameter-server job of ``kvstore_type`` (dist_sync, dist_async) and return this worker's place.

    Call it before building any network: a process that joined a job after MXNet had run work hung (seen here).
    """
    from .kvstore import create_dist_kvstore

    kvstore = create_dist_kvstore(kvstore_type)
    return Topology(rank=kvstore.rank, num_workers=kvstore.num_workers, kvstore=kvstore)
