"""`gluon-pdqn compare` and `gluon-pdqn plot`, through the command line."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from gluon_pdqn import plots
from gluon_pdqn.cli import cli as cli_group
from gluon_pdqn.compare import Plan, markdown_table, run_name, summarize, train_command


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "result"
    args = ["compare", "--modes", "single,async,dist", "--seeds", "1", "--budget-steps", "1500", "--eval-every", "500",
            "--threshold", "20", "--out", str(out), "--set", "network.hidden=16,16",
            "--set", "replay.learning_starts=200"]
    return out, args, cli(*args)


def test_compare_writes_figures_table_and_plots(comparison):
    out, _, result = comparison
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "results.json").read_text())
    assert [(r["mode"], r["seed"], r["status"]) for r in report["runs"]] == [
        (mode, 0, "done") for mode in ("single", "async", "dist")]
    for run in report["runs"]:
        assert run["env_steps"] >= 1500 and run["env_steps_per_s"] > 0 and run["peak_memory_mib"] > 50
        assert run["final_return"] == run["final_return"]  # evaluated (not NaN)
    assert {m["mode"]: m["runs"] for m in report["modes"]} == {"single": 1, "async": 1, "dist": 1}
    table = (out / "table.md").read_text()
    assert table.count("\n| single |") == 1 and table.count("\n| async |") == 1 and "preset async, no replay" in table
    assert "2 workers + 1 server, dist_sync" in table
    assert (out / "results.csv").read_text().startswith("mode,seed,status")
    for name in ("return_vs_env_steps.png", "return_vs_seconds.png", "throughput.png"):
        assert (out / name).stat().st_size > 5000
    assert "| mode |" in result.stdout


def test_rerunning_a_comparison_continues_it_and_refuses_another_plan(comparison):
    out, args, _ = comparison
    again = cli(*args)
    assert again.returncode == 0 and again.stdout.count("done earlier") == 3
    other = cli(*[a if a != "1500" else "3000" for a in args])
    assert other.returncode == 2 and "holds another comparison" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


def test_plot_draws_any_run_directories(comparison, tmp_path):
    out, _, _ = comparison
    runs = sorted(str(p) for p in (out / "runs").iterdir())
    path = tmp_path / "curves.png"
    result = cli("plot", *runs, "--out", str(path), "--x", "wall_seconds")
    assert result.returncode == 0 and path.stat().st_size > 5000
    bad = cli("plot", str(tmp_path))
    assert bad.returncode == 2 and "not a run directory" in bad.stderr


def test_plot_groups_run_directories_under_the_labels_given(comparison, tmp_path, monkeypatch):
    out, _, _ = comparison
    runs = sorted(str(p) for p in (out / "runs").iterdir())  # async-s0, dist-s0, single-s0
    drawn = {}
    monkeypatch.setattr(plots, "grouped_curves", lambda groups, x, path, title="": drawn.update(groups=groups,
                                                                                                 title=title))
    result = CliRunner().invoke(cli_group, ["plot", f"mine={runs[0]}", f"mine={runs[1]}", runs[2], "--title", "Ours",
                                            "--out", str(tmp_path / "curves.png")])
    assert result.exit_code == 0, result.output
    assert drawn == {"groups": {"mine": runs[:2], "CartPole-v1 single": [runs[2]]}, "title": "Ours"}


@pytest.mark.parametrize("args, fragment", [
    (["--budget-steps", "10", "--budget-seconds", "5"], "exactly one"),
    (["--modes", "single,warp", "--budget-steps", "10"], "unknown mode 'warp'"),
    (["--modes", "async:data", "--budget-steps", "10"], "cannot learn with the data learner"),
    (["--modes", "apex@0", "--budget-steps", "10"], "@N gives the actors"),
    (["--preset", "nope", "--budget-steps", "10"], "unknown preset"),
])
def test_bad_compare_input_is_one_line(tmp_path, args, fragment):
    result = cli("compare", "--out", str(tmp_path / "x"), *args)
    assert result.returncode == 2 and fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_table_counts_runs_reaching_the_threshold_and_failures():
    plan = Plan(env="E", modes=("single", "data"), seeds=(0, 1), budget_steps=100, budget_seconds=None,
                preset="cartpole", async_preset="async", ctx="cpu:0,cpu:1", eval_every=10, threshold=100.0)
    done = dict(status="done", env_steps_per_s=10.0, updates_per_s=5.0, env_steps_to_threshold=50,
                final_return=100.0, peak_memory_mib=300.0)
    results = [{"mode": "single", "seed": 0, **done, "seconds_to_threshold": 4.0},
               {"mode": "single", "seed": 1, **done, "seconds_to_threshold": None, "final_return": 50.0},
               {"mode": "data", "seed": 0, **done, "seconds_to_threshold": 6.0},
               {"mode": "data", "seed": 1, "status": "failed", "error": "boom"}]
    rows = summarize(plan, results)
    assert rows[0]["reached"] == 1 and rows[0]["seconds_to_threshold"] == 4.0 and rows[0]["final_return_mean"] == 75.0
    assert rows[1]["runs"] == 1 and rows[1]["failed"] == 1
    table = markdown_table(plan, rows)
    assert "| single | 10 | 5 | 4.0 (1/2) |" in table and "(1/1, 1 failed)" in table


def test_a_runs_spec_chooses_its_learner_actors_and_devices():
    plan = Plan(env="CartPole-v1", modes=("apex:data@4", "apex@2"), seeds=(0,), budget_steps=100,
                           budget_seconds=None, preset="cartpole", async_preset="async", ctx="cpu:0,cpu:1",
                           eval_every=50, threshold=None)

    def option(command, name):
        return command[command.index(name) + 1]

    data = train_command(plan, "apex:data@4", 0, "/runs/a", resume=False)
    assert (option(data, "--mode"), option(data, "--learner"), option(data, "--actors")) == ("apex", "data", "4")
    assert option(data, "--ctx") == "cpu:0,cpu:1"
    single = train_command(plan, "apex@2", 0, "/runs/b", resume=False)
    assert "--learner" not in single and option(single, "--actors") == "2" and option(single, "--ctx") == "cpu:0"
    assert run_name("apex:data@4", 1) == "apex-data-a4-s1"
