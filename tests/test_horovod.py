"""The horovod learner placement: ranks of a Horovod job whose gradients are averaged by allreduce.

In the cluster suite (``make test-cluster`` installs Horovod with ``make horovod``; elsewhere these tests skip
saying how to install it): the update of 2 ranks equals one learner's on both ranks' batches, a 2-rank job
solves CartPole on loopback, a killed rank and Ctrl-C end the job with checkpoints and no process left, and a
resumed job continues with every rank's parameters equal. Across namespace hosts: tests/test_cluster.py.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn.config import Config
from gluon_pdqn.learners import SingleLearner
from gluon_pdqn.parallel import horovod
from gluon_pdqn.parallel.launcher import HorovodJob, JobFailed
from gluon_pdqn.replay import Batch

TESTS_DIR = os.path.dirname(__file__)
sys.path.insert(0, TESTS_DIR)
from horovod_worker import SETTINGS, STEPS, algo_settings  # noqa: E402
from test_async import children_of  # noqa: E402
from tests_helpers import SPEC, csv_rows, equivalence_batch  # noqa: E402

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(not horovod.installed(), reason=f"Horovod is not installed: {horovod.INSTALL}")]


def _launch(run_dir, *train_args: str):
    """``gluon-pdqn launch --workers 2 -- train --mode dist --learner horovod`` on loopback, running."""
    command = [sys.executable, "-m", "gluon_pdqn.cli", "launch", "--workers", "2", "--", "train", "--mode", "dist",
               "--learner", "horovod", "--quiet", "--run-dir", str(run_dir), *train_args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _listening_addresses(pids: list[int]) -> list[str]:
    """``address:port`` of every TCP socket listening in ``pids``."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    addresses = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                host, port = fields[1].split(":")
                addresses.append(f"{socket.inet_ntoa(bytes.fromhex(host)[::-1])}:{int(port, 16)}")
    return addresses


def _wait_for(condition, seconds: float, what: str) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            pytest.fail(f"{what} not within {seconds:g} s")
        time.sleep(0.2)


def _params(bundle) -> dict:
    return {k: v.asnumpy() for k, v in mx.nd.load(os.path.join(bundle, "params.params")).items()}


def _newest_bundle(run_dir) -> str:
    bundles = sorted(p for p in os.listdir(run_dir / "checkpoints") if p.startswith("ckpt-"))
    return str(run_dir / "checkpoints" / bundles[-1])


