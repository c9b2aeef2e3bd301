"""The command line as a user meets it: exit codes, one-line errors, signals, resume."""
import json
import os
import platform
import signal
import subprocess
import sys
import time

import pytest

FAST = ["--quiet", "--steps", "600", "--set", "run.eval_every=0", "--set", "replay.learning_starts=200",
        "--set", "network.hidden=16,16", "--set", "run.log_every=100"]


def gluon_pdqn(*args, timeout=240, cwd=None):
    return subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = gluon_pdqn("train", "--run-dir", str(run_dir), *FAST)
    assert result.returncode == 0, result.stderr
    return run_dir


def test_train_writes_a_complete_run_directory(trained_run):
    for name in ("config.json", "metrics.csv", "episodes.csv", "summary.json", "learning_curve.png"):
        assert (trained_run / name).exists(), name
    assert json.loads((trained_run / "summary.json").read_text())["counters"]["env_steps"] >= 600
    assert json.loads((trained_run / "config.json").read_text())["run"]["total_env_steps"] == 600


def test_loop_phases_account_for_the_loops_time(trained_run):
    """act + env + store + learn (ms per env step) are parts of each window's time per env step."""
    import csv

    from gluon_pdqn import metrics

    with open(trained_run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows[1:]:
        phases = [float(row[name]) for name in metrics.LOOP_PHASES.values()]
        ms_per_step = 1e3 / float(row[metrics.ENV_STEPS_PER_S])
        assert all(p >= 0 for p in phases) and phases[1] > 0  # stepping the environment takes time
        assert 0.3 * ms_per_step <= sum(phases) <= 1.01 * ms_per_step, (phases, ms_per_step)
    assert float(rows[-1][metrics.LOOP_LEARN_MS]) > 0  # learning had started by the last window


def test_evaluate_reports_returns(trained_run, tmp_path):
    video = tmp_path / "episode.gif"
    result = gluon_pdqn("evaluate", str(trained_run), "--episodes", "3", "--json", "--video", str(video))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    returns = report["returns"]
    assert len(returns) == 3 and all(r == int(r) and 8 <= r <= 500 for r in returns)  # CartPole-v1 episodes
    assert report["mean"] == pytest.approx(sum(returns) / 3)
    assert (report["min"], report["max"]) == (min(returns), max(returns))
    assert video.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


@pytest.mark.parametrize("args,fragments", [
    (["--env", "NoSuchEnv-v9"], ["NoSuchEnv"]),
    (["--env", "Pendulum-v1"], ["discrete action space"]),
    (["--env", "no_such_module:Thing-v0"], ["no_such_module"]),
    (["--preset", "nope"], ["unknown preset", "cartpole"]),
    (["--set", "replay.nope=1"], ["unknown setting", "replay.capacity"]),
    (["--set", "replay.capacity"], ["key=value"]),
    (["--set", "agent.gamma=2"], ["agent.gamma"]),
    (["--ctx", "cpu:x"], ["malformed --ctx"]),
    (["--seed", "-1"], ["--seed"]),
    (["--set", "optim.learning_rate=inf"], ["optim.learning_rate", "finite"]),
    (["--set", "env.frame_skip=0"], ["env.frame_skip"]),
    (["--set", "optim.adam_epsilon=0"], ["optim.adam_epsilon"]),
    (["--env", "nosuchmodule:Foo-v0"], ["no module named 'nosuchmodule'"]),
    (["--ctx", "gpu:0"], ["gpu:0", "no GPU"]),
    (["--ctx", "cpu:0,cpu:1"], ["one device"]),
    (["--steps", "abc"], ["--steps"]),
    (["--mode", "warp"], ["--mode"]),
    (["--mode", "data"], ["two or more"]),
    (["--mode", "model", "--ctx", "cpu:0,cpu:1", "--set", "run.model_split=9"], ["run.model_split"]),
    (["--mode", "ensemble", "--ctx", "cpu:0"], ["two or more"]),
])
def test_bad_training_input_is_one_line_and_leaves_nothing(tmp_path, args, fragments):
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--run-dir", str(run_dir), "--quiet", *args)
    assert_one_line_error(result, *fragments)
    assert not run_dir.exists()


def test_an_existing_run_directory_is_never_overwritten(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = gluon_pdqn("train", "--run-dir", str(tmp_path), *FAST)
    assert_one_line_error(result, "already exists", "--resume")
    assert os.listdir(tmp_path) == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_corrupt_and_foreign_checkpoints_are_refused(trained_run, tmp_path):
    assert_one_line_error(gluon_pdqn("evaluate", str(tmp_path / "nothing")), "no checkpoint")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "state.json").write_text('{"format": "someone-else"}')
    (foreign / "COMPLETE").write_text("ok")
    assert_one_line_error(gluon_pdqn("evaluate", str(foreign)), "not a gluon_pdqn checkpoint")
    import shutil

    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained_run / "checkpoints" / sorted(os.listdir(trained_run / "checkpoints"))[-1], corrupt)
    (corrupt / "params.params").write_bytes(b"\x00garbage" * 10)
    assert_one_line_error(gluon_pdqn("evaluate", str(corrupt)), "params.params")
    (corrupt / "state.json").write_text("{not json")
    assert_one_line_error(gluon_pdqn("evaluate", str(corrupt)), "corrupt")


