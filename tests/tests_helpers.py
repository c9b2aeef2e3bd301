"""Shared helpers of the tests."""
import csv

import numpy as np

from gluon_pdqn.replay import Batch


def a_batch(spec, size=16, seed=0):
    rng = np.random.default_rng(seed)
    def obs():
        if spec.obs_dtype == np.uint8:
            return rng.integers(0, 256, (size,) + spec.obs_shape).astype(np.uint8)
        return rng.normal(size=(size,) + spec.obs_shape).astype(np.float32)
    return Batch(obs=obs(), actions=rng.integers(0, spec.n_actions, size).astype(np.int32),
                 rewards=rng.normal(size=size).astype(np.float32), next_obs=obs(),
                 discounts=rng.choice([0.0, 0.99], size).astype(np.float32),
                 weights=rng.uniform(0.5, 1.0, size).astype(np.float32), indices=np.arange(size))


SPEC = None  # set below (EnvSpec of a 4-dimensional observation, 2 actions)


def equivalence_batch(step, part, size=8):
    """Batch ``part`` of ``step`` in the dist_sync equivalence test (workers take parts 0 and 1)."""
    rng = np.random.default_rng(100 * step + part)
    return Batch(obs=rng.normal(size=(size, 4)).astype(np.float32), actions=rng.integers(0, 2, size).astype(np.int32),
                 rewards=rng.normal(size=size).astype(np.float32), next_obs=rng.normal(size=(size, 4)).astype(np.float32),
                 discounts=np.full(size, 0.9, np.float32), weights=np.ones(size, np.float32), indices=np.arange(size))


def _spec():
    from gluon_pdqn.envs import EnvSpec

    return EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 2, False)


SPEC = _spec()


def csv_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def every_actor_acting(run_dir, actors: int) -> bool:
    """Rank 0 of a job with apex actors on each worker has gathered a row of job.csv in which all ``actors``
    actors of the job stepped, and the workers update."""
    job = run_dir / "job.csv"
    if not job.exists():
        return False
    try:
        return any(int(r["actors"]) == actors and float(r["min_actor_env_steps_per_s"]) > 0
                   and float(r["updates_per_s"]) > 0 for r in csv_rows(job))
    except (TypeError, ValueError):  # a row still being written
        return False
