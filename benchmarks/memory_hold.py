"""Does a long run hold its memory and its rate? Read from a finished run directory's metrics.csv and actors.csv.

For each process of the run (the learner, and each apex or async actor) after the replay has filled: the
least-squares slope of its resident memory over wall-clock hours, as a percentage of its mean per hour. And
the env steps/s of the run's second and last quarters of wall time, and their ratio. Issue "Nothing lost, part
two" asks for slopes under 1% per hour over at least an hour and a last quarter within 10% of the second.
The machine's load average during each quarter comes from a log of ``<unix time> <load1> <load5> <load15>``
lines, when one is given (the run shared the machine).

    python benchmarks/memory_hold.py --run-dir RUN [--load-log load.log] [--name pong_apex_memory]
"""
from __future__ import annotations

import csv
import json
import os
import statistics

import click

from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
QUIET_LOAD = 3.0  # 1-minute load average below which the run had the machine to itself


def _rows(path: str) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _slope_percent_per_hour(points: list[tuple[float, float]]) -> dict:
    """Least-squares slope of (hours, MiB) as % of the mean per hour, with the span it covers."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    return {"mean_mib": round(my, 1), "first_mib": round(ys[0], 1), "last_mib": round(ys[-1], 1),
            "slope_mib_per_hour": round(slope, 3), "slope_percent_per_hour": round(100 * slope / my, 3),
            "hours": round(xs[-1] - xs[0], 3), "samples": len(points)}


@click.command()
@click.option("--run-dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--load-log", type=click.Path(exists=True, dir_okay=False), help="`<unix time> <load1> ...` lines.")
@click.option("--name", default="memory_hold", show_default=True, help="Result file name (benchmarks/results).")
def main(run_dir: str, load_log: str | None, name: str) -> None:
    with open(os.path.join(run_dir, "config.json")) as f:
        cfg = json.load(f)
    metrics = _rows(os.path.join(run_dir, "metrics.csv"))
    wall = {int(r["env_steps"]): float(r["wall_seconds"]) for r in metrics}
    filled = cfg["replay"]["capacity"]  # transitions: the replay is full once this many were collected
    full = [r for r in metrics if int(r["env_steps"]) >= filled]
    processes = {"learner": [(float(r["wall_seconds"]) / 3600, float(r["system/rss_mib"])) for r in full]}
    actors_csv = os.path.join(run_dir, "actors.csv")
    if os.path.exists(actors_csv):
        for r in _rows(actors_csv):
            steps = int(r["env_steps"])
            if steps >= filled and r.get("rss_mib") and steps in wall:
                processes.setdefault(f"actor {r['actor']}", []).append((wall[steps] / 3600, float(r["rss_mib"])))
    memory = {process: _slope_percent_per_hour(points) for process, points in processes.items()}

    total = float(metrics[-1]["wall_seconds"])
    quarters = [(total * q / 4, total * (q + 1) / 4) for q in range(4)]

    def steps_at(seconds: float) -> tuple[float, int]:
        row = min(metrics, key=lambda r: abs(float(r["wall_seconds"]) - seconds))
        return float(row["wall_seconds"]), int(row["env_steps"])

    rates = []
    for lo, hi in quarters:
        (t0, s0), (t1, s1) = steps_at(lo), steps_at(hi)
        rates.append(round((s1 - s0) / (t1 - t0), 1))
    results = {"benchmark": "memory_hold", "run_dir": os.path.basename(os.path.normpath(run_dir)),
               "env": cfg["env"]["id"], "mode": cfg["run"]["mode"], "actors": cfg["actors"]["count"],
               "replay_capacity": filled, "wall_seconds": total, "env_steps": int(metrics[-1]["env_steps"]),
               "memory_after_replay_full": memory,
               "env_steps_per_s_by_quarter": rates, "last_over_second_quarter": round(rates[3] / rates[1], 3)}
    if load_log:
        with open(load_log) as f:
            samples = [tuple(map(float, line.split()[:2])) for line in f if line.strip()]
        start = samples[0][0]  # the log started with the run (within seconds)
        results["load_average_1min_by_quarter"] = [
            round(statistics.median([load for t, load in samples if lo <= t - start < hi] or [float("nan")]), 2)
            for lo, hi in quarters]

        def load_at(seconds: float) -> float:
            return min(samples, key=lambda sample: abs(sample[0] - start - seconds))[1]

        # The rate of the metric rows logged while nothing else loaded the machine (the run's own processes
        # load it to about 2.5-3 on 2 cores), by quarter: what the run itself did, apart from its neighbours.
        quiet = [[float(r["charts/env_steps_per_s"]) for r in metrics
                  if lo <= float(r["wall_seconds"]) < hi and load_at(float(r["wall_seconds"])) < QUIET_LOAD]
                 for lo, hi in quarters]
        results["quiet_load_below"] = QUIET_LOAD
        results["quiet_rows_by_quarter"] = [len(q) for q in quiet]
        results["quiet_median_env_steps_per_s_by_quarter"] = [round(statistics.median(q), 1) if q else None
                                                              for q in quiet]
        if quiet[1] and quiet[3]:
            results["quiet_last_over_second_quarter"] = round(statistics.median(quiet[3]) / statistics.median(quiet[1]), 3)
    write_results(results, os.path.join(HERE, "results", f"{name}.json"))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