def test_resume_refuses_to_change_what_defines_the_run(trained_run):
    assert_one_line_error(gluon_pdqn("train", "--resume", str(trained_run), "--env", "Acrobot-v1"),
                          "cannot change env.id")
    assert_one_line_error(gluon_pdqn("train", "--resume", str(trained_run), "--set", "network.hidden=32,32"),
                          "cannot change network.hidden")


def test_resume_accepts_the_runs_own_settings_again(trained_run, tmp_path):
    """The command that started a run, given again with --resume (as a script does), continues it."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    repeated = [a for a in FAST if a != "600"]  # every setting of the run, the step budget raised
    repeated[repeated.index("--steps") + 1:repeated.index("--steps") + 1] = ["800"]
    result = gluon_pdqn("train", "--resume", str(run_dir), *repeated)
    assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "summary.json").read_text())["counters"]["env_steps"] >= 800


def test_user_environment_module_ids_work(tmp_path):
    result = gluon_pdqn("train", "--env", "toy_envs:Counting-v0", "--run-dir", str(tmp_path / "run"), *FAST)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_leaves_a_checkpoint_the_run_resumes_from(tmp_path, sig, code):
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "gluon_pdqn.cli", "train", "--run-dir", str(run_dir),
                                "--quiet", "--steps", "1000000", "--set", "run.eval_every=0",
                                "--set", "run.checkpoint_every=0", "--set", "replay.learning_starts=200",
                                "--set", "network.hidden=16,16", "--set", "run.log_every=100"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    metrics = run_dir / "metrics.csv"
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) > 3):
        time.sleep(0.2)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and "--resume" in stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    steps = summary["counters"]["env_steps"]
    assert summary["interrupted_by"] == sig.name and steps > 300
    resumed = gluon_pdqn("train", "--resume", str(run_dir), "--quiet", "--steps", str(steps + 300))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "summary.json").read_text())["counters"]["env_steps"] >= steps + 300


def test_info_shows_versions_features_and_devices():
    result = gluon_pdqn("info")
    assert result.returncode == 0
    assert "mxnet" in result.stdout and "DIST_KVSTORE=yes" in result.stdout and "cpu:0" in result.stdout


@pytest.mark.parametrize("mode", ["model", "ensemble"])
def test_multi_device_checkpoints_evaluate_on_one_device(tmp_path, mode):
    run_dir = tmp_path / mode
    trained = gluon_pdqn("train", "--mode", mode, "--ctx", "cpu:0,cpu:1", "--run-dir", str(run_dir), *FAST)
    assert trained.returncode == 0, trained.stderr
    result = gluon_pdqn("evaluate", str(run_dir), "--episodes", "2", "--json", "--ctx", "cpu:0")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["returns"]) == 2


def test_a_users_image_environment_trains_with_default_settings_and_learns(tmp_path):
    """A user's HWC uint8 environment through the CLI with no settings: the image preset, and the small CNN
    learns it from pixels.

    PixelChoice-v0 rewards reading a colour from the image (random play scores about 0, the best 20).
    """
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--env", "toy_envs:PixelChoice-v0", "--steps", "4000", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert "preset image (the default for toy_envs:PixelChoice-v0" in result.stdout
    assert "network small_cnn" in result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_eval_mean"] >= 15, summary


@pytest.mark.parametrize("env_id,sets,fragment", [
    ("toy_envs:TextObs-v0", [], "Text"),
    ("toy_envs:PixelChoice-v0", ["--set", "network.name=nature_cnn"], "too small for network.name=nature_cnn"),
])
def test_observations_that_cannot_be_taken_get_one_line(tmp_path, env_id, sets, fragment):
    result = gluon_pdqn("train", "--env", env_id, "--run-dir", str(tmp_path / "run"), *FAST, *sets)
    assert_one_line_error(result, fragment)


@pytest.mark.parametrize("calls, warned", [
    ("g.give_mxnet_every_core(); import mxnet; g.give_mxnet_every_core()", 0),  # took effect: a second call is fine
    ("import mxnet; g.give_mxnet_every_core()", 1),  # too late: said so
])
def test_mxnet_gets_every_core_when_asked_before_it_loads(calls, warned):
    script = ("import os, warnings\nimport gluon_pdqn as g\nwith warnings.catch_warnings(record=True) as caught:\n"
              "    warnings.simplefilter('always')\n    " + calls + "\n"
              "print(sum('already imported' in str(w.message) for w in caught), os.environ.get('OMP_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    count, threads = result.stdout.split()
    assert int(count) == warned
    assert (threads != "None") == (not warned)


@pytest.mark.skipif(not sys.platform.startswith("linux")
                    or platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"),
                    reason="flushing subnormals is for Linux on x86_64 and aarch64")
@pytest.mark.parametrize("keep", ["", "1"])
def test_subnormal_floats_are_flushed_in_mxnets_threads_and_ours_unless_kept(keep):
    """An optimizer state that sinks below 1.2e-38 made MinAtar Freeway's steps twice as slow: gluon_pdqn flushes
    subnormals to zero from its import on, in MXNet's engine threads and in threads started later."""
    script = ("import threading\nimport gluon_pdqn\nimport mxnet as mx, numpy as np\n"
              "tiny = np.float32(1e-40)\nseen = {}\n"
              "def values():\n"
              "    return (float((mx.nd.array([tiny]) * 1.0).asnumpy()[0]),\n"
              "            float(np.array([tiny]) * np.float32(1.0)))\n"
              "thread = threading.Thread(target=lambda: seen.update(thread=values()))\nthread.start(); thread.join()\n"
              "print(*values(), *seen['thread'])")
    env = {**os.environ, "GLUON_PDQN_KEEP_DENORMALS": keep}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "subnormal" not in result.stderr  # numpy's finfo warning when it is computed after the flush
    values = [float(v) for v in result.stdout.split()]
    assert (values == [0.0] * 4) if not keep else all(9.9e-41 < v < 1.01e-40 for v in values), values


def test_a_parameter_server_flushes_subnormal_floats_before_mxnet_starts():
    """A dist job's kvstore servers run the optimizer, whose state sinks into subnormals as a learner's does: the
    program the launcher starts them with (run here without DMLC_ROLE, so that it does not serve) flushes them
    before MXNet starts its engine threads."""
    from gluon_pdqn.parallel.launcher import SERVER_PROGRAM

    flag, value = SERVER_PROGRAM
    start = f"exec({value!r})" if flag == "-c" else f"import runpy; runpy.run_module({value!r})"
    script = f"{start}\nimport mxnet as mx\nprint(float((mx.nd.array([1e-40]) * 1.0).asnumpy()[0]))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMLC_") and k != "GLUON_PDQN_KEEP_DENORMALS"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 0.0
