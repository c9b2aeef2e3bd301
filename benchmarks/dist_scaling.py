"""Mode dist on this machine: env steps/s and updates/s for 1, 2 and 4 workers, staleness, kvstore round trips.

1. The training loop: `gluon-pdqn launch --workers W --servers 1 -- train --mode dist` on CartPole (the
   cartpole preset, each worker its share of W x --steps env steps, no evaluation), in dist_sync for 1, 2
   and 4 workers and in dist_async for 2 and 4 (and 2 without the staleness counter, to show its cost);
   then 2 dist_sync workers pushing every 4 and 16 updates.
   Per-worker and total env steps/s and updates/s come from each worker's summary; gradient staleness and
   the timed push+pull round trip from the figures every worker posted to rank 0 (``workers.csv``).
2. The traffic alone: push+pull round trips per second of the Nature CNN's parameters (1.7M floats, as
   one key per parameter) between 2 workers and 1 server, in dist_sync and in dist_async.

Everything runs on 127.0.0.1, on this machine's cores: workers, server and scheduler share them. Results go to
stdout and benchmarks/results/dist_scaling.json.

    python benchmarks/dist_scaling.py [--workers 1,2,4] [--steps 5000] [--round-trips 50]
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

import click

from results_file import write_results

from gluon_pdqn.metrics import worker_run_dir

HERE = os.path.dirname(os.path.abspath(__file__))


def push_pull_seconds(kv, arrays: list, round_trips: int, warm_up: int = 3) -> float:
    """Put ``arrays`` on the kvstore (one key each), then time ``round_trips`` pushes of zero gradients, each
    followed by a pull that is waited for."""
    import mxnet as mx

    keys = list(range(len(arrays)))
    kv.init(keys, arrays)
    grads = [mx.nd.zeros_like(a) for a in arrays]
    for _ in range(warm_up):
        kv.push(keys, grads)
        kv.pull(keys, out=arrays)
    mx.nd.waitall()
    start = time.perf_counter()
    for _ in range(round_trips):
        kv.push(keys, grads)
        kv.pull(keys, out=arrays)
        mx.nd.waitall()
    return time.perf_counter() - start


def round_trip_worker(kind: str, round_trips: int, output: str) -> None:
    """Inside a job: time push+pull of the Nature CNN's parameters; rank 0 writes the result."""
    import mxnet as mx
    import numpy as np

    from gluon_pdqn.config import NetworkConfig
    from gluon_pdqn.envs import EnvSpec
    from gluon_pdqn.networks import build
    from gluon_pdqn.parallel.kvstore import create_dist_kvstore

    kv = create_dist_kvstore(kind)  # first: joining the job after MXNet has run work was seen to hang
    spec = EnvSpec("ALE/Pong-v5", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 6, True)
    net = build(NetworkConfig(name="nature_cnn"), spec, prefix="cnn_")
    net.initialize()
    net(mx.nd.zeros((1, 4, 84, 84), dtype=np.uint8))
    arrays = [p.data() for p in net.collect_params().values()]
    kv.set_optimizer(mx.optimizer.SGD(learning_rate=0.0))  # dist_async servers abort without an optimizer
    seconds = push_pull_seconds(kv, arrays, round_trips)
    if kv.rank == 0:
        with open(output, "w") as f:
            json.dump({"parameters": int(sum(a.size for a in arrays)), "round_trips_per_s": round_trips / seconds,
                       "ms_per_round_trip": 1e3 * seconds / round_trips}, f)
    kv._barrier()  # no worker leaves while another still talks to the servers (that hung a worker here)
    os._exit(0)  # skip ps-lite's exit barrier, which hung here; the launcher ends servers and scheduler


def run_job(workers: int, worker_command: list[str]) -> None:
    from gluon_pdqn.parallel.launcher import Job

    job = Job(workers, 1, worker_command, deadline=900, out=open(os.devnull, "w"))
    job.start()
    job.wait()


def posted_figures(run_dir: str) -> dict:
    """Staleness and round trip per worker, from the rows each worker posted to rank 0 (workers.csv)."""
    import csv

    with open(os.path.join(run_dir, "workers.csv"), newline="") as f:
        # Rank 0 writes every worker's latest post at each of its logs: a slower worker's post can repeat.
        posts = {(r["rank"], r["worker/env_steps"]): r for r in csv.DictReader(f)}
    by_rank: dict[int, dict] = {}
    for row in posts.values():
        figures = by_rank.setdefault(int(row["rank"]), {"staleness": [], "staleness_max": [], "round_trip_ms": []})
        for name in figures:
            value = float(row[f"worker/{name}"])
            if value == value:
                figures[name].append(value)
    workers = [figures for _, figures in sorted(by_rank.items())]
    nan = float("nan")
    return {"staleness_mean_per_worker": [statistics.fmean(f["staleness"]) if f["staleness"] else nan
                                          for f in workers],
            "staleness_max_per_worker": [max(f["staleness_max"], default=nan) for f in workers],
            "round_trip_ms_median_per_worker": [statistics.median(f["round_trip_ms"]) if f["round_trip_ms"] else nan
                                                for f in workers]}


