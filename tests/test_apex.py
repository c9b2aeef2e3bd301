"""Mode apex: actor processes feeding one shared prioritized replay; any replay learner; faults and resume."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gluon_pdqn import checkpoint
from gluon_pdqn.acting import Collected
from gluon_pdqn.acting.apex import ApexCollector, _flush, _Outbox
from gluon_pdqn.build import apex_adder, apex_schedules
from gluon_pdqn.config import load_preset
from gluon_pdqn.errors import UserError
from gluon_pdqn.metrics import worker_run_dir
from gluon_pdqn.replay import ReplayBuffer

from test_async import children_of, cmdline
from test_cli import FAST, assert_one_line_error, gluon_pdqn
from test_faults import assert_environment_fault
from tests_helpers import csv_rows as rows, every_actor_acting

APEX = ["--mode", "apex", "--actors", "2"]


def test_actor_priorities_are_the_n_step_td_errors_of_the_local_network():
    outbox, gamma, n = _Outbox(), 0.9, 3
    discounts = gamma ** np.arange(n + 1)
    # Three steps pending (rewards 1, 2, 3; Q(s_t, a_t) 0.5, 0.25, 0); the value after the window is 10.
    pending = [(0, 1.0, "f1", False, False, 0.5), (1, 2.0, "f2", False, False, 0.25), (0, 3.0, "f3", False, False, 0.0)]
    _flush(outbox, 0, pending, 1, 10.0, discounts)
    assert outbox.priorities == [pytest.approx(abs(1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 10 - 0.5))]
    assert len(pending) == 2
    # The episode terminated after them: the last two windows are shorter and bootstrap from 0.
    _flush(outbox, 0, pending, 2, 0.0, discounts)
    assert outbox.priorities[1:] == [pytest.approx(2 + 0.9 * 3 - 0.25), pytest.approx(3.0)]
    assert outbox.frames == ["f1", "f2", "f3"] and not pending


def test_the_replay_gives_a_transition_its_actors_priority_when_its_window_closes():
    replay = ReplayBuffer(100, 1, (2,), np.float32, n_step=2, prioritized=True, alpha=0.5)
    replay.begin_episode_frame(0, np.zeros(2, np.float32))
    priorities = [4.0, 9.0, 16.0]
    for t, priority in enumerate(priorities):
        replay.add_frame(0, 0, 1.0, np.full(2, t + 1, np.float32), False, False, priority=priority)
    # Slot 0's 2-step window closed at the second add, slot 1's at the third; slot 2's is still open.
    leaves = replay.tree.get(np.arange(3))
    np.testing.assert_allclose(leaves, [np.sqrt(4.0 + 1e-6), np.sqrt(9.0 + 1e-6), 0.0], rtol=1e-6)
    # Without a given priority a transition gets the maximum, as before.
    replay.add_frame(0, 0, 1.0, np.full(2, 9, np.float32), False, False)
    replay.add_frame(0, 0, 1.0, np.full(2, 10, np.float32), False, False)
    np.testing.assert_allclose(replay.tree.get(np.arange(4)), [2.0, 3.0, 4.0, 1.0], rtol=1e-5)


class _ParametersOnly:
    """What ApexCollector needs of a learner to publish: its online parameters and step count."""

    learner_steps = 0

    def policy_parameters(self):
        return {"w": np.zeros(3, np.float32)}


@pytest.mark.parametrize("algo", ["dqn", "c51", "qr-dqn"])
def test_stored_transitions_take_the_actors_priority_unless_the_learner_ranks_by_a_distributional_loss(algo):
    cfg = load_preset("cartpole").replace({"run.mode": "apex", "actors.count": 1, "agent.algo": algo,
                                           "replay.prioritized": True, "replay.n_step": 1})
    replay = ReplayBuffer(100, 1, (2,), np.float32, n_step=1, prioritized=True, alpha=1.0)
    replay.max_priority = 5.0
    collector = ApexCollector(cfg, None, apex_adder(cfg, replay, 1), _ParametersOnly(), 0, apex_schedules(cfg))
    try:
        outbox = _Outbox()
        outbox.begin(0, np.zeros(2, np.float32))
        outbox.step(0, 1, 1.0, np.ones(2, np.float32), False, False, priority=0.25)
        collector._store(0, outbox.pack(epsilon=0.1, policy_steps=0), Collected())
    finally:
        collector.shared.close()
    expected = 0.25 + replay.priority_epsilon if algo == "dqn" else 5.0
    np.testing.assert_allclose(replay.tree.get(np.arange(1)), [expected], rtol=1e-6)


def test_the_apex_ladder_and_a_single_actor_explore_like_mode_single():
    cfg = load_preset("cartpole").replace({"run.mode": "apex", "actors.count": 4})
    finals = [s.final for s in apex_schedules(cfg)]
    np.testing.assert_allclose(finals, [0.4 ** (1 + 7 * i / 3) for i in range(4)])
    single = apex_schedules(cfg.replace({"actors.count": 1}))
    assert [s.final for s in single] == [cfg.exploration.epsilon_final]
    assert single[0](cfg.replay.learning_starts - 1) == 1.0  # random until learning starts


def test_the_ladder_of_a_job_gives_each_of_its_workers_actors_its_own_rung():
    """Horgan et al. 2018: worker r's actor i is actor r x N + i of the job's W x N, not actor i of each host."""
    cfg = load_preset("cartpole").replace({"run.mode": "apex", "actors.count": 2})
    job = [s.final for rank in range(3) for s in apex_schedules(cfg, rank=rank, num_workers=3)]
    np.testing.assert_allclose(job, [0.4 ** (1 + 7 * i / 5) for i in range(6)])
    assert len(set(job)) == 6


@pytest.mark.slow  # (moved out of the default suite to keep it within 13 minutes)
def test_apex_learns_cartpole_with_two_actor_processes(tmp_path):
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", *APEX, "--run-dir", str(run_dir), "--steps", "40000", "--quiet",
                        "--set", "run.eval_every=2500", "--set", "run.stop_return=250", timeout=400)
    assert result.returncode == 0, result.stderr
    evaluations = [float(r["mean_return"]) for r in rows(run_dir / "eval.csv")]
    assert max(evaluations) >= 250, evaluations  # a random policy scores about 22
    metrics = rows(run_dir / "metrics.csv")
    lags = [float(r["actors/policy_lag"]) for r in metrics if r["actors/policy_lag"]]
    assert lags and all(0 <= lag < 1000 for lag in lags)
    last = metrics[-1]  # the replay ratio: updates x batch / env steps so far, as of that row
    assert float(last["charts/replay_ratio"]) == pytest.approx(
        int(last["learner_steps"]) * 64 / int(last["env_steps"]), rel=1e-6)
    actors = rows(run_dir / "actors.csv")
    assert {r["actor"] for r in actors} == {"0", "1"}
    assert all(float(r["env_steps_per_s"]) > 0 for r in actors[-2:])
    streams = {r["env_index"] for r in rows(run_dir / "episodes.csv")}
    assert streams == {"0", "1"}  # one replay stream per actor env


def test_apex_with_a_data_parallel_learner_and_resume(tmp_path):
    run_dir = tmp_path / "run"
    args = [*APEX, "--learner", "data", "--ctx", "cpu:0,cpu:1", "--set", "env.num_envs=2", *FAST]
    first = gluon_pdqn("train", "--run-dir", str(run_dir), *args)
    assert first.returncode == 0, first.stderr
    state = checkpoint.read_state(checkpoint.resolve(str(run_dir)))
    assert state["config"]["run"]["learner"] == "data"
    assert state["counters"]["learner_steps"] > 0 and state["replay"] is not None
    streams = {r["env_index"] for r in rows(run_dir / "episodes.csv")}
    assert streams <= {"0", "1", "2", "3"} and len(streams) >= 3  # 2 actors x 2 envs
    second = gluon_pdqn("train", "--resume", str(run_dir), "--steps", "1200", "--quiet")
    assert second.returncode == 0, second.stderr
    resumed = json.loads((run_dir / "summary.json").read_text())
    assert resumed["counters"]["env_steps"] >= 1200
    assert resumed["counters"]["learner_steps"] > state["counters"]["learner_steps"]
    assert any("episodes restart" in note for note in resumed["notes"])


def test_ctrl_c_leaves_a_loadable_checkpoint_and_no_actor_process(tmp_path):
    run_dir = tmp_path / "run"
    process, actors = _start_a_long_run(run_dir)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "gluon-pdqn train --resume" in out
    bundle = checkpoint.resolve(str(run_dir))
    assert checkpoint.read_state(bundle)["counters"]["env_steps"] > 0
    assert not [pid for pid in actors if os.path.exists(f"/proc/{pid}")], "actor processes outlived the run"


def test_an_actor_that_dies_ends_the_run_with_one_line_and_a_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    process, actors = _start_a_long_run(run_dir)
    os.kill(actors[0], signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 3, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1 and lines[-1] == errors[0], err
    assert "apex actor 0 ended unexpectedly" in errors[0] and "--resume" in errors[0]
    assert checkpoint.read_state(checkpoint.resolve(str(run_dir)))["counters"]["env_steps"] > 0
    assert not [pid for pid in actors if os.path.exists(f"/proc/{pid}")]


def test_a_fault_in_an_actors_environment_is_the_users_with_the_actors_traceback(tmp_path):
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", *APEX, "--env", "toy_envs:Failing-v0", "--run-dir", str(run_dir), *FAST)
    assert_environment_fault(result, "RuntimeError: the environment broke", "during a training step", "actor")
    log = (run_dir / "environment-error.log").read_text()
    assert "toy_envs.py" in log and "the environment broke" in log  # the traceback of the actor's process
    assert checkpoint.resolve(str(run_dir))


@pytest.mark.parametrize("args,fragment", [
    (["--mode", "async", "--learner", "data"], "async actors hand in rollouts"),
    (["--mode", "single", "--learner", "rollout"], "the rollout learner learns from async actors"),
    (["--mode", "apex", "--ctx", "cpu:0,cpu:1"], "the single learner trains on one device"),
    (["--mode", "apex", "--set", "run.learner=ensemble"], "apex actors act on one network"),
    (["--mode", "apex", "--set", "actors.sync_every=0"], "actors.sync_every"),
])
def test_pairs_that_make_no_sense_are_refused_in_one_line(tmp_path, args, fragment):
    assert_one_line_error(gluon_pdqn("train", *args, "--run-dir", str(tmp_path / "run"), *FAST), fragment)


def _start_a_long_run(run_dir):
    """An apex run with 2 actors and no end in sight, once its actors act: (process, actor PIDs)."""
    process = subprocess.Popen([sys.executable, "-m", "gluon_pdqn.cli", "train", *APEX, "--run-dir", str(run_dir),
                                "--steps", "10000000", "--quiet", "--set", "run.eval_every=0",
                                "--set", "run.log_every=500"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    return process, _wait_for_actors(process, run_dir, 2)


def _wait_for_actors(process, run_dir, count: int, seconds: float = 120) -> list[int]:
    """The actor processes' PIDs, once the run has logged a metric row (so the actors are acting)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        metrics = run_dir / "metrics.csv"
        if metrics.exists() and len(metrics.read_text().splitlines()) > 2:
            break
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.5)
    actors = [pid for pid in children_of(process.pid) if "spawn_main" in cmdline(pid)]
    assert len(actors) == count, actors
    return actors


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        children = children_of(frontier.pop())
        found += children
        frontier += children
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("collector", [APEX, ["--mode", "async", "--actors", "2", "--actor-backend", "process"]],
                         ids=["apex", "async-processes"])
