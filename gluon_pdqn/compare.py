"""``gluon-pdqn compare``: every mode on one environment, budget and set of seeds, with the evidence.

Each (mode, seed) is one ``gluon-pdqn train`` process, run one after another so the modes do not share cores.
The results directory holds the plan, one run directory per (mode, seed), and, once all are done, the
per-run figures (JSON, CSV), a Markdown table and plots. Running the same command again continues where it
stopped: finished runs are kept, an interrupted run resumes from its checkpoint.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import metrics
from . import plots
from .config import MODES, PLACEMENTS, load_preset, mode_pair
from .errors import UserError

DIST_WORKERS = 2  # mode dist runs as a job of this many workers (and one server, or as Horovod ranks) here
PLAN_FILE = "compare.json"


@dataclass(frozen=True)
class Plan:
    """What a comparison runs; saved in the results directory, so a rerun can check it continues the same one."""

    env: str
    modes: tuple[str, ...]
    seeds: tuple[int, ...]
    budget_steps: int | None  # env steps per run, or
    budget_seconds: float | None  # seconds of training per run
    preset: str  # the replay modes' preset
    async_preset: str  # mode async's preset (it has no replay, so it cannot share the replay modes' settings)
    ctx: str  # the devices of the multi-device modes; single and async use the first
    eval_every: int  # env steps between greedy evaluations, the same for every mode
    threshold: float | None  # return whose first greedy evaluation at or above it times the run
    sets: tuple[str, ...] = field(default_factory=tuple)  # extra key=value settings for every run

    def runs(self) -> list[tuple[str, int]]:
        return [(mode, seed) for mode in self.modes for seed in self.seeds]


def parse_spec(spec: str) -> tuple[str, str | None, int | None]:
    """(mode, learner, actors) of a compared run's spec ``MODE[:LEARNER][@ACTORS]``: ``apex:data@4`` is mode apex
    with a data-parallel learner and 4 actors; ``single`` is mode single. Raises UserError for a bad spec."""
    rest, _, actors = spec.partition("@")
    mode, _, learner = rest.partition(":")
    if mode not in MODES:
        raise UserError(f"unknown mode '{mode}' in '{spec}'; available: {', '.join(MODES)}")
    if learner and (learner not in PLACEMENTS or mode_pair(mode, learner).refused):
        reason = mode_pair(mode, learner).refused if learner in PLACEMENTS else f"learners: {', '.join(PLACEMENTS)}"
        raise UserError(f"'{spec}': mode {mode} cannot learn with the {learner} learner ({reason})")
    if actors and (not mode_pair(mode).has_actors or not actors.isdigit() or int(actors) < 1):
        raise UserError(f"'{spec}': @N gives the actors of apex or async, N >= 1")
    return mode, learner or None, int(actors) if actors else None


def run_name(mode: str, seed: int) -> str:
    return f"{mode.replace(':', '-').replace('@', '-a')}-s{seed}"


def train_command(plan: Plan, spec: str, seed: int, run_dir: str, resume: bool) -> list[str]:
    """The ``gluon-pdqn train`` command line of one run (``resume``: continue it from its checkpoint)."""
    mode, learner, actors = parse_spec(spec)
    pair = mode_pair(mode, learner)
    command = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet"]
    if pair.is_job:  # a job: the launcher starts its processes (scheduler, server, workers; or ranks)
        servers = ["--servers", "1"] if pair.uses_servers else []
        command[3:3] = ["launch", "--workers", str(DIST_WORKERS), *servers, "--"]
    if resume:
        return command + ["--resume", run_dir]
    first_device = plan.ctx.split(",")[0]
    command += ["--run-dir", run_dir, "--env", plan.env, "--mode", mode, "--seed", str(seed),
                "--preset", plan.preset if pair.has_replay else plan.async_preset,
                "--ctx", first_device if pair.one_device else plan.ctx,
                "--set", f"run.eval_every={plan.eval_every}", "--set", "run.stop_return=none"]
    if learner is not None:
        command += ["--learner", learner]
    if actors is not None:
        command += ["--actors", str(actors)]
    if plan.budget_steps is not None:
        command += ["--steps", str(plan.budget_steps)]
    else:
        command += ["--steps", str(10**12), "--set", f"run.max_seconds={plan.budget_seconds}"]
    for setting in plan.sets:
        command += ["--set", setting]
    return command


def _settings(plan: Plan, spec: str) -> str:
    """How the runs of a compared ``spec`` were set up, for the table."""
    pair = mode_pair(*parse_spec(spec)[:2])
    if not pair.has_replay:
        return f"preset {plan.async_preset}, no replay"
    if pair.is_job and not pair.uses_servers:
        return f"preset {plan.preset}, {DIST_WORKERS} Horovod ranks, allreduce"
    if pair.is_job:
        return f"preset {plan.preset}, {DIST_WORKERS} workers + 1 server, dist_sync"
    return f"preset {plan.preset}"


def _run_child(command: list[str]) -> tuple[int, float, str]:
    """Run ``command``; return its exit code, its peak resident memory in MiB, and its last stderr line."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        stderr_text = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
    except KeyboardInterrupt:
        # The child got the same Ctrl-C (one process group): let it write its checkpoint, then stop.
        process.wait()
        raise
    finally:
        process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in stderr_text.splitlines() if line.strip()]
    return process.returncode, usage.ru_maxrss / 1024.0, lines[-1] if lines else ""


