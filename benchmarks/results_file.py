"""Writing a benchmark's figures: one JSON file, with the machine's load before and after the run; and the rates
of a run of ours read from its metrics.csv."""
from __future__ import annotations

import csv
import json
import os

import click


def write_results(results: dict, output: str) -> None:
    """Write ``results`` to ``output`` (directories made as needed), adding the load average now and the cores.

    Each benchmark records ``load_average_before`` itself, when it starts.
    """
    results.setdefault("cpu_count", os.cpu_count())
    results["load_average_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    click.echo(f"written to {output}")


def run_rates(run_dir: str, from_env_steps: int) -> dict:
    """Env steps/s and updates/s of a gluon-pdqn run from its metrics.csv, between its first row at or after
    ``from_env_steps`` and its last."""
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if int(r["env_steps"]) >= from_env_steps]
    first, last = rows[0], rows[-1]
    seconds = float(last["wall_seconds"]) - float(first["wall_seconds"])
    return {"env_steps_per_s": (int(last["env_steps"]) - int(first["env_steps"])) / seconds,
            "updates_per_s": (int(last["learner_steps"]) - int(first["learner_steps"])) / seconds}