def test_no_process_outlives_a_learner_killed_by_sigkill(tmp_path, collector):
    """As the kernel's OOM killer does: every process the run started ends within seconds, and no shared memory
    of the run is left in /dev/shm."""
    run_dir = tmp_path / "run"
    shm_before = set(os.listdir("/dev/shm"))
    process = subprocess.Popen([sys.executable, "-m", "gluon_pdqn.cli", "train", *collector, "--run-dir",
                                str(run_dir), "--steps", "10000000", "--quiet", "--set", "run.eval_every=0",
                                "--set", "run.log_every=500"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    _wait_for_actors(process, run_dir, 2)
    everyone = _descendants(process.pid)  # the actors, and whatever else it started (multiprocessing's helpers)
    assert len(everyone) >= 2, everyone
    process.kill()
    process.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in everyone) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in everyone if _alive(pid)], [cmdline(pid) for pid in everyone if _alive(pid)]
    assert set(os.listdir("/dev/shm")) <= shm_before, set(os.listdir("/dev/shm")) - shm_before


def test_apex_actors_on_job_workers_get_dist_async_and_dist_sync_is_refused_in_one_line():
    """Each worker updates at its own actors' pace: under dist_sync two workers waited on each other forever."""
    from gluon_pdqn.build import default_kvstore

    assert default_kvstore("dist", "apex") == "dist_async" and default_kvstore("dist") == "dist_sync"
    assert default_kvstore("apex") is None
    with pytest.raises(UserError, match="need --kvstore dist_async"):
        load_preset("cartpole").replace({"run.mode": "dist", "run.collector": "apex", "run.kvstore": "dist_sync"})
    load_preset("cartpole").replace({"run.mode": "dist", "run.collector": "apex", "run.kvstore": "dist_async"})