def _status(run_dir: str) -> str:
    """``done``, ``interrupted`` (resumable), or ``missing``."""
    path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(path):
        return "interrupted" if os.path.isdir(os.path.join(run_dir, "checkpoints")) else "missing"
    with open(path) as f:
        summary = json.load(f)
    return "interrupted" if summary.get("interrupted_by") else "done"


def _load_or_save_plan(plan: Plan, out_dir: str) -> None:
    path = os.path.join(out_dir, PLAN_FILE)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        if saved != json.loads(json.dumps(asdict(plan))):
            raise UserError(f"{out_dir} holds another comparison ({PLAN_FILE} differs); choose another --out")
        return
    os.makedirs(out_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(asdict(plan), f, indent=2)


def run_comparison(plan: Plan, out_dir: str, echo=print) -> list[dict]:
    """Run (or continue) every run of ``plan`` in ``out_dir``, then write the figures, table and plots."""
    _load_or_save_plan(plan, out_dir)
    runs = plan.runs()
    memory_path = os.path.join(out_dir, "peak_memory.json")
    memory = {}  # peak resident memory (MiB) per run, kept across continued comparisons
    if os.path.exists(memory_path):
        with open(memory_path) as f:
            memory = json.load(f)
    for number, (mode, seed) in enumerate(runs, 1):
        name = run_name(mode, seed)
        run_dir = os.path.join(out_dir, "runs", name)
        status = _status(run_dir)
        if status == "done":
            echo(f"[{number}/{len(runs)}] {name}: done earlier")
            continue
        echo(f"[{number}/{len(runs)}] {name}: {'resuming' if status == 'interrupted' else 'running'}")
        start = time.monotonic()
        code, peak_mib, last_line = _run_child(train_command(plan, mode, seed, run_dir, status == "interrupted"))
        if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            raise KeyboardInterrupt
        memory[name] = max(memory.get(name, 0.0), peak_mib)
        with open(memory_path, "w") as f:
            json.dump(memory, f)
        if code != 0:
            echo(f"[{number}/{len(runs)}] {name}: failed (exit {code}): {last_line}")
            with open(os.path.join(out_dir, f"{name}.error"), "w") as f:
                f.write(last_line + "\n")
            continue
        figures = run_figures(run_dir, plan.threshold)
        echo(f"[{number}/{len(runs)}] {name}: {figures['env_steps_per_s']:,.0f} env steps/s, final greedy return "
             f"{figures['final_return']:.1f} ({time.monotonic() - start:.0f} s)")
    results = []
    for mode, seed in runs:
        name = run_name(mode, seed)
        run_dir = os.path.join(out_dir, "runs", name)
        row = {"mode": mode, "seed": seed, "run_dir": os.path.relpath(run_dir, out_dir)}
        if _status(run_dir) == "done":
            row.update(status="done", **run_figures(run_dir, plan.threshold), peak_memory_mib=memory.get(name))
        else:
            error_path = os.path.join(out_dir, f"{name}.error")
            error = ""
            if os.path.exists(error_path):
                with open(error_path) as f:
                    error = f.read().strip()
            row.update(status="failed", error=error)
        results.append(row)
    write_results(plan, results, out_dir)
    return results


def run_figures(run_dir: str, threshold: float | None) -> dict:
    """One finished run's figures, from its summary and evaluations."""
    with open(os.path.join(run_dir, "summary.json")) as f:
        counters = json.load(f)["counters"]
    for rank in range(1, plots.job_workers(run_dir)):  # a dist job: every worker's steps count
        with open(os.path.join(metrics.worker_run_dir(run_dir, rank), "summary.json")) as f:
            worker = json.load(f)["counters"]
        counters = {"env_steps": counters["env_steps"] + worker["env_steps"],
                    "learner_steps": counters["learner_steps"] + worker["learner_steps"],
                    "wall_seconds": max(counters["wall_seconds"], worker["wall_seconds"])}
    seconds = max(counters["wall_seconds"], 1e-9)
    curve = plots.evaluation_curve(run_dir)
    # A run that confirms its candidates (run.confirm_episodes) reaches the threshold, and has its best, where a
    # confirmation says so; the raw evaluations of older runs otherwise.
    kept = curve.get("confirmed_mean_return", curve.get("mean_return")) if curve else None
    reached = None
    if curve and threshold is not None:
        hits = np.flatnonzero(kept >= threshold)
        if len(hits):
            reached = (float(curve["wall_seconds"][hits[0]]), int(curve["env_steps"][hits[0]]))
    return {"env_steps": counters["env_steps"], "learner_steps": counters["learner_steps"],
            "wall_seconds": round(counters["wall_seconds"], 2),
            "env_steps_per_s": counters["env_steps"] / seconds, "updates_per_s": counters["learner_steps"] / seconds,
            "seconds_to_threshold": reached[0] if reached else None,
            "env_steps_to_threshold": reached[1] if reached else None,
            "final_return": float(curve["mean_return"][-1]) if curve else float("nan"),
            "best_return": float(np.nanmax(kept)) if curve and not np.all(np.isnan(kept)) else float("nan")}


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(plan: Plan, results: list[dict]) -> list[dict]:
    """One row per mode: medians over its seeds, threshold reached by how many, final return mean and std."""
    rows = []
    for mode in plan.modes:
        done = [r for r in results if r["mode"] == mode and r["status"] == "done"]
        finals = [r["final_return"] for r in done]
        rows.append({
            "mode": mode, "runs": len(done), "failed": sum(1 for r in results if r["mode"] == mode) - len(done),
            "env_steps_per_s": _median(r["env_steps_per_s"] for r in done),
            "updates_per_s": _median(r["updates_per_s"] for r in done),
            "reached": sum(1 for r in done if r["seconds_to_threshold"] is not None),
            "seconds_to_threshold": _median(r["seconds_to_threshold"] for r in done),
            "env_steps_to_threshold": _median(r["env_steps_to_threshold"] for r in done),
            "final_return_mean": float(np.mean(finals)) if finals else None,
            "final_return_std": float(np.std(finals)) if finals else None,
            "peak_memory_mib": max((r["peak_memory_mib"] or 0.0 for r in done), default=None),
            "settings": _settings(plan, mode),
        })
    return rows


def markdown_table(plan: Plan, rows: list[dict]) -> str:
    budget = (f"{plan.budget_steps:,} env steps" if plan.budget_steps is not None
              else f"{plan.budget_seconds:g} s of training")
    threshold = f"{plan.threshold:g}" if plan.threshold is not None else "-"

    def fmt(value, pattern="{:,.0f}"):
        return "-" if value is None else pattern.format(value)

    lines = [f"{plan.env}, {len(plan.seeds)} seed(s) per mode, budget {budget} per run, devices {plan.ctx}; "
             f"medians over seeds.", "",
             f"| mode | env steps/s | updates/s | s to return {threshold} (runs reaching it) | "
             f"env steps to {threshold} | final greedy return (mean ± std) | peak memory MiB | settings |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        runs = f"{r['reached']}/{r['runs']}" + (f", {r['failed']} failed" if r["failed"] else "")
        lines.append(f"| {r['mode']} | {fmt(r['env_steps_per_s'])} | {fmt(r['updates_per_s'])} | "
                     f"{fmt(r['seconds_to_threshold'], '{:.1f}')} ({runs}) | {fmt(r['env_steps_to_threshold'])} | "
                     f"{fmt(r['final_return_mean'], '{:.1f}')} ± {fmt(r['final_return_std'], '{:.1f}')} | "
                     f"{fmt(r['peak_memory_mib'])} | {r['settings']} |")
    return "\n".join(lines) + "\n"


def write_results(plan: Plan, results: list[dict], out_dir: str) -> None:
    """results.json, results.csv, table.md and the plots."""
    rows = summarize(plan, results)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"plan": asdict(plan), "machine": {"cpu_count": os.cpu_count(),
                                                      "load_average": os.getloadavg()},
                   "modes": rows, "runs": results}, f, indent=2)
    columns = sorted({k for r in results for k in r}, key=lambda k: (k not in ("mode", "seed", "status"), k))
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(results)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(markdown_table(plan, rows))
    groups = {mode: [os.path.join(out_dir, r["run_dir"]) for r in results
                     if r["mode"] == mode and r["status"] == "done"] for mode in plan.modes}
    groups = {mode: dirs for mode, dirs in groups.items() if dirs}
    title = f"{plan.env}: greedy return, mean and min-max over seeds"
    plots.grouped_curves(groups, "env_steps", os.path.join(out_dir, "return_vs_env_steps.png"), title)
    plots.grouped_curves(groups, "wall_seconds", os.path.join(out_dir, "return_vs_seconds.png"), title)
    rates = {mode: [r["env_steps_per_s"] for r in results if r["mode"] == mode and r["status"] == "done"]
             for mode in groups}
    plots.throughput_bars(rates, os.path.join(out_dir, "throughput.png"), f"{plan.env}: env steps per second")


def default_threshold(preset: str) -> float | None:
    """The preset's own stop return (CartPole: 475), the natural threshold to time."""
    return load_preset(preset).run.stop_return
