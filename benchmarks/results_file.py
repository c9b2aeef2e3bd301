"""Writing a benchmark's figures: one JSON file, with the machine's load before and after the run."""
from __future__ import annotations

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
