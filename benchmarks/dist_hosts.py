"""Mode dist across hosts against loopback, and how long each fault takes to end a job across hosts.

Builds three network-namespace hosts with real sshd (``tests/netns_cluster.py``; needs root and ``ip netns``).

1. The same 2-worker, 1-server dist_sync CartPole job (``--steps`` env steps in all, no evaluation),
   ``--rounds`` times in each of two places, alternating, with medians: on 127.0.0.1 of this machine
   (``launch --launcher local``), and across the hosts (``launch --launcher ssh -H hosts --interface cl0`` on
   host 0; the server and worker 1 on host 1, worker 0 on host 2). For each:
   seconds from the launch to both workers' first update (from the progress the workers report to the
   launcher), each worker's env steps/s and updates/s over its run (its ``summary.json``), the median timed
   push+pull round trip (``workers.csv``), and the job's wall time. Both jobs share this machine's cores
   alike (the namespaces change the network path, not the CPUs); what differs is the veth path, ssh with the
   remote watchers, and OpenMP threads: the local launcher gives each of its 3 processes 1 thread, remote
   processes keep MXNet's default (half the cores: also 1 on this 2-core machine).
2. Faults across the hosts, each timed from the fault to the launcher's exit, and to the moment no process of
   the job is left on any host: worker 0's host losing its link, the server killed (SIGKILL), a job losing
   20% of its messages (``PS_DROP_MSG=20``, ``--stall-timeout 30``: timed from the launch).

Results go to stdout and benchmarks/results/dist_hosts.json.

    python benchmarks/dist_hosts.py [--steps 20000] [--rounds 3]
"""
from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import click

from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

from netns_cluster import NamespaceCluster, unavailable  # noqa: E402


def measure_job(launcher: str, steps: int, run_dir: str, hostfile: str | None, interface: str | None,
                ssh_config: str | None) -> dict:
    """Run one job with the launcher's Job (in this process's network namespace); time its start."""
    from gluon_pdqn.parallel.launcher import Job

    command = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--mode", "dist", "--quiet", "--run-dir", run_dir,
               "--steps", str(steps), "--set", "run.eval_every=0"]
    hosts = open(hostfile).read().split() if hostfile else None
    job = Job(2, 1, command, launcher=launcher, hosts=hosts, interface=interface, ssh_config=ssh_config,
              out=open(os.devnull, "w"), environment={"GLUON_PDQN_JOB_STAMP": "bench"}, deadline=900)
    started = time.monotonic()
    job.start()
    workers = [c for c in job.children if c.role == "worker"]
    first_update = None
    while first_update is None and all(c.process.poll() is None for c in workers):
        if all(c.progress is not None and c.progress[1] > 0 for c in workers):
            first_update = time.monotonic() - started
        time.sleep(0.05)
    code = job.wait()
    return {"exit_code": code, "launch_to_first_update_s": round(first_update, 2) if first_update else None,
            "job_seconds": round(time.monotonic() - started, 2)}


def _worker_figures(run_dir: str) -> dict:
    figures = {}
    for rank, directory in enumerate([run_dir, os.path.join(run_dir, "workers", "rank-1")]):
        with open(os.path.join(directory, "summary.json")) as f:
            counters = json.load(f)["counters"]
        figures[f"worker_{rank}"] = {
            "env_steps": counters["env_steps"], "updates": counters["learner_steps"],
            "env_steps_per_s": round(counters["env_steps"] / counters["wall_seconds"], 1),
            "updates_per_s": round(counters["learner_steps"] / counters["wall_seconds"], 1)}
    with open(os.path.join(run_dir, "workers.csv"), newline="") as f:
        trips = [float(r["worker/round_trip_ms"]) for r in csv.DictReader(f) if r["worker/round_trip_ms"] != "nan"]
    figures["round_trip_ms_median"] = round(statistics.median(trips), 2) if trips else None
    return figures


def _until(condition, limit: float) -> float | None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > limit:
            return None
        time.sleep(0.1)
    return round(time.monotonic() - start, 2)


