"""What checkpoint checksums cost: a replay the size of the Pong preset's written as a bundle, with and without
the SHA-256 pass that ``checkpoint.save`` adds (the files are digested from the page cache as they are flushed).

A full ``atari-cpu`` replay (100,000 transitions of 84x84 uint8 frames, about 0.7 GB) in ``replay.npz``,
written by ``checkpoint.save`` as the loop writes it, then verified as ``train --resume`` does. Rounds
alternate so the machine's load falls on both alike. Medians go to ``benchmarks/results/checkpoint_digest.json``.

    python benchmarks/checkpoint_digest.py [--rounds 3] [--dir /tmp]
"""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

import click
import numpy as np

from results_file import write_results
from gluon_pdqn import checkpoint


@click.command()
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--dir", "where", default=tempfile.gettempdir(), show_default=True, help="Where the bundles go.")
def main(rounds, where):
    load_before = os.getloadavg()
    frames = np.random.default_rng(0).integers(0, 256, size=(100_000, 84, 84), dtype=np.uint8)
    arrays = {"frames": frames, "actions": np.zeros(100_000, np.int32), "rewards": np.zeros(100_000, np.float32)}
    state = {"config": {}, "env_spec": {}, "counters": {}, "eval": {"best": None, "last": None}}
    run_dir = tempfile.mkdtemp(dir=where)
    saved, flushed_only, verified = [], [], []
    real = checkpoint._fsync_and_digest
    try:
        for _ in range(rounds):
            for digest in (True, False):
                if not digest:  # the same write with the flush alone, as bundles were written before checksums
                    checkpoint._fsync_and_digest = _flush_only
                start = time.perf_counter()
                bundle = checkpoint.save(run_dir, 1, state, lambda d: np.savez(os.path.join(d, "replay.npz"),
                                                                             **arrays), keep=1)
                (saved if digest else flushed_only).append(time.perf_counter() - start)
                checkpoint._fsync_and_digest = real
                if digest:
                    start = time.perf_counter()
                    checkpoint.verify(bundle)
                    verified.append(time.perf_counter() - start)
    finally:
        checkpoint._fsync_and_digest = real
        shutil.rmtree(run_dir, ignore_errors=True)
    size = frames.nbytes / 2**30
    results = {
        "replay_gib": round(size, 3),
        "save_with_checksums_s": round(statistics.median(saved), 2),
        "save_without_checksums_s": round(statistics.median(flushed_only), 2),
        "checksum_cost_s": round(statistics.median(saved) - statistics.median(flushed_only), 2),
        "verify_s": round(statistics.median(verified), 2),
        "rounds": rounds, "load_average_before": load_before,
    }
    click.echo(results)
    write_results(results, os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                         "checkpoint_digest.json"))


def _flush_only(directory: str) -> dict:
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
    return {"(not digested)": {"size": 0, "sha256": ""}}


if __name__ == "__main__":
    main()
