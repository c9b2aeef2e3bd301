"""Fault injection through the command line: the user's environment misbehaves, a signal arrives mid-phase.

Each case asserts the exit code, the single ``error:`` line, no traceback on the terminal, and what was saved.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from gluon_pdqn import checkpoint

from test_cli import FAST, assert_one_line_error, gluon_pdqn, trained_run  # noqa: F401 (a fixture)

ENVIRONMENT_FAULT = 4


def assert_environment_fault(result, *fragments):
    assert result.returncode == ENVIRONMENT_FAULT, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr  # progress lines before it, nothing after
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


FAULTY_ENVS = [
    ("toy_envs:Failing-v0", ["RuntimeError: the environment broke", "during a training step"]),
    ("toy_envs:NanReward-v0", ["non-finite reward (nan)"]),
    ("toy_envs:WrongShapeOnce-v0", ["shape"]),  # (a vector env of several fails to stack it first)
]


@pytest.mark.parametrize("env_id,fragments", [
    ("toy_envs:Failing-v0", ["RuntimeError: the environment broke", "during a training step", "env step 200"]),
    ("toy_envs:NanReward-v0", ["non-finite reward (nan)", "env step 300"]),
    ("toy_envs:WrongShapeOnce-v0", ["during a training step", "env step 249"]),
])
def test_a_fault_in_the_users_environment_ends_with_a_checkpoint_and_a_log(tmp_path, env_id, fragments):
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--env", env_id, "--run-dir", str(run_dir), *FAST)
    assert_environment_fault(result, *fragments, "--resume")
    log = (run_dir / "environment-error.log").read_text()
    assert "Traceback" in log or "non-finite" in log
    bundle = checkpoint.resolve(str(run_dir))  # the work done so far, complete and loadable
    steps = checkpoint.read_state(bundle)["counters"]["env_steps"]
    assert steps >= 200 and checkpoint.read_state(bundle)["replay"] is not None  # the replay kept too
    evaluated = gluon_pdqn("evaluate", str(run_dir), "--episodes", "2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr


ACTOR_COLLECTORS = {"apex": ["--mode", "apex", "--actors", "2"],
                    "async-threads": ["--mode", "async", "--actors", "2", "--actor-backend", "thread"],
                    "async-processes": ["--mode", "async", "--actors", "2", "--actor-backend", "process"]}
# Every fault in apex actors; in async actors each fault on one backend and each backend with a fault in the
# default suite (both backends call the same checks, acting/checks.py), the other three in make test-slow.
SLOW_ACTOR_FAULTS = {("exception", "async-processes"), ("nan-reward", "async-threads"),
                     ("wrong-shape", "async-threads")}


@pytest.mark.parametrize("env_id,fragments,collector", [
    pytest.param(env_id, fragments, command, id=f"{fault}-{name}",
                 marks=[pytest.mark.slow] if (fault, name) in SLOW_ACTOR_FAULTS else [])
    for name, command in ACTOR_COLLECTORS.items()
    for (env_id, fragments), fault in zip(FAULTY_ENVS, ["exception", "nan-reward", "wrong-shape"])])
def test_a_fault_inside_an_actor_ends_the_run_as_it_does_in_the_vector_env(tmp_path, collector, env_id, fragments):
    """Every collector's environment calls go through the same checks: one line naming the environment, the
    actor and the env step, exit 4, the traceback in environment-error.log, and a checkpoint that resumes."""
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", *collector, "--env", env_id, "--run-dir", str(run_dir), *FAST[:1], *FAST[3:], "--steps",
                        "5000")
    assert_environment_fault(result, env_id, *fragments, "(actor ", "at env step", "--resume")
    assert (run_dir / "environment-error.log").read_text().strip()
    bundle = checkpoint.resolve(str(run_dir))
    assert checkpoint.read_state(bundle)["counters"]["env_steps"] > 0
    evaluated = gluon_pdqn("evaluate", str(run_dir), "--episodes", "2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr


def test_an_environment_without_end_or_time_limit_still_evaluates(tmp_path):
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--env", "toy_envs:Endless-v0", "--run-dir", str(run_dir), "--quiet", "--steps",
                        "400", "--set", "run.eval_every=400", "--set", "run.eval_episodes=2", "--set",
                        "replay.learning_starts=200", "--set", "network.hidden=16,16", timeout=120)
    assert result.returncode == 0, result.stderr
    rows = (run_dir / "eval.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[3] == "10000.0"  # capped at 10,000 steps of reward 1


def test_a_signal_during_a_long_evaluation_stops_it_within_seconds(tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "gluon_pdqn.cli", "train", "--env", "toy_envs:Endless-v0", "--run-dir", str(run_dir),
         "--quiet", "--steps", "5000", "--set", "run.eval_every=300", "--set", "run.eval_episodes=16", "--set",
         "run.stop_return=none", "--set", "run.log_every=100", "--set", "replay.learning_starts=200", "--set",
         "network.hidden=16,16"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run_dir / "metrics.csv").exists() or "\n300," not in (run_dir / "metrics.csv").read_text():
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read() if process.poll() else ""
        time.sleep(0.2)
    time.sleep(0.2)  # inside the evaluation (it starts right after the row at 300): 16 x 10,000 steps take over 1 s
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    assert time.monotonic() - sent < 5, "the evaluation did not answer the signal"
    assert process.returncode == 130, stderr
    assert not (run_dir / "eval.csv").exists() or len((run_dir / "eval.csv").read_text().splitlines()) == 1
    assert checkpoint.read_state(checkpoint.resolve(str(run_dir)))["counters"]["env_steps"] >= 300


def _corrupt_copy(trained_run, tmp_path, damage):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    os.remove(copy / ".owner.lock")
    bundle = pathlib.Path(checkpoint.resolve(str(copy)))
    damage(bundle)
    _reseal(bundle)  # as a foreign or buggy writer would: the files are consistent with the marker, but wrong
    return copy


def _reseal(bundle):
    """Record the bundle's files as they are now in its marker, so what follows the checksums is tested."""
    marker = json.loads((bundle / checkpoint.MARKER).read_text())
    for name, entry in marker["files"].items():
        entry.update(size=(bundle / name).stat().st_size, sha256=checkpoint._digest(str(bundle / name)))
    (bundle / checkpoint.MARKER).write_text(json.dumps(marker))