def _fault(cluster, name: str, inflict, run_dir: str, limit: float = 180, **job_options) -> dict:
    """Start a long job, wait until both workers train (unless the fault is at start-up), inflict the fault,
    and time the launcher's exit and the last process's end."""
    job = cluster.launch(run_dir, "--steps", "10000000", "--set", "run.eval_every=0", "--set",
                         "run.checkpoint_every=1000", **job_options)
    rank_1 = os.path.join(run_dir, "workers", "rank-1", "metrics.csv")
    try:
        if name != "lost_messages":
            _until(lambda: os.path.exists(rank_1) and os.path.exists(os.path.join(run_dir, "metrics.csv")), 120)
            time.sleep(3)
        inflicted = time.monotonic()
        inflict()
        to_exit = _until(lambda: job.poll() is not None, limit)
        out = job.stdout.read() if to_exit is not None else ""
        to_no_process = _until(lambda: not any(cluster.processes(h) for h in range(cluster.size)), 120)
        to_no_process = None if to_no_process is None else round(time.monotonic() - inflicted, 2)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    error = next((line for line in out.splitlines() if line.startswith("error:")), None)
    result = {"seconds_to_launcher_exit": to_exit, "seconds_to_no_process_on_any_host": to_no_process,
              "exit_code": job.returncode, "message": error}
    click.echo(f"{name}: {result}")
    return result


@click.command()
@click.option("--steps", type=int, default=20000, show_default=True, help="Env steps of each job, both workers.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Jobs in each place, alternating.")
@click.option("--measure-job", "measure", nargs=5, hidden=True, help="Internal: run one job, print its figures.")
@click.option("--output", default=os.path.join(HERE, "results", "dist_hosts.json"), show_default=True)
def main(steps, rounds, measure, output):
    if measure:
        launcher, run_dir, hostfile, interface, ssh_config = measure
        click.echo(json.dumps(measure_job(launcher, steps, run_dir, hostfile or None, interface or None,
                                          ssh_config or None)))
        return
    reason = unavailable()
    if reason:
        sys.exit(f"cannot build namespace hosts here: {reason}")
    results = {"load_average_before": os.getloadavg(), "steps": steps, "rounds": rounds, "workers": 2, "servers": 1,
               "kvstore": "dist_sync"}
    scratch = tempfile.mkdtemp(prefix="dist-hosts-")
    with NamespaceCluster(3) as cluster:
        places = [("loopback", [], ["local", "", "", ""]),
                  ("namespace_hosts", cluster.command(0), ["ssh", cluster.hostfile([1, 2]), "cl0", cluster.ssh_config])]
        runs = {where: [] for where, _, _ in places}
        for round_ in range(rounds):  # alternating, so that a change of the machine's load hits both alike
            for where, prefix, args in places:
                run_dir = os.path.join(scratch, f"{where}-{round_}")
                measured = subprocess.run([*prefix, sys.executable, os.path.abspath(__file__), "--steps", str(steps),
                                           "--measure-job", args[0], run_dir, *args[1:]], cwd=REPO,
                                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
                if measured.returncode != 0:
                    sys.exit(f"the {where} job failed: {measured.stderr[-2000:]}")
                runs[where].append({**json.loads(measured.stdout.splitlines()[-1]), **_worker_figures(run_dir)})
                click.echo(f"{where} round {round_ + 1}: {runs[where][-1]}")
        for where, measured in runs.items():
            results[where] = {
                "runs": measured,
                "launch_to_first_update_s_median": statistics.median(r["launch_to_first_update_s"] for r in measured),
                "env_steps_per_s_per_worker_median": statistics.median(
                    r[w]["env_steps_per_s"] for r in measured for w in ("worker_0", "worker_1")),
                "updates_per_s_per_worker_median": statistics.median(
                    r[w]["updates_per_s"] for r in measured for w in ("worker_0", "worker_1")),
                "round_trip_ms_median": statistics.median(r["round_trip_ms_median"] for r in measured)}
        results["namespaces_over_loopback"] = {
            key: round(results["namespace_hosts"][key] / results["loopback"][key], 3)
            for key in ("launch_to_first_update_s_median", "env_steps_per_s_per_worker_median",
                        "updates_per_s_per_worker_median", "round_trip_ms_median")}
        click.echo(f"namespaces over loopback: {results['namespaces_over_loopback']}")
        faults = {}
        faults["worker_host_link_down"] = _fault(cluster, "worker_host_link_down",
                                                 lambda: cluster.set_link(2, up=False),
                                                 os.path.join(scratch, "link"))
        cluster.set_link(2, up=True)
        faults["server_killed"] = _fault(cluster, "server_killed",
                                         lambda: os.kill(cluster.kvstore_server(1), signal.SIGKILL),
                                         os.path.join(scratch, "server"))
        faults["lost_messages"] = _fault(cluster, "lost_messages", lambda: None, os.path.join(scratch, "drop"),
                                         launch_args=("--stall-timeout", "30"), env={"PS_DROP_MSG": "20"})
        results["faults"] = faults
    write_results(results, output)


if __name__ == "__main__":
    main()