def training_figures(workers: int, steps: int, kvstore: str = "dist_sync", push_every: int = 1,
                     measure_staleness: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = os.path.join(scratch, "run")
        run_job(workers, [sys.executable, "-m", "gluon_pdqn.cli", "train", "--mode", "dist", "--kvstore", kvstore,
                          "--run-dir", run_dir, "--steps", str(steps * workers), "--quiet",
                          "--set", "run.eval_every=0", "--set", "run.checkpoint_every=0",
                          "--set", f"run.push_every={push_every}",
                          "--set", f"run.measure_staleness={str(measure_staleness).lower()}"])
        summaries = []
        for rank in range(workers):
            with open(os.path.join(worker_run_dir(run_dir, rank), "summary.json")) as f:
                summaries.append(json.load(f)["counters"])
        posted = posted_figures(run_dir)
    per_worker = [c["env_steps"] / c["wall_seconds"] for c in summaries]
    updates = [c["learner_steps"] / c["wall_seconds"] for c in summaries]
    return {"workers": workers, "kvstore": kvstore, "push_every": push_every, "measure_staleness": measure_staleness,
            "env_steps_per_s_total": sum(per_worker), "env_steps_per_s_per_worker": per_worker,
            "updates_per_s_total": sum(updates), **posted}


@click.command()
@click.option("--workers", "worker_counts", default="1,2,4", show_default=True)
@click.option("--steps", default=5_000, show_default=True, help="Env steps per worker.")
@click.option("--round-trips", default=50, show_default=True)
@click.option("--round-trip-worker", "as_worker", type=(str, str), hidden=True, help="Internal: KIND OUTPUT.")
@click.option("--output", default=os.path.join(HERE, "results", "dist_scaling.json"), show_default=True)
def main(worker_counts, steps, round_trips, as_worker, output):
    if as_worker:
        kind, path = as_worker
        return round_trip_worker(kind, round_trips, path)
    results = {"cpu_count": os.cpu_count(), "load_average_before": os.getloadavg(), "training": [],
               "round_trips": []}
    counts = [int(w) for w in worker_counts.split(",")]
    runs = ([(w, "dist_sync", 1, True) for w in counts] + [(w, "dist_async", 1, True) for w in counts if w > 1]
            + [(2, "dist_async", 1, False)]  # what counting the updates for staleness costs
            + [(2, "dist_sync", k, True) for k in (4, 16)])  # then batched traffic
    for workers, kvstore, push_every, measure_staleness in runs:
        row = training_figures(workers, steps, kvstore, push_every, measure_staleness)
        results["training"].append(row)

        def listed(values, digits=0):
            return ", ".join(f"{v:,.{digits}f}" for v in values)

        unmeasured = "" if measure_staleness else " (run.measure_staleness=false)"
        click.echo(f"{workers} worker(s), {kvstore}{unmeasured}, push every {push_every} update(s), CartPole: "
                   f"{row['env_steps_per_s_total']:,.0f} env steps/s in total "
                   f"({listed(row['env_steps_per_s_per_worker'])} per worker), "
                   f"{row['updates_per_s_total']:,.0f} updates/s; staleness per worker mean "
                   f"{listed(row['staleness_mean_per_worker'], 2)}, max {listed(row['staleness_max_per_worker'])}; "
                   f"round trip {listed(row['round_trip_ms_median_per_worker'], 1)} ms")
    for kind in ("dist_sync", "dist_async"):
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "round_trips.json")
            run_job(2, [sys.executable, os.path.abspath(__file__), "--round-trips", str(round_trips),
                        "--round-trip-worker", kind, path])
            with open(path) as f:
                row = {"kvstore": kind, "workers": 2, "servers": 1, **json.load(f)}
        results["round_trips"].append(row)
        click.echo(f"Nature CNN parameters ({row['parameters']:,} floats), {kind}, 2 workers: "
                   f"{row['round_trips_per_s']:.1f} push+pull round trips/s ({row['ms_per_round_trip']:.1f} ms each)")
    write_results(results, output)


if __name__ == "__main__":
    main()
