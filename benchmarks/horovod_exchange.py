"""The same 2-process job three ways: Horovod allreduce, a dist_sync parameter server, and data parallel.

For the CartPole MLP (the cartpole preset, 17k parameters) and the Nature CNN (1.7M parameters, on Pong's
84x84 frames), each learner placement trains the same budget of env steps with no evaluation:

- ``horovod``: ``gluon-pdqn launch --workers 2 -- train --mode dist --learner horovod`` (2 ranks, allreduce over
  Gloo);
- ``dist_sync``: ``gluon-pdqn launch --workers 2 --servers 1 -- train --mode dist`` (2 workers, 1 server);
- ``data``: ``gluon-pdqn train --mode data --ctx cpu:0,cpu:1`` (one process, for reference: its batch split
  over two devices, summed by the kvstore; it collects with one vector env, not two).

Figures, from the runs' own files: env steps/s and updates/s of each process (``metrics.csv`` from its first
update on), and the gradient exchange's milliseconds per update: the timed allreduce (horovod) or push+pull
round trip (dist_sync) that every worker posts to rank 0 (``workers.csv``, median), or the kvstore's
allreduce of a timed update (data, ``devices.csv``). Each job runs ``--rounds`` times, alternating; medians.

On loopback everything shares this machine's 2 cores. With ``--hosts``, horovod and dist_sync also run across
three network-namespace hosts over ssh (``tests/netns_cluster.py``; root and ``ip netns``): the same cores,
another network path.

Then, on paper (``predict``): from the exchange times measured for two sizes of gradient, a latency and a
bandwidth for each scheme, and how the exchange grows with the number of processes N: a ring allreduce sends
and receives 2 (N-1)/N of the gradient per rank in 2 (N-1) steps; a worker of a parameter-server job pushes
and pulls the whole gradient, and each of S servers takes N/S of every worker's bytes each way.

Results go to stdout and benchmarks/results/horovod_exchange.json.

    python benchmarks/horovod_exchange.py [--rounds 2] [--hosts]
"""
from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

import click

from results_file import run_rates, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

# (train options, env steps per process) of each network.
NETWORKS = {
    "mlp": (["--env", "CartPole-v1", "--preset", "cartpole", "--set", "replay.learning_starts=500",
             "--set", "agent.train_every=1", "--set", "agent.updates_per_train=1"], 3000),
    "nature_cnn": (["--env", "ALE/Pong-v5", "--preset", "atari-cpu", "--set", "network.name=nature_cnn",
                    "--set", "env.num_envs=1", "--set", "replay.capacity=5000", "--set", "replay.learning_starts=200",
                    "--set", "agent.train_every=4"], 1000),
}
COMMON = ["--quiet", "--set", "run.eval_every=0", "--set", "run.log_every=100", "--set", "run.checkpoint_every=0"]


def _launch_command(placement: str, run_dir: str, options: list[str], steps: int) -> list[str]:
    train = ["train", "--run-dir", run_dir, *options, *COMMON]
    if placement == "data":
        return [sys.executable, "-m", "gluon_pdqn.cli", *train, "--mode", "data", "--ctx", "cpu:0,cpu:1",
                "--steps", str(steps)]
    job = ["--learner", "horovod"] if placement == "horovod" else ["--kvstore", "dist_sync"]
    servers = [] if placement == "horovod" else ["--servers", "1"]
    return [sys.executable, "-m", "gluon_pdqn.cli", "launch", "--workers", "2", *servers, "--", *train,
            "--mode", "dist", *job, "--steps", str(2 * steps)]


def _exchange_ms(run_dir: str, placement: str) -> float | None:
    """The median exchange of one update: posted by the workers (workers.csv), or the kvstore's (devices.csv)."""
    if placement == "data":
        with open(os.path.join(run_dir, "devices.csv"), newline="") as f:
            values = [float(r["kvstore_ms"]) for r in csv.DictReader(f) if r["device"] == "cpu:0"]
    else:
        with open(os.path.join(run_dir, "workers.csv"), newline="") as f:
            values = [float(r["worker/round_trip_ms"]) for r in csv.DictReader(f)
                      if r["worker/round_trip_ms"] not in ("", "nan")]
    return round(statistics.median(values), 3) if values else None


def trained_floats(run_dir: str) -> int:
    """The online network's parameters (the gradient's floats), from the run's final checkpoint."""
    import mxnet as mx

    checkpoints = os.path.join(run_dir, "checkpoints")
    bundle = max(name for name in os.listdir(checkpoints) if name.startswith("ckpt-"))
    params = mx.nd.load(os.path.join(checkpoints, bundle, "params.params"))
    return sum(array.size for name, array in params.items() if name.startswith("online:"))


def figures(run_dir: str, placement: str, learning_starts: int) -> dict:
    """Env steps/s of the job and updates/s of each process from its first update on; the exchange's ms per
    update; the gradient's floats."""
    directories = [run_dir] if placement == "data" else [run_dir, os.path.join(run_dir, "workers", "rank-1")]
    rates = [run_rates(d, learning_starts + 100) for d in directories]
    return {"env_steps_per_s": round(sum(r["env_steps_per_s"] for r in rates), 1),
            "updates_per_s": round(statistics.fmean(r["updates_per_s"] for r in rates), 1),
            "exchange_ms": _exchange_ms(run_dir, placement), "gradient_floats": trained_floats(run_dir)}