def test_an_actor_dying_on_a_worker_of_a_job_ends_the_job_in_seconds_naming_worker_and_actor(tmp_path):
    """Apex actors as the collector of each parameter-server worker: rank 0 gathers every actor's figures (by its
    index in the job's epsilon ladder) and the job's sums; one actor's death on worker 1 ends the job with one
    line naming the worker and the actor, well before the stall watchdog, with worker 1's checkpoint."""
    from gluon_pdqn.parallel.launcher import Job, JobFailed

    run_dir = tmp_path / "run"
    job = Job(2, 1, [sys.executable, "-m", "gluon_pdqn.cli", "train", "--mode", "dist", "--collector", "apex",
                     "--actors", "2", "--run-dir", str(run_dir), "--steps", "10000000", "--quiet",
                     "--set", "run.eval_every=0", "--set", "run.log_every=100", "--set", "replay.learning_starts=200"],
              out=open(os.devnull, "w"), stall_timeout=300)
    job.start()
    try:
        worker = [c for c in job.children if c.role == "worker"][1]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not every_actor_acting(run_dir, 4):
            time.sleep(0.5)
        actors = [pid for pid in children_of(worker.process.pid) if "spawn_main" in cmdline(pid)]
        assert len(actors) == 2 and every_actor_acting(run_dir, 4), actors
        os.kill(actors[1], signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(JobFailed) as failure:
            job.wait()
        assert time.monotonic() - start < 10
    finally:
        job.stop()
    message = str(failure.value)
    assert message.startswith("worker 1 exited with code 3: apex actor 1 ended unexpectedly"), message
    assert "the same gluon-pdqn launch with -- train --resume" in message
    # Both workers saved their work (worker 0, asked by the launcher, had no periodic checkpoint yet).
    named = message.split("last checkpoints:")[1]
    for rank in range(2):
        state = checkpoint.read_state(checkpoint.resolve(worker_run_dir(str(run_dir), rank)))
        assert state["counters"]["env_steps"] > 0
        assert f"worker {rank} at {state['counters']['env_steps']:,} env steps" in named
    assert all(c.process.poll() is not None for c in job.children)
    assert not [pid for pid in actors if os.path.exists(f"/proc/{pid}")]
    # Rank 0's job tables: each worker's posts (policy lag and replay ratio among them), the sums over the
    # workers' latest posts, and each actor with its own rung of the job-wide ladder (actor rank x 2 + i).
    cfg = load_preset("cartpole").replace({"actors.count": 2})
    ladder = {(rank, i): s.final for rank in range(2) for i, s in enumerate(apex_schedules(cfg, rank, 2))}
    listed = {(int(r["rank"]), int(r["actor"]), int(r["job_actor"])): float(r["final_epsilon"])
              for r in rows(run_dir / "job_actors.csv")}
    assert sorted(listed) == [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)]
    assert all(listed[key] == pytest.approx(ladder[key[:2]]) for key in listed) and len(set(listed.values())) == 4
    workers = rows(run_dir / "workers.csv")
    learning = [r for r in workers if float(r["worker/learner_steps"]) > 0]
    assert {r["rank"] for r in learning} == {"0", "1"}
    assert all(float(r["worker/replay_ratio"]) > 0 and float(r["worker/policy_lag"]) >= 0 for r in learning)
    for total in rows(run_dir / "job.csv"):
        posts = [r for r in workers if r["env_steps"] == total["env_steps"]]
        summed = sum(float(r["worker/env_steps_per_s"]) for r in posts)
        assert float(total["env_steps_per_s"]) == pytest.approx(summed, rel=1e-4)
