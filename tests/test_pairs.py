"""Every pair of collector and learner placement the builder accepts trains, checkpoints and resumes.

The pairs are listed from the config's own definitions (``COLLECTORS`` x ``PLACEMENTS`` less ``REFUSED_PAIRS``),
so a collector or placement added there is trained here without a new test; the refused pairs' one-line
reasons are checked in test_apex.py.
"""
import subprocess
import sys

import pytest

from gluon_pdqn import checkpoint
from gluon_pdqn.config import COLLECTORS, JOB_PLACEMENTS, PLACEMENTS, REFUSED_PAIRS, load_preset, mode_pair
from gluon_pdqn.errors import UserError
from gluon_pdqn.run.loop import Training

ACCEPTED = [(c, p) for c in COLLECTORS for p in PLACEMENTS if (c, p) not in REFUSED_PAIRS]
ONE_DEVICE = {"single", "ps", "rollout"}
STEPS = 400


def _settings(collector: str, placement: str) -> tuple[str, dict]:
    """A preset and settings that train the pair for a few hundred CartPole steps."""
    preset = "async" if collector == "async" else "cartpole"
    settings = {"run.collector": collector, "run.learner": placement, "run.total_env_steps": STEPS,
                "run.ctx": "cpu:0" if placement in ONE_DEVICE else "cpu:0,cpu:1", "run.eval_every": 0,
                "run.log_every": 100, "run.checkpoint_every": 0, "network.hidden": "16,16"}
    if collector != "async":
        settings.update({"replay.learning_starts": 100, "agent.train_every": 4, "agent.updates_per_train": 1,
                         "agent.target_update_every": 25})
    if collector != "vector":
        settings["actors.count"] = 2
    return preset, settings


def test_every_pair_is_accepted_or_refused():
    assert len(ACCEPTED) + len(REFUSED_PAIRS) == len(COLLECTORS) * len(PLACEMENTS)
    assert ("vector", "single") in ACCEPTED and ("apex", "data") in ACCEPTED and ("async", "rollout") in ACCEPTED


@pytest.mark.parametrize("collector,placement", [pytest.param(*p, id="-".join(p)) for p in ACCEPTED
                                                 if p[1] not in JOB_PLACEMENTS])
def test_an_accepted_pair_trains_checkpoints_and_resumes(tmp_path, collector, placement):
    """Every pair that is not a job trains in this process. (The ps pairs train in a launched job below; the
    horovod pair, the vector env with a Horovod rank's learner, in tests/test_horovod.py, where Horovod is.)"""
    preset, settings = _settings(collector, placement)
    cfg = load_preset(preset).replace(settings)
    (tmp_path / "run").mkdir()
    run_dir = str(tmp_path / "run")
    first = Training(cfg, run_dir).run(stop_at=STEPS // 2)
    assert first.counters["env_steps"] >= STEPS // 2 and first.counters["learner_steps"] > 0
    bundle = checkpoint.resolve(run_dir)
    assert checkpoint.read_state(bundle)["counters"]["env_steps"] == first.counters["env_steps"]
    # Actor processes run ahead of the loop's stop: the resumed run goes on for a fixed number of steps more.
    more = cfg.replace({"run.total_env_steps": first.counters["env_steps"] + STEPS // 2})
    resumed = Training(more, run_dir, resume_bundle=bundle).run()
    assert resumed.counters["env_steps"] >= first.counters["env_steps"] + STEPS // 2
    assert resumed.counters["learner_steps"] > first.counters["learner_steps"]


@pytest.mark.parametrize("collector,placement", [pytest.param(*p, id="-".join(p)) for p in ACCEPTED
                                                 if p[1] == mode_pair("dist").placement])
def test_a_parameter_server_pair_trains_checkpoints_and_resumes_in_a_job(tmp_path, collector, placement):
    """Each worker of a launched job is the pair: its collector (the vector env, or apex actor processes of
    its own) and the ps learner."""
    _, settings = _settings(collector, placement)
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    (tmp_path / "run").mkdir()
    run_dir = str(tmp_path / "run")

    def launch(*args):
        return subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", "launch", "--workers", "1", "--servers", "1",
                               "--", "train", "--quiet", *args], capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)

    first = launch("--mode", "dist", "--run-dir", run_dir, *sets, "--steps", str(STEPS // 2))
    assert first.returncode == 0, first.stderr
    state = checkpoint.read_state(checkpoint.resolve(run_dir))
    assert state["counters"]["env_steps"] >= STEPS // 2 and state["counters"]["learner_steps"] > 0
    # With --mode dist given again and no --kvstore, the pair's default kvstore of the run is kept.
    resumed = launch("--mode", "dist", "--resume", run_dir,
                     "--steps", str(state["counters"]["env_steps"] + STEPS // 2))
    assert resumed.returncode == 0, resumed.stderr
    after = checkpoint.read_state(checkpoint.resolve(run_dir))
    assert after["counters"]["env_steps"] >= state["counters"]["env_steps"] + STEPS // 2 and after["counters"]["learner_steps"] > state["counters"]["learner_steps"]


@pytest.mark.parametrize("collector,placement", [pytest.param(*p, id="-".join(p)) for p in REFUSED_PAIRS])
def test_a_refused_pair_is_one_line_with_its_reason(collector, placement):
    with pytest.raises(UserError) as refused:
        load_preset("cartpole").replace({"run.collector": collector, "run.learner": placement})
    message = str(refused.value)
    assert "\n" not in message and REFUSED_PAIRS[(collector, placement)] in message
    assert f"{collector} collector, {placement} learner" in message