@pytest.mark.parametrize("algo", ["dqn", "c51"])
def test_two_ranks_give_the_update_of_one_learner_on_both_batches(tmp_path, algo):
    """Rank 0's parameters broadcast, then 3 clipped Adam updates on each rank's batch: both ranks hold what one
    learner holds after the same updates on the two batches concatenated, and clipped the same norm."""
    prefix = str(tmp_path / "params")
    log = tmp_path / "ranks.log"
    with open(log, "w") as out:
        job = HorovodJob(2, [sys.executable, os.path.join(TESTS_DIR, "horovod_worker.py"), prefix, algo],
                         deadline=120, out=out)
        job.start()
        try:
            assert job.wait() == 0
        except JobFailed as failure:
            pytest.fail(f"{failure}\nthe ranks' output:\n{log.read_text()[-3000:]}")
    ranks = [np.load(f"{prefix}-{rank}.npz") for rank in (0, 1)]
    mx.random.seed(0)  # rank 0's initial parameters
    reference = SingleLearner(Config().replace({**SETTINGS, **algo_settings(algo), "run.mode": "single",
                                                "run.learner": "auto"}), SPEC, mx.cpu())
    norms = []
    for step in range(STEPS):
        parts = [equivalence_batch(step, rank) for rank in (0, 1)]
        batch = Batch(*(np.concatenate([getattr(p, f) for p in parts]) for f in Batch.__dataclass_fields__))
        norms.append(reference.step(batch).grad_norm)
    assert min(norms) > SETTINGS["optim.max_grad_norm"]  # every update was clipped
    np.testing.assert_allclose(ranks[0]["norms"], norms, rtol=1e-4)
    for name, param in reference.online._collect_params_with_prefix().items():
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
        np.testing.assert_allclose(ranks[0][name], param.data().asnumpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_a_two_rank_job_on_loopback_solves_cartpole_listening_only_on_loopback(tmp_path):
    run_dir = tmp_path / "run"
    job = _launch(run_dir, "--steps", "60000", "--set", "run.eval_every=2000")
    try:
        _wait_for(lambda: (run_dir / "workers" / "rank-1" / "metrics.csv").exists() or job.poll() is not None, 120,
                  "rank 1 training")
        listening = _listening_addresses([job.pid, *children_of(job.pid)])
        out, _ = job.communicate(timeout=900)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 0, out[-3000:]
    assert listening and all(a.startswith("127.0.0.1:") for a in listening), listening  # rendezvous and Gloo
    assert "solved" in out, out[-2000:]
    returns = [float(row["confirmed_mean_return"] or "nan") for row in csv_rows(run_dir / "eval.csv")]
    assert max(returns) >= 475, returns
    ranks = {row["rank"] for row in csv_rows(run_dir / "workers.csv")}
    assert ranks == {"0", "1"}  # rank 0 gathered both ranks' figures
    rank_1 = run_dir / "workers" / "rank-1"
    zero, one = _params(_newest_bundle(run_dir)), _params(_newest_bundle(rank_1))
    for name in zero:
        np.testing.assert_array_equal(zero[name], one[name], err_msg=name)


def _training_job(run_dir):
    """A long loopback job, once both ranks train; (the launcher, the ranks' pids)."""
    job = _launch(run_dir, "--steps", "10000000", "--set", "run.eval_every=0")
    try:
        _wait_for(lambda: (run_dir / "workers" / "rank-1" / "metrics.csv").exists(), 120, "rank 1 training")
    except BaseException:
        os.killpg(job.pid, signal.SIGKILL)
        raise
    time.sleep(3)
    return job, children_of(job.pid)


def test_a_killed_rank_ends_the_job_naming_it_and_the_other_rank_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    job, ranks = _training_job(run_dir)
    try:
        assert len(ranks) == 2
        os.kill(max(ranks), signal.SIGKILL)  # the later started: rank 1
        out, _ = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 3, out[-2000:]
    failure = out.strip().splitlines()[-1]
    assert failure.startswith("error: worker 1 was killed by SIGKILL"), failure
    assert "worker 0 at " in failure, failure  # rank 0 wrote a checkpoint when its allreduce failed
    assert "another process of the job has ended" in out
    assert not any(os.path.exists(f"/proc/{pid}") for pid in ranks)


def test_ctrl_c_checkpoints_every_rank_at_one_env_step_and_the_job_resumes(tmp_path):
    run_dir = tmp_path / "run"
    job, ranks = _training_job(run_dir)
    try:
        job.send_signal(signal.SIGINT)
        out, _ = job.communicate(timeout=90)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 130, out[-2000:]
    steps = [int(os.path.basename(_newest_bundle(d))[5:]) for d in (run_dir, run_dir / "workers" / "rank-1")]
    assert steps[0] == steps[1] > 0, steps  # the ranks agreed on the env step at which they stopped
    assert f"worker 0 wrote a checkpoint at {steps[0]:,} env steps" in out, out[-2000:]
    assert not any(os.path.exists(f"/proc/{pid}") for pid in ranks)
    resumed = subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", "launch", "--workers", "2", "--", "train",
                              "--resume", str(run_dir), "--steps", str(2 * steps[0] + 1000), "--quiet"],
                             capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"finished {steps[0] + 500:,} env steps of this worker" in resumed.stdout, resumed.stdout[-2000:]
    zero, one = _params(_newest_bundle(run_dir)), _params(_newest_bundle(run_dir / "workers" / "rank-1"))
    for name in zero:
        np.testing.assert_array_equal(zero[name], one[name], err_msg=name)
