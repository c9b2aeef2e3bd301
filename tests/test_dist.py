"""Mode dist on 127.0.0.1: dist_sync equivalence, dist_async learning, faults, ports, Ctrl-C, resume."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn.config import Config
from gluon_pdqn.errors import UserError
from gluon_pdqn.learners import SingleLearner
from gluon_pdqn.parallel.launcher import SERVER_PROGRAM, Job, JobFailed
from gluon_pdqn.replay import Batch
from tests_helpers import SPEC, csv_rows, equivalence_batch

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)
from dist_worker import SETTINGS, algo_settings  # noqa: E402


def launch(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", "launch", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("push_every, algo", [(1, "dqn"), (2, "dqn"), (1, "c51")])
def test_dist_sync_workers_hold_the_parameters_of_one_process_on_all_batches(tmp_path, push_every, algo):
    """After 3 pushes every worker equals one process stepping on the batches each push summed, concatenated."""
    prefix = str(tmp_path / "params")
    job = Job(2, 1, [sys.executable, os.path.join(TESTS_DIR, "dist_worker.py"), prefix, str(push_every), algo],
              deadline=120, out=open(os.devnull, "w"))
    job.start()
    assert job.wait() == 0
    workers = [np.load(f"{prefix}-{rank}.npz") for rank in (0, 1)]
    mx.random.seed(0)
    reference = SingleLearner(Config().replace({**SETTINGS, **algo_settings(algo), "run.mode": "single",
                                                "run.kvstore": "device"}), SPEC, mx.cpu())
    for push in range(3):
        parts = [equivalence_batch(step, part) for step in range(push * push_every, (push + 1) * push_every)
                 for part in (0, 1)]
        reference.step(Batch(*(np.concatenate([getattr(p, f) for p in parts]) for f in Batch.__dataclass_fields__)))
    expected = {k: v.data().asnumpy() for k, v in reference.online._collect_params_with_prefix().items()}
    for name, value in expected.items():
        np.testing.assert_array_equal(workers[0][name], workers[1][name], err_msg=name)
        np.testing.assert_allclose(workers[0][name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    assert not any(c.process.poll() is None for c in job.children)


def test_a_killed_worker_ends_the_job_naming_it(tmp_path):
    job = Job(2, 1, [sys.executable, "-m", "gluon_pdqn.cli", "train", "--mode", "dist", "--run-dir",
                     str(tmp_path / "run"), "--steps", "10000000", "--quiet", "--set", "run.eval_every=0"],
              out=open(os.devnull, "w"))
    job.start()
    time.sleep(8)
    victim = [c for c in job.children if c.role == "worker"][1]
    os.kill(victim.process.pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(JobFailed, match="worker 1 was killed by SIGKILL"):
        job.wait()
    assert time.monotonic() - start < 20
    assert all(c.process.poll() is not None for c in job.children)
    with socket.socket() as s:  # nothing listens on the scheduler's port any more (TIME_WAIT aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", job.port))
        s.listen()


def test_an_occupied_port_is_a_one_line_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = launch("--port", str(port), "--", "train", "--mode", "dist", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("launcher", ["slurm", "mpi", "ssh"])
def test_launchers_to_other_machines_need_an_interface(tmp_path, launcher):
    (tmp_path / "hosts").write_text("node1\nnode2\n")
    result = launch("--launcher", launcher, "-H", str(tmp_path / "hosts"), "--", "train", "--mode", "dist")
    assert result.returncode == 2 and "give --interface IF" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_launch_runs_only_train_in_mode_dist_and_train_refuses_dist_outside_a_job(tmp_path):
    result = launch("--", "train", "--mode", "single")
    assert result.returncode == 2 and "train --mode dist" in result.stderr
    direct = subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", "train", "--mode", "dist", "--run-dir",
                             str(tmp_path / "d")], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert direct.returncode == 2 and "gluon-pdqn launch" in direct.stderr
    with pytest.raises(UserError, match="only mode dist"):
        Config().replace({"run.kvstore": "dist_sync"})


def _endless_job(run_dir, stderr=subprocess.PIPE) -> subprocess.Popen:
    """``gluon-pdqn launch -- train --mode dist`` with a budget it will not reach, running in the background."""
    return subprocess.Popen([sys.executable, "-m", "gluon_pdqn.cli", "launch", "--", "train", "--mode", "dist",
                             "--run-dir", str(run_dir), "--steps", "10000000", "--quiet", "--set", "run.eval_every=0"],
                            stdout=subprocess.PIPE, stderr=stderr, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def test_ctrl_c_on_the_launcher_checkpoints_the_workers_and_ends_the_job(tmp_path):
    run_dir = tmp_path / "run"
    process = _endless_job(run_dir)
    # Until both ranks train (start-up takes longer on a loaded machine): rank 0 logs during its warm-up while rank 1
    # may still be joining, and a dist_sync worker cannot agree to stop with a rank that is not there yet.
    logs = [run_dir / "metrics.csv", run_dir / "workers" / "rank-1" / "metrics.csv"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(f.exists() and len(f.read_text().splitlines()) > 1 for f in logs):
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 130, err
    assert "interrupted by SIGINT" in out
    # dist_sync: the workers agreed on the update at which they stopped; the launcher names what they wrote.
    summaries = [json.loads((d / "summary.json").read_text()) for d in (run_dir, run_dir / "workers" / "rank-1")]
    assert summaries[0]["counters"]["learner_steps"] == summaries[1]["counters"]["learner_steps"] > 0
    report = next(line for line in out.splitlines() if line.startswith("job interrupted by SIGINT"))
    for rank, summary in enumerate(summaries):
        assert f"worker {rank} wrote a checkpoint at {summary['counters']['env_steps']:,} env steps" in report, report


def _sh_worker(script: str) -> list[str]:
    return ["sh", "-c", script]


def test_local_servers_and_workers_get_ports_in_launch_order_and_a_share_of_the_cores(monkeypatch):
    """ps-lite ranks one host's nodes by port, so each local server and worker gets its port in launch order
    (worker 1 is kvstore rank 1); and the processes of a local job share this machine's cores."""
    import io

    from gluon_pdqn import physical_cores
    from gluon_pdqn.parallel import launcher

    monkeypatch.setattr(launcher, "OMP_THREADS_SET_BY_USER", False)
    out = io.StringIO()
    job = Job(2, 1, _sh_worker('echo "placed $PORT $OMP_NUM_THREADS"'), deadline=60, out=out)
    job._start_coordination = lambda: job._start("server", 0)  # no scheduler: nothing needs to meet here
    job.start()
    for child in job.children:
        if child.role == "worker":
            child.process.wait(timeout=30)
            child.output.join(timeout=5)
    job.stop()  # the server, waiting for a scheduler
    placed = sorted(line.split(" placed ")[1].split() for line in out.getvalue().splitlines() if " placed " in line)
    ports = [int(port) for port, _ in placed]
    assert len(ports) == 2 and ports == sorted(ports) and ports[0] > int(job._node_ports[0])
    assert {threads for _, threads in placed} == {str(max(1, physical_cores() // 3))}


def test_dist_sync_workers_stop_together_when_their_clocks_disagree(tmp_path):
    """run.max_seconds with one worker starting 0.5 s later: each worker's clock says stop at another update,
    yet they must stop at the same one (the first to stop alone would leave the other pushing forever)."""
    run_dir = tmp_path / "run"
    train = (f"{sys.executable} -m gluon_pdqn.cli train --mode dist --run-dir {run_dir} --steps 10000000 --quiet "
             "--set run.eval_every=0 --set run.max_seconds=8 --set replay.learning_starts=200")
    late = f"mkdir {tmp_path}/first 2>/dev/null || sleep 0.5; exec {train}"  # the second worker to start waits
    job = Job(2, 1, _sh_worker(late), deadline=120, out=open(os.devnull, "w"))
    job.start()
    assert job.wait() == 0
    summaries = [json.loads((d / "summary.json").read_text()) for d in (run_dir, run_dir / "workers" / "rank-1")]
    assert summaries[0]["counters"]["learner_steps"] == summaries[1]["counters"]["learner_steps"] > 0
    assert all(summary["checkpoint"] for summary in summaries)


def test_reaching_stop_return_ends_every_dist_sync_worker_at_one_update(tmp_path):
    """Rank 0 evaluates; its first evaluation reaches the (low) stop_return, and the vote ends both workers
    long before their budget (a worker left running alone would push forever, and the deadline would fail)."""
    run_dir = tmp_path / "run"
    result = launch("--workers", "2", "--deadline", "240", "--", "train", "--mode", "dist", "--run-dir", str(run_dir),
                    "--steps", "10000000", "--quiet", "--set", "run.eval_every=1000", "--set", "run.stop_return=1",
                    "--set", "replay.learning_starts=200", "--set", "run.eval_episodes=2", timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "solved: greedy mean return" in result.stdout and "env steps of this worker" in result.stdout
    summaries = [json.loads((d / "summary.json").read_text()) for d in (run_dir, run_dir / "workers" / "rank-1")]
    assert summaries[0]["solved_at_env_steps"] == 1000
    assert summaries[0]["counters"]["learner_steps"] == summaries[1]["counters"]["learner_steps"] > 0
    assert summaries[1]["counters"]["env_steps"] < 5000 and all(summary["checkpoint"] for summary in summaries)


def test_dist_sync_workers_whose_warm_up_runs_at_different_speeds_still_post_their_figures(tmp_path):
    """Rank 0's environment is slow during the replay's warm-up, which has no update to keep the workers in step:
    worker 1 posted its figures for later logs before rank 0 pulled the board of the first, and the servers held
    rank 0's pull back until its own next post: both hung (until the stall timeout ended the job)."""
    run_dir = tmp_path / "run"
    result = launch("--workers", "2", "--stall-timeout", "30", "--", "train", "--mode", "dist", "--env",
                    "toy_envs:SlowFirstWorker-v0", "--seed", "0", "--run-dir", str(run_dir), "--steps", "1600",
                    "--quiet", "--set", "run.eval_every=0", "--set", "run.log_every=50",
                    "--set", "replay.learning_starts=600", timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    posted = [(row["env_steps"], row["rank"]) for row in csv_rows(run_dir / "workers.csv")]
    logs = sorted({steps for steps, _ in posted}, key=int)
    assert len(logs) >= 16 and sorted(posted) == sorted((steps, rank) for steps in logs for rank in "01")


@pytest.mark.parametrize("reported, expected", [
    ("", "worker 0 reported no progress within 3 s of its start"),
    ("@gluon-pdqn progress 100 7 0", "worker 0 made no progress for 3 s \\(at 100 env steps, 7 updates\\)"),
])
def test_a_worker_that_makes_no_progress_ends_the_job(reported, expected):
    job = Job(1, 1, _sh_worker(f"echo '{reported}'; sleep 60"), stall_timeout=3, out=open(os.devnull, "w"))
    job.start()
    start = time.monotonic()
    with pytest.raises(JobFailed, match=expected):
        job.wait()
    assert 3 <= time.monotonic() - start < 12
    assert all(c.process.poll() is not None for c in job.children)


def test_a_worker_that_crashes_below_python_is_named_with_its_last_line():
    """An abort in a C++ library prints its reason and raises SIGABRT: the job's error carries the reason."""
    crash = ("import os, sys; print('terminate called after throwing an instance of gloo::IoException', "
             "file=sys.stderr, flush=True); os.abort()")
    job = Job(1, 1, [sys.executable, "-c", crash], deadline=60, out=open(os.devnull, "w"))
    job.start()
    with pytest.raises(JobFailed, match="^worker 0 was killed by SIGABRT; its last line: terminate called after "
                                        "throwing an instance of gloo::IoException;"):
        job.wait()


class _RankedJob(Job):
    """A job whose workers know their rank (``$RANK``), so a test can script each one."""

    def _role_environment(self, role, rank, node_host):
        return {**super()._role_environment(role, rank, node_host), "RANK": str(rank)}


def _scripted_workers(directory, first: str, then: str) -> list[str]:
    """Worker 1 runs ``first`` (and marks its end); worker 0 waits for that mark, then runs ``then``."""
    return _sh_worker(f'if [ "$RANK" = 1 ]; then touch {directory}/ended; {first}; fi; '
                      f'while [ ! -e {directory}/ended ]; do sleep 0.01; done; sleep 0.05; {then}')


def test_a_worker_killed_from_outside_is_named_not_one_that_crashed_after_it(tmp_path):
    """A Horovod rank killed on its host (by the user, the out-of-memory killer) and its peer then aborting: the
    job named the peer's SIGABRT (stop 42), because its check came between the two deaths and named the first
    listed."""
    crash = "echo 'terminate called after throwing an instance of gloo::EnforceNotMet'; kill -ABRT $$"
    job = _RankedJob(2, 1, _scripted_workers(tmp_path, "kill -KILL $$", crash), deadline=60,
                     out=open(os.devnull, "w"))
    job.start()
    with pytest.raises(JobFailed, match="^worker 1 was killed by SIGKILL;"):
        job.wait()


def test_of_two_failed_workers_the_one_that_ended_first_is_named(tmp_path):
    job = _RankedJob(2, 1, _scripted_workers(tmp_path, "echo 'error: the first failure'; exit 1",
                                             "echo 'error: a later one'; exit 2"),
                     deadline=60, out=open(os.devnull, "w"))
    job.start()
    with pytest.raises(JobFailed, match="^worker 1 exited with code 1: the first failure;"):
        job.wait()


def test_ctrl_c_ends_at_once_a_job_whose_workers_are_still_joining():
    """Workers still joining (blocked in ps-lite, where SIGINT waits forever) have nothing to save."""
    out = tempfile.TemporaryFile("w+")
    job = Job(2, 1, _sh_worker("trap '' INT; sleep 60"), out=out)
    job.start()
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    assert job.wait() == 130
    assert time.monotonic() - start < 10
    out.seek(0)
    assert ("job interrupted by SIGINT: worker 0 was still joining the job (nothing to save); worker 1 was still "
            "joining the job (nothing to save); last checkpoints: worker 0 none, worker 1 none") in out.read()


def _environment_has(pid: int, entry: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry.encode() in f.read().split(b"\0")
    except OSError:
        return False


def test_a_killed_launcher_takes_every_process_of_its_job_with_it(tmp_path):
    run_dir = tmp_path / "run"
    process = _endless_job(run_dir, stderr=subprocess.DEVNULL)
    port = process.stdout.readline().split(",")[0].rsplit(":", 1)[1]  # job: scheduler on 127.0.0.1:PORT, ...
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "workers" / "rank-1" / "metrics.csv").exists():
        time.sleep(0.5)
    job = [int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
           if _environment_has(int(pid), f"DMLC_PS_ROOT_PORT={port}")]
    assert len(job) == 4  # scheduler, server, two workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in job):
        time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
                   for pid in job)


@pytest.mark.slow
def test_dist_async_learns_cartpole(tmp_path):
    """Two dist_async workers and one server reach a greedy mean >= 475 (rank 0 evaluates)."""
    run_dir = tmp_path / "run"
    result = launch("--workers", "2", "--", "train", "--mode", "dist", "--kvstore", "dist_async", "--run-dir",
                    str(run_dir), "--steps", "60000", "--quiet", "--set", "run.eval_every=2000", timeout=900)
    assert result.returncode == 0, result.stdout[-2000:]
    returns = [float(line.split(",")[3]) for line in (run_dir / "eval.csv").read_text().splitlines()[1:]]
    assert max(returns) >= 475, returns


def test_a_killed_server_ends_the_job_and_the_run_resumes_from_its_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    train = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet"]
    job = Job(2, 1, train + ["--mode", "dist", "--run-dir", str(run_dir), "--steps", "10000000",
                             "--set", "run.eval_every=0", "--set", "run.checkpoint_every=500"], out=open(os.devnull, "w"))
    job.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (run_dir / "workers" / "rank-1" / "checkpoints").exists():
        time.sleep(0.5)
    time.sleep(2)
    os.kill([c for c in job.children if c.role == "server"][0].process.pid, signal.SIGKILL)
    with pytest.raises(JobFailed, match="server 0 was killed by SIGKILL"):
        job.wait()
    assert all(c.process.poll() is not None for c in job.children)
    # The same job continues from each worker's last complete checkpoint.
    result = launch("--", "train", "--resume", str(run_dir), "--steps", "3000")
    assert result.returncode == 0, result.stdout[-1500:]
    assert "optimizer's state lives on the kvstore servers" in result.stdout
    for directory in (run_dir, run_dir / "workers" / "rank-1"):
        summary = json.loads((directory / "summary.json").read_text())
        assert summary["counters"]["env_steps"] >= 1500


def _csv_rows(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("kvstore", [pytest.param("dist_sync", marks=pytest.mark.slow), "dist_async"])
def test_rank_0_gathers_every_workers_figures_with_staleness_and_round_trips(tmp_path, kvstore):
    """workers.csv at rank 0 holds both workers' rows, posted over the kvstore (no shared files needed).

    dist_async measures staleness: some pushes miss the other worker's updates. dist_sync, where it is
    pull_every - 1 by construction, does not. Launch labels are kvstore ranks.
    """
    run_dir = tmp_path / "run"
    result = launch("--", "train", "--mode", "dist", "--kvstore", kvstore, "--run-dir", str(run_dir), "--steps",
                    "5000", "--quiet", "--set", "run.eval_every=0", "--set", "run.log_every=500",
                    "--set", "replay.learning_starts=500")
    assert result.returncode == 0, result.stdout[-2000:]
    assert f"[worker 1] run directory: {run_dir}/workers/rank-1" in result.stdout
    rows = _csv_rows(run_dir / "workers.csv")
    assert {r["rank"] for r in rows} == {"0", "1"}
    learning = [r for r in rows if float(r["worker/pushes"]) > 0 and r["worker/round_trip_ms"] != "nan"]
    assert {r["rank"] for r in learning} == {"0", "1"}
    assert all(float(r["worker/round_trip_ms"]) > 0 for r in learning)
    staleness = [float(r["worker/staleness"]) for r in learning]
    if kvstore == "dist_sync":
        assert all(value != value for value in staleness)  # not measured
    else:
        assert min(staleness) >= 0 and max(float(r["worker/staleness_max"]) for r in learning) >= 1
    # What rank 0 received from rank 1 is what rank 1 logged (in dist_async, maybe not its latest row yet).
    own = {float(r["env_steps"]): r for r in _csv_rows(run_dir / "workers" / "rank-1" / "metrics.csv")}
    for posted in (r for r in rows if r["rank"] == "1"):
        logged = own[float(posted["worker/env_steps"])]
        assert float(posted["worker/env_steps_per_s"]) == pytest.approx(float(logged["charts/env_steps_per_s"]),
                                                                        rel=1e-6)


SHIMS = os.path.join(TESTS_DIR, "launcher_shims")


def _shimmed_launch(tmp_path, launcher: str, *train_args: str, wait: bool = True):
    """``gluon-pdqn launch --launcher L`` in tmp_path with the stand-ins of tests/launcher_shims first on PATH."""
    env = {**os.environ, "PATH": SHIMS + os.pathsep + os.environ["PATH"], "SHIM_LOG": str(tmp_path / "shim.log")}
    if launcher == "ssh":
        (tmp_path / "hosts").write_text("localhost\n127.0.0.1\n")
        where = ["-H", str(tmp_path / "hosts")]
    else:
        where = ["--interface", "lo"]
    command = [sys.executable, "-m", "gluon_pdqn.cli", "launch", "--launcher", launcher, *where, "--", "train",
               "--mode", "dist", "--quiet", "--set", "run.eval_every=0", *train_args]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                              env=env, cwd=tmp_path)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=env, cwd=tmp_path, start_new_session=True)


@pytest.mark.parametrize("launcher", ["ssh", pytest.param("slurm", marks=pytest.mark.slow), "mpi"])
def test_a_job_runs_through_ssh_srun_and_mpirun(tmp_path, launcher):
    """With stand-ins that behave as the real commands do for the environment (tests/launcher_shims).

    ssh's remote shell and mpirun's ranks see only what the launcher passes on: the job's variables and the
    run's time stamp, so both workers share one default run directory.
    """
    result = _shimmed_launch(tmp_path, launcher, "--steps", "2000")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-500:]
    wrapped = (tmp_path / "shim.log").read_text().splitlines()
    assert len(wrapped) == 3  # one server and two workers; the scheduler runs here
    if launcher == "ssh":  # servers, then workers, round robin over the hostfile (localhost, 127.0.0.1)
        # The stand-ins log as they start, which need not be the order they were launched in.
        assert sorted(wrapped) == ["ssh 127.0.0.1 DMLC_ROLE=worker", "ssh localhost DMLC_ROLE=server",
                                   "ssh localhost DMLC_ROLE=worker"]
    (run_dir,) = [p.parent for p in (tmp_path / "runs").glob("*/config.json")]
    for directory in (run_dir, run_dir / "workers" / "rank-1"):
        assert json.loads((directory / "summary.json").read_text())["counters"]["env_steps"] >= 1000


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_ctrl_c_ends_processes_started_over_ssh_which_checkpoint(tmp_path):
    """ssh neither passes signals on nor ends the remote command when killed; the launcher still ends it all."""
    run_dir = tmp_path / "ssh-run"
    process = _shimmed_launch(tmp_path, "ssh", "--run-dir", str(run_dir), "--steps", "10000000", wait=False)
    deadline = time.monotonic() + 120  # until rank 1 trains (start-up takes longer on a loaded machine)
    metrics_csv = run_dir / "workers" / "rank-1" / "metrics.csv"
    while time.monotonic() < deadline and not (metrics_csv.exists() and len(metrics_csv.read_text().splitlines()) > 1):
        time.sleep(0.5)
    assert len(_processes_mentioning(str(run_dir))) >= 2  # the remote workers, in sessions of their own
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=90)
    assert process.returncode == 130
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _processes_mentioning(str(run_dir)):
        time.sleep(0.5)
    assert _processes_mentioning(str(run_dir)) == []
    for directory in (run_dir, run_dir / "workers" / "rank-1"):  # ended by SIGTERM, they wrote a checkpoint
        assert os.listdir(directory / "checkpoints")


def _server_process(port: int) -> int | None:
    """The kvstore server of the job whose scheduler listens on ``port`` (not the remote watcher around it,
    parallel.remote, which has its environment too)."""
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        if (_environment_has(pid, "DMLC_ROLE=server") and _environment_has(pid, f"DMLC_PS_ROOT_PORT={port}")
                and _arguments(pid)[1:3] == [a.encode() for a in SERVER_PROGRAM]):
            return pid
    return None


def _arguments(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def test_a_killed_remote_server_ends_an_ssh_job_leaving_no_process(tmp_path, monkeypatch):
    """The workers then wait on the dead server and cannot act on SIGTERM: SIGKILL follows after the grace."""
    monkeypatch.setenv("PATH", SHIMS + os.pathsep + os.environ["PATH"])
    run_dir = tmp_path / "run"
    job = Job(2, 1, [sys.executable, "-m", "gluon_pdqn.cli", "train", "--mode", "dist", "--run-dir", str(run_dir),
                     "--steps", "10000000", "--quiet", "--set", "run.eval_every=0"],
              launcher="ssh", hosts=["localhost", "127.0.0.1"], remote_grace=3, out=open(os.devnull, "w"))
    job.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (run_dir / "workers" / "rank-1" / "metrics.csv").exists():
            time.sleep(0.5)
        server = _server_process(job.port)
        assert server is not None and os.getsid(server) != os.getsid(job.children[1].process.pid)
        os.kill(server, signal.SIGKILL)
        with pytest.raises(JobFailed, match="server 0 was killed by SIGKILL on localhost"):
            job.wait()
    finally:
        job.stop()

    def left() -> list[int]:  # the workers (they name the run directory), and any process of the job's servers
        return _processes_mentioning(str(run_dir)) + [
            int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
            if _environment_has(int(pid), f"DMLC_PS_ROOT_PORT={job.port}")]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and left():
        time.sleep(0.5)
    assert left() == []


def test_a_remote_command_without_its_checkout_exits_127_saying_so():
    from gluon_pdqn.parallel.launcher import remote_command

    result = subprocess.run(["sh", "-c", remote_command("/no/such/checkout", {"A": "1"}, ["true"])],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 127 and "no directory /no/such/checkout on this host" in result.stderr
    here = subprocess.run(["sh", "-c", remote_command(os.getcwd(), {"A": "1"}, ["sh", "-c", "exit $A"])],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert here.returncode == 1  # the program's own exit code, through the watcher


def _watched(program: list[str], *options: str) -> subprocess.Popen:
    """``program`` under the remote watcher of launch --launcher ssh (parallel.remote), input from a pipe."""
    return subprocess.Popen([sys.executable, "-m", "gluon_pdqn.parallel.remote", *options, "--", *program],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_remote_watcher_ends_its_program_when_ssh_input_ends_or_heartbeats_stop():
    # The launcher closes ssh's input: SIGTERM, and the program's exit code as a shell reports it.
    watched = _watched(["sleep", "60"])
    time.sleep(1)
    watched.stdin.close()
    assert watched.wait(timeout=5) == 128 + signal.SIGTERM
    # No heartbeat for --silence seconds (a host or link that went down), although the input stays open.
    watched = _watched(["sleep", "60"], "--silence", "2")
    start = time.monotonic()
    assert watched.wait(timeout=10) == 128 + signal.SIGTERM and time.monotonic() - start >= 2
    assert "no heartbeat from the launcher for 2 s" in watched.stderr.read()
    watched.stdin.close()
    # Heartbeats keep it running.
    watched = _watched(["sh", "-c", "sleep 3; exit 7"], "--silence", "1")
    while watched.poll() is None:
        try:
            watched.stdin.write("\n")
            watched.stdin.flush()
        except BrokenPipeError:  # the watcher has just exited
            break
        time.sleep(0.3)
    assert watched.wait(timeout=5) == 7


def test_the_remote_watcher_kills_a_program_that_ignores_sigterm_and_takes_it_along_when_killed():
    watched = _watched(["sh", "-c", "trap '' TERM; sleep 60"], "--grace", "1")
    time.sleep(1)
    start = time.monotonic()
    watched.stdin.close()
    assert watched.wait(timeout=10) == 128 + signal.SIGKILL and time.monotonic() - start >= 1
    watched = _watched([sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"])
    program = int(watched.stdout.readline())
    watched.kill()  # SIGKILL: the watcher can do nothing, the program dies with it (PR_SET_PDEATHSIG)
    watched.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{program}"):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{program}")
