"""Apex actors on each worker of a parameter-server job, against today's dist worker, and a scaling model.

1. Measured, one job after another on this machine: ``gluon-pdqn launch --workers W --servers 1 -- train
   --mode dist --kvstore dist_async`` on CartPole (the cartpole preset, no evaluation, ``--steps`` env steps per
   worker), for W = 1 and 2, with each worker's own vector env (one process: today's dist worker) and with
   N = 1 and 2 apex actor processes per worker (``--collector apex --actors N``). Per worker and in total: env
   steps/s and updates/s after the replay's warm-up (each worker's metrics.csv); per actor env steps/s, the
   acting policies' lag, the replay ratio and the push+pull round trip (what rank 0 gathered: job_actors.csv,
   workers.csv).
2. The parts of the model, measured alone: an apex actor's env steps/s with its policy (one actor whose
   learner never trains, so nothing holds it back), one update of the preset's learner (batch 64, Adam, back
   to back, one thread: the single learner's update, which a ps worker's resembles: it reads the gradient's
   norm to the host as well, and adds the gradient to a sum where the single learner runs Adam), a push+pull
   round trip of the preset's network with one worker, and what one server sustains: push+pull round trips
   per second summed over 2 workers sending back to back (the server runs Adam, as a job's does; the
   workers share this machine's cores with it).
3. The model (docs/performance.md, "Apex actors on every worker"): a worker with N actors on a machine of C
   cores acts at ``A = a * min(N, C - 1)`` env steps/s (a core for the learner), and its learner keeps up with
   ``L = 1 / (rho * (u + r))`` env steps/s, where ``rho`` is updates per env step (the preset's 128 per 256),
   ``u`` an update and ``r`` a round trip (each update pushes its gradient and waits for the pull): the worker
   runs at ``E = min(A, L)``. W workers reach ``W * E`` until the servers' ``K`` round trips/s cap
   ``W * rho * E`` (one push and one pull per update, the default; S servers sustain at most S x K, an upper
   bound: MXNet places each key on one server, and a small network has few keys to spread). On this machine
   every process shares its cores (2), so a job also stays under ``cores / c`` env steps/s, where
   ``c = 1 / a + rho * (u + 1 / K)`` is the CPU time one env step costs (acting, its share of an update, and
   of the server's work). Its predictions are printed beside the measured figures. Not in the model: the
   learner's process also takes in the actors' experience (pipes, the replay's inserts).

Figures go to stdout and benchmarks/results/dist_apex.json.

    python benchmarks/dist_apex.py [--steps 6000] [--round-trips 2000]
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

from dist_scaling import push_pull_seconds
from results_file import run_rates, write_results

from gluon_pdqn.metrics import worker_run_dir

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--set", "run.eval_every=0",
         "--set", "run.checkpoint_every=0"]
WARM_UP = 2_000  # env steps of each worker left out of its rates (the replay's warm-up: 1,000)
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"}


def _rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _median(values) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def measured_job(workers: int, actors: int, steps: int) -> dict:
    """One job on CartPole: ``actors`` apex actors per worker (0: the worker's own vector env)."""
    from gluon_pdqn.parallel.launcher import Job

    collector = ["--collector", "apex", "--actors", str(actors)] if actors else []
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = os.path.join(scratch, "run")
        job = Job(workers, 1, [*TRAIN, "--mode", "dist", "--kvstore", "dist_async", *collector, "--run-dir", run_dir,
                               "--steps", str(steps * workers), "--set", "run.log_every=500"],
                  deadline=900, out=open(os.devnull, "w"))
        job.start()
        job.wait()
        rates = [run_rates(worker_run_dir(run_dir, rank), WARM_UP) for rank in range(workers)]
        posts = [r for r in _rows(os.path.join(run_dir, "workers.csv")) if float(r["worker/env_steps"]) >= WARM_UP]
        actor_rates = {}
        if actors:
            for row in _rows(os.path.join(run_dir, "job_actors.csv")):
                if int(row["env_steps"]) >= WARM_UP:
                    actor_rates.setdefault(int(row["job_actor"]), []).append(float(row["env_steps_per_s"]))
    return {"workers": workers, "actors_per_worker": actors,
            "env_steps_per_s_per_worker": [r["env_steps_per_s"] for r in rates],
            "env_steps_per_s_total": sum(r["env_steps_per_s"] for r in rates),
            "updates_per_s_per_worker": [r["updates_per_s"] for r in rates],
            "updates_per_s_total": sum(r["updates_per_s"] for r in rates),
            "env_steps_per_s_per_actor": [_median(actor_rates[i]) for i in sorted(actor_rates)],
            "policy_lag_updates": _median(float(r["worker/policy_lag"]) for r in posts),
            "replay_ratio": _median(float(r["worker/replay_ratio"]) for r in posts),
            "round_trip_ms": _median(float(r["worker/round_trip_ms"]) for r in posts)}


def actor_alone(steps: int) -> float:
    """An apex actor's env steps/s with its policy when nothing holds it back (its learner never trains)."""
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = os.path.join(scratch, "run")
        subprocess.run([*TRAIN, "--mode", "apex", "--actors", "1", "--run-dir", run_dir, "--steps", str(steps),
                        "--set", f"replay.learning_starts={10 * steps}", "--set", "run.log_every=1000"],
                       check=True, env=ONE_THREAD, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        rows = _rows(os.path.join(run_dir, "actors.csv"))
    return _median(float(r["env_steps_per_s"]) for r in rows[1:])  # the first window includes the start


UPDATE_TIMER = r"""
import json, time, warnings
warnings.filterwarnings("ignore")
import mxnet as mx, numpy as np
from gluon_pdqn.config import load_preset
from gluon_pdqn.envs import describe
from gluon_pdqn.learners import SingleLearner
from gluon_pdqn.replay import Batch

cfg = load_preset("cartpole")
spec = describe(cfg.env)
learner = SingleLearner(cfg, spec, mx.cpu(0))
rng = np.random.default_rng(0)
B = cfg.replay.batch_size
batches = [Batch(obs=rng.normal(size=(B,) + spec.obs_shape).astype(np.float32),
                 actions=rng.integers(0, spec.n_actions, B), rewards=np.ones(B, np.float32),
                 next_obs=rng.normal(size=(B,) + spec.obs_shape).astype(np.float32),
                 discounts=np.full(B, 0.97, np.float32), weights=np.ones(B, np.float32), indices=np.arange(B))
           for _ in range(16)]
for i in range(100):
    learner.step(batches[i % 16])
mx.nd.waitall()
samples = []
for _ in range(5):
    start = time.perf_counter()
    for i in range(400):
        learner.step(batches[i % 16])
    mx.nd.waitall()
    samples.append((time.perf_counter() - start) / 400 * 1e3)
print(json.dumps({"update_ms": sorted(samples)[2],
                  "parameters": int(sum(p.data().size for p in learner.online.collect_params().values()))}))
"""


def update_alone() -> dict:
    """One update of the cartpole preset's learner, back to back on one thread: median ms of 5 blocks."""
    out = subprocess.run([sys.executable, "-c", UPDATE_TIMER], capture_output=True, text=True, check=True,
                         env=ONE_THREAD).stdout
    return json.loads(out.strip().splitlines()[-1])


def round_trip_worker(round_trips: int, output: str) -> None:
    """Inside a job: push+pull the cartpole preset's parameters back to back; each worker writes its rate."""
    import mxnet as mx

    from gluon_pdqn.config import load_preset
    from gluon_pdqn.envs import describe
    from gluon_pdqn.networks import build
    from gluon_pdqn.parallel.kvstore import create_dist_kvstore

    kv = create_dist_kvstore("dist_async")  # first: joining the job after MXNet has run work was seen to hang
    cfg = load_preset("cartpole")
    spec = describe(cfg.env)
    net = build(cfg.network, spec, prefix="mlp_")
    net.initialize()
    net(mx.nd.zeros((1,) + spec.obs_shape))
    arrays = [p.data() for p in net.collect_params().values()]
    kv.set_optimizer(mx.optimizer.Adam(learning_rate=1e-9))  # what a job's servers run (without bookkeeping keys)
    seconds = push_pull_seconds(kv, arrays, round_trips, warm_up=20)
    with open(f"{output}.{kv.rank}", "w") as f:
        json.dump({"round_trips_per_s": round_trips / seconds, "ms_per_round_trip": 1e3 * seconds / round_trips}, f)
    kv._barrier()  # no worker leaves while another still talks to the servers (that hung a worker here)
    os._exit(0)  # skip ps-lite's exit barrier, which hung here; the launcher ends servers and scheduler


def push_pull_rates(workers: int, count: int) -> list[dict]:
    """Each worker's push+pull rate when ``workers`` workers send back to back to one server."""
    from gluon_pdqn.parallel.launcher import Job

    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "round_trips.json")
        job = Job(workers, 1, [sys.executable, os.path.abspath(__file__), "--round-trips", str(count),
                               "--round-trip-worker", path], deadline=300, out=open(os.devnull, "w"))
        job.start()
        job.wait()
        found = []
        for rank in range(workers):
            with open(f"{path}.{rank}") as f:
                found.append(json.load(f))
    return found


def predict(parts: dict, workers: int, actors: int, cores: float, shared_cores: float | None = None) -> dict:
    """The model's env steps/s and updates/s of a job of ``workers`` machines of ``cores`` cores with ``actors``
    apex actors each; with ``shared_cores``, every process of the job shares that many cores (this machine)."""
    a, u, r, rho, k = (parts["actor_env_steps_per_s"], parts["update_ms"] / 1e3, parts["round_trip_ms"] / 1e3,
                       parts["updates_per_env_step"], parts["server_round_trips_per_s"])
    acting = a * min(actors, max(cores - 1, 1))
    learning = 1 / (rho * (u + r))
    per_worker = min(acting, learning)
    total = min(workers * per_worker, k / rho)
    bound = "actors" if acting <= learning else "learner"
    if total < workers * per_worker:
        bound = "servers"
    if shared_cores is not None:
        cpu_per_env_step = 1 / a + rho * (u + 1 / k)  # acting, the update, and the server's share of a round trip
        if shared_cores / cpu_per_env_step < total:
            total, bound = shared_cores / cpu_per_env_step, f"{shared_cores:g} cores"
    return {"env_steps_per_s_total": total, "updates_per_s_total": rho * total, "bound": bound}


@click.command()
@click.option("--steps", default=6_000, show_default=True, help="Env steps per worker in each job.")
@click.option("--round-trips", default=2_000, show_default=True)
@click.option("--round-trip-worker", "as_worker", hidden=True, help="Internal: OUTPUT.")
@click.option("--output", default=os.path.join(HERE, "results", "dist_apex.json"), show_default=True)
def main(steps, round_trips, as_worker, output):
    if as_worker:
        return round_trip_worker(round_trips, as_worker)
    from gluon_pdqn.config import load_preset

    agent = load_preset("cartpole").agent
    results = {"benchmark": "dist_apex", "env": "CartPole-v1", "preset": "cartpole", "cpu_count": os.cpu_count(),
               "load_average_before": os.getloadavg(), "steps_per_worker": steps, "jobs": []}
    update = update_alone()
    one_worker, two_workers = push_pull_rates(1, round_trips), push_pull_rates(2, round_trips)
    parts = {"actor_env_steps_per_s": actor_alone(steps), "update_ms": update["update_ms"],
             "parameters": update["parameters"], "round_trip_ms": one_worker[0]["ms_per_round_trip"],
             "server_round_trips_per_s": sum(w["round_trips_per_s"] for w in two_workers),
             "updates_per_env_step": agent.updates_per_train / agent.train_every}
    results["parts"] = parts
    click.echo(f"parts: an apex actor alone {parts['actor_env_steps_per_s']:,.0f} env steps/s; one update "
               f"{parts['update_ms']:.2f} ms; a push+pull of {parts['parameters']:,} floats "
               f"{parts['round_trip_ms']:.2f} ms; one server {parts['server_round_trips_per_s']:,.0f} round trips/s "
               f"(2 workers back to back); {parts['updates_per_env_step']:g} updates per env step")
    for workers in (1, 2):
        for actors in (0, 1, 2):
            row = measured_job(workers, actors, steps)
            if actors:
                cores = os.cpu_count()
                row["predicted_here"] = predict(parts, workers, actors, cores=cores, shared_cores=cores)
            results["jobs"].append(row)
            collector = f"{actors} apex actor(s) per worker" if actors else "the worker's own env (one process)"
            predicted = (f"; model here {row['predicted_here']['env_steps_per_s_total']:,.0f} "
                         f"({row['predicted_here']['bound']})" if actors else "")
            click.echo(f"{workers} worker(s), {collector}: {row['env_steps_per_s_total']:,.0f} env steps/s in total "
                       f"({', '.join(f'{v:,.0f}' for v in row['env_steps_per_s_per_worker'])} per worker; per actor "
                       f"{', '.join(f'{v:,.0f}' for v in row['env_steps_per_s_per_actor']) or '-'}), "
                       f"{row['updates_per_s_total']:,.0f} updates/s; policy lag {row['policy_lag_updates']:.0f} "
                       f"updates, replay ratio {row['replay_ratio']:.1f}, round trip {row['round_trip_ms']:.2f} ms"
                       f"{predicted}")
    # The model off this machine: W machines of 8 cores, S servers each with the capacity measured here, at
    # the preset's replay ratio (32 samples per transition: learner-bound) and at one update per 20 env steps
    # (3.2 samples per transition at batch 64), where actors and servers bound too.
    results["model"] = []
    click.echo("model, W machines of 8 cores with N actors each: env steps/s in total (what bounds it; with S > 1 "
               "an upper bound)")
    for rho in (parts["updates_per_env_step"], 0.05):
        for servers in (1, 4):
            for machines in (1, 2, 4, 16):
                cells = []
                for actors in (1, 2, 7):
                    scaled = {**parts, "updates_per_env_step": rho,
                              "server_round_trips_per_s": servers * parts["server_round_trips_per_s"]}
                    row = {"updates_per_env_step": rho, "servers": servers, "machines": machines, "cores": 8,
                           "actors_per_machine": actors, **predict(scaled, machines, actors, cores=8)}
                    results["model"].append(row)
                    cells.append(f"N={actors}: {row['env_steps_per_s_total']:>8,.0f} ({row['bound']})")
                click.echo(f"  {rho:g} updates/env step, S={servers}, W={machines:<2}  " + "  ".join(cells))
    write_results(results, output)


if __name__ == "__main__":
    main()