def run_once(command: list[str], env: dict | None = None, timeout: float = 1800) -> None:
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise click.ClickException(f"{' '.join(command[:8])}... failed: {(done.stdout + done.stderr)[-1500:]}")


def predict(measured: dict, floats: dict) -> dict:
    """Latency and bandwidth of each scheme from its two measured sizes, and its exchange at N processes.

    Two processes: the ring allreduce takes 2 steps of G/2 each way, t = 2 a + G / b (a: one step's latency, b:
    bytes/s of one link); the parameter server's round trip, one push and one pull, t = 2 a + 2 G / b for one
    worker's bytes (the server takes both workers' pushes over its one link, so 2 G at N = 2). At N processes:
    allreduce 2 (N-1) a + 2 (N-1)/N G / b; one server 2 a + N G / b (all N pushes and pulls through one link,
    each way). Both with the links of a real network, not this machine's loopback: a fit, not a measurement.
    """
    result = {}
    for scheme in ("horovod", "dist_sync"):
        small, large = measured.get(("mlp", scheme)), measured.get(("nature_cnn", scheme))
        if not small or not large:
            continue
        g_small, g_large = 4 * floats["mlp"], 4 * floats["nature_cnn"]  # bytes
        per_byte = (large - small) / 1000.0 / (g_large - g_small)  # seconds per byte of gradient (N = 2)
        latency = max((small / 1000.0 - per_byte * g_small) / 2, 0.0)
        # per_byte at N = 2 is G/b (allreduce) or 2 G/b (server) per byte of G.
        link = 1.0 / per_byte if scheme == "horovod" else 2.0 / per_byte
        rows = {}
        for n in (2, 4, 8, 16, 32):
            for name, bytes_ in (("mlp", g_small), ("nature_cnn", g_large)):
                if scheme == "horovod":
                    t = 2 * (n - 1) * latency + 2 * (n - 1) / n * bytes_ / link
                else:
                    t = 2 * latency + n * bytes_ / link
                rows[f"{name}_n{n}_ms"] = round(1000 * t, 2)
        result[scheme] = {"latency_ms": round(1000 * latency, 3), "link_mb_per_s": round(link / 1e6, 1), **rows}
    return result


@click.command()
@click.option("--rounds", type=int, default=2, show_default=True, help="Runs of each job, alternating.")
@click.option("--hosts", is_flag=True, help="Also run horovod and dist_sync across namespace hosts over ssh.")
@click.option("--networks", default="mlp,nature_cnn", show_default=True)
@click.option("--output", default=os.path.join(HERE, "results", "horovod_exchange.json"), show_default=True)
def main(rounds, hosts, networks, output):
    results: dict = {"load_average_before": os.getloadavg(), "rounds": rounds, "loopback": {}, "hosts": {}}
    places = [("loopback", placement) for placement in ("horovod", "dist_sync", "data")]
    cluster = None
    if hosts:
        from netns_cluster import NamespaceCluster, unavailable

        reason = unavailable()
        if reason:
            raise click.ClickException(f"no namespace cluster here: {reason}")
        cluster = NamespaceCluster(3).__enter__()
        places += [("hosts", placement) for placement in ("horovod", "dist_sync")]
    try:
        for network in networks.split(","):
            options, steps = NETWORKS[network]
            starts = int(next(o.split("=")[1] for o in options if o.startswith("replay.learning_starts")))
            samples: dict = {}
            for round_ in range(rounds):
                for place, placement in places:
                    with tempfile.TemporaryDirectory() as scratch:
                        run_dir = os.path.join(scratch, "run")
                        if place == "loopback":
                            run_once(_launch_command(placement, run_dir, options, steps))
                        else:
                            job = ["--learner", "horovod"] if placement == "horovod" else ["--kvstore", "dist_sync"]
                            process = cluster.launch(run_dir, *job, *options, *COMMON[1:], "--steps", str(2 * steps))
                            out, _ = process.communicate(timeout=1800)
                            if process.returncode != 0:
                                raise click.ClickException(f"{placement} across hosts failed: {out[-1500:]}")
                        found = figures(run_dir, placement, starts)
                    samples.setdefault((place, placement), []).append(found)
                    click.echo(f"{network} {place} {placement} round {round_}: {found}")
            for (place, placement), runs in samples.items():
                results[place].setdefault(network, {})[placement] = {
                    key: round(statistics.median(r[key] for r in runs if r[key] is not None), 3)
                    if any(r[key] is not None for r in runs) else None for key in runs[0]} | {"runs": runs}
    finally:
        if cluster is not None:
            cluster.__exit__(None, None, None)
    floats = {network: placements["horovod"]["gradient_floats"] for network, placements in results["loopback"].items()}
    for place in ("loopback", "hosts"):
        measured = {(network, placement): results[place].get(network, {}).get(placement, {}).get("exchange_ms")
                    for network in NETWORKS for placement in ("horovod", "dist_sync")}
        if len(floats) == 2 and results[place]:
            results[f"predicted_{place}"] = predict(measured, floats)
    click.echo(json.dumps({k: v for k, v in results.items() if k.startswith("predicted")}, indent=1))
    write_results(results, output)


if __name__ == "__main__":
    main()