def _edit_json(name, change):
    def damage(bundle):
        data = json.loads((bundle / name).read_text())
        change(data)
        (bundle / name).write_text(json.dumps(data))
    return damage


def _replace_npz(name, **arrays):
    def damage(bundle):
        import numpy as np

        with open(bundle / name, "wb") as f:
            np.savez(f, **arrays)
    return damage


@pytest.mark.parametrize("damage,file,commands", [
    (_edit_json("state.json", lambda s: s.pop("counters")), "state.json", ("evaluate", "resume")),
    (_edit_json("state.json", lambda s: s["counters"].update(env_steps="many")), "state.json", ("evaluate", "resume")),
    (_edit_json("state.json", lambda s: s.update(config=[1, 2])), "state.json", ("evaluate", "resume")),
    (_edit_json("optimizer.json", lambda s: s.update(indices=[3])), "optimizer.json", ("resume",)),
    (_edit_json("optimizer.json", lambda s: s.pop("num_update")), "optimizer.json", ("resume",)),
    (_replace_npz("loop.npz", other=[1, 2]), "loop.npz", ("resume",)),
    (_replace_npz("replay.npz", other=[1, 2]), "replay.npz", ("resume",)),
])
def test_a_checkpoint_that_parses_but_is_wrong_gets_one_line_naming_the_file(trained_run, tmp_path, damage, file,
                                                                           commands):
    copy = _corrupt_copy(trained_run, tmp_path, damage)
    if "evaluate" in commands:
        assert_one_line_error(gluon_pdqn("evaluate", str(copy), "--episodes", "1"), "corrupt", file)
    if "resume" in commands:
        result = gluon_pdqn("train", "--resume", str(copy), "--quiet", "--steps", "700")
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "corrupt" in errors[0] and file in errors[0], result.stderr


def test_a_second_process_on_a_run_directory_is_refused_naming_the_owner(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "gluon_pdqn.cli", "train", "--run-dir", str(run_dir), "--quiet",
                              "--steps", "10000000", "--set", "run.eval_every=0", "--set", "network.hidden=16,16",
                              "--set", "run.log_every=100"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "metrics.csv").exists() or len((run_dir / "metrics.csv").read_text().splitlines()) < 2:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        second = gluon_pdqn("train", "--resume", str(run_dir), "--quiet")
        assert_one_line_error(second, "in use by process", str(first.pid))
    finally:
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    # The lock died with its process: the run resumes at once.
    resumed = gluon_pdqn("train", "--resume", str(run_dir), "--quiet", "--steps", "1")
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.parametrize("where,fragment", [("file", "is a file"), ("/proc/gluon_pdqn/run", "cannot create run directory")])
def test_a_run_directory_that_cannot_be_written_is_one_line(tmp_path, where, fragment):
    run_dir = tmp_path / "a-file" if where == "file" else pathlib.Path(where)
    if where == "file":
        run_dir.write_text("mine")
    assert_one_line_error(gluon_pdqn("train", "--run-dir", str(run_dir), *FAST), fragment)


