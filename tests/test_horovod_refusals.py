"""What the horovod learner refuses, in one line, wherever Horovod is or is not installed (default suite).

Its jobs themselves run in the cluster suite (tests/test_horovod.py, tests/test_cluster.py), which installs it.
"""
import subprocess
import sys

import pytest

from gluon_pdqn.errors import UserError
from gluon_pdqn.parallel import horovod
from gluon_pdqn.parallel.launcher import HorovodJob


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _one_line_error(done, *words):
    assert done.returncode == 2, done.stdout[-1000:] + done.stderr[-1000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_the_horovod_learner_outside_a_job_says_how_to_launch_it(tmp_path):
    done = _cli("train", "--mode", "dist", "--learner", "horovod", "--steps", "100", "--quiet", "--run-dir",
                str(tmp_path / "run"))
    _one_line_error(done, "gluon-pdqn launch --workers N -- train --mode dist --learner horovod")


@pytest.mark.parametrize("launch_args, words", [
    (["--servers", "1"], ["a Horovod job has no servers"]),
    (["--launcher", "mpi", "-H", "/dev/null", "--interface", "lo"], ["--launcher local or ssh, not mpi"]),
])
def test_launch_refuses_what_a_horovod_job_cannot_take(tmp_path, launch_args, words):
    done = _cli("launch", *launch_args, "--", "train", "--mode", "dist", "--learner", "horovod", "--quiet",
                "--run-dir", str(tmp_path / "run"))
    _one_line_error(done, *words)


def test_apex_actors_with_the_horovod_learner_are_refused_saying_why(tmp_path):
    done = _cli("train", "--mode", "dist", "--learner", "horovod", "--collector", "apex", "--quiet", "--run-dir",
                str(tmp_path / "run"))
    _one_line_error(done, "must update in step with the others")


def test_without_horovod_the_learner_and_the_launch_say_how_to_install_it(monkeypatch):
    for name in ("horovod", "horovod.mxnet", "horovod.runner", "horovod.runner.http.http_server",
                 "horovod.runner.common.util.hosts"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as where it is not installed
    assert not horovod.installed()
    with pytest.raises(UserError, match="make horovod"):
        horovod.require()
    job = HorovodJob(2, [sys.executable, "-c", "pass"])
    with pytest.raises(UserError, match="make horovod"):
        job.start()
    assert not job.children  # nothing was started


def test_ranks_are_numbered_on_their_hosts_as_horovod_numbers_them():
    slots = horovod.slots(["a", "b", "a", "c"])
    assert [(s.rank, s.local_rank, s.local_size, s.cross_rank, s.cross_size) for s in slots] == [
        (0, 0, 2, 0, 3), (1, 0, 1, 1, 3), (2, 1, 2, 0, 1), (3, 0, 1, 2, 3)]
    environment = horovod.rank_environment(slots[2], "10.0.0.1", 4321, "eth1")
    assert environment["HOROVOD_RANK"] == "2" and environment["HOROVOD_SIZE"] == "4"
    assert environment["HOROVOD_GLOO_RENDEZVOUS_ADDR"] == "10.0.0.1" and environment["HOROVOD_GLOO_IFACE"] == "eth1"