def _tiny_tmpfs(path, size):
    """Mount a tmpfs of ``size`` at ``path``; None (with the reason) where this machine cannot."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                            text=True)
    return None if result.returncode == 0 else f"cannot mount a tmpfs: {result.stderr.strip()}"


def test_a_full_disk_ends_with_one_line_and_the_newest_complete_checkpoint(tmp_path):
    disk = tmp_path / "disk"
    reason = _tiny_tmpfs(disk, "1536k")
    if reason:
        pytest.skip(reason)
    try:
        run_dir = disk / "run"
        result = gluon_pdqn("train", "--run-dir", str(run_dir), "--quiet", "--steps", "100000", "--set",
                            "run.checkpoint_every=200", "--set", "run.keep_checkpoints=50", "--set",
                            "replay.capacity=8000", "--set", "run.eval_every=0", "--set", "network.hidden=16,16")
        assert result.returncode == 5, result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "No space left on device" in errors[0] and "--resume" in errors[0], result.stderr
        names = os.listdir(run_dir / "checkpoints")
        assert not [n for n in names if n.endswith(".tmp")]  # no half-written bundle left behind
        newest = checkpoint.resolve(str(run_dir))
        assert checkpoint.read_state(newest)["counters"]["env_steps"] >= 200
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_failed_checkpoint_write_removes_its_partial_bundle(tmp_path, monkeypatch):
    """The same without a tmpfs: a write that fails midway (stubbed) leaves the previous bundle intact."""
    import errno

    import numpy as np

    from gluon_pdqn.errors import StorageFault
    from gluon_pdqn.run.loop import Training
    from test_training import small_cfg

    training = Training(small_cfg(run__total_env_steps=600, run__checkpoint_every=200), str(tmp_path))
    training.run(stop_at=200)
    real_savez = np.savez

    def full_disk(path, **arrays):
        if str(path).endswith("replay.npz"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_savez(path, **arrays)
    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(StorageFault, match="No space left on device.*ckpt-000000000200, is intact"):
        Training(small_cfg(run__total_env_steps=600, run__checkpoint_every=200), str(tmp_path),
                 resume_bundle=checkpoint.resolve(str(tmp_path))).run()
    assert [os.path.basename(b) for b in checkpoint.list_complete(str(tmp_path))] == ["ckpt-000000000200"]
    assert not [n for n in os.listdir(tmp_path / "checkpoints") if n.endswith(".tmp")]


def test_an_address_space_limit_below_the_replay_is_one_line(tmp_path):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
    result = subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--run-dir",
                             str(tmp_path / "run"), "--steps", "100", "--set", "replay.capacity=200000000"],
                            preexec_fn=limit, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert_one_line_error(result, "ulimit -v", "replay.capacity")
    assert not (tmp_path / "run").exists()


def test_an_unreadable_newest_checkpoint_is_named_not_skipped(trained_run, monkeypatch):
    """A bundle this process may not read (root reads everything, so the denial is simulated) is named in one
    line; it is not taken for an incomplete one, which would quietly resume from an older checkpoint."""
    from gluon_pdqn.errors import UserError

    newest = checkpoint.resolve(str(trained_run))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == newest else real_access(path, mode))
    with pytest.raises(UserError, match=f"{os.path.basename(newest)} cannot be read"):
        checkpoint.resolve(str(trained_run))


def test_output_files_in_a_missing_directory_are_refused_before_any_work(trained_run, tmp_path):
    missing = tmp_path / "no-such-dir"
    assert_one_line_error(gluon_pdqn("evaluate", str(trained_run), "--video", str(missing / "episode.gif")),
                          "--video", "does not exist")
    assert_one_line_error(gluon_pdqn("plot", str(trained_run), "--out", str(missing / "curves.png")),
                          "--out", "does not exist")


def test_compare_fails_when_its_runs_fail(tmp_path):
    result = gluon_pdqn("compare", "--modes", "single", "--seeds", "1", "--budget-steps", "300", "--ctx", "banana",
                        "--out", str(tmp_path / "cmp"))
    assert result.returncode == 3, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "1 of 1 runs failed" in errors[0] and "ctx" in errors[0], result.stderr


def test_an_environment_that_fails_at_its_first_reset_is_one_line_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--env", "toy_envs:FailingReset-v0", "--run-dir", str(run_dir), *FAST)
    assert_environment_fault(result, "OSError: the simulator is not running", "the first reset")
    assert not run_dir.exists()  # nothing had been done: nothing to keep
