"""Export: the exported graphs (MXNet symbol + params, ONNX) compute what the live network computes."""
import json

import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn import checkpoint
from gluon_pdqn.envs import describe
from gluon_pdqn.learners import SingleLearner

from test_cli import FAST, assert_one_line_error, gluon_pdqn


def observations(spec, count=6):
    rng = np.random.default_rng(0)
    if spec.obs_dtype == np.uint8:
        return rng.integers(0, 256, (count, *spec.obs_shape)).astype(np.uint8)
    return rng.normal(size=(count, *spec.obs_shape)).astype(np.float32)


NOISY_DUELING = ("--set", "network.noisy=true", "--set", "network.dueling=true")


@pytest.mark.parametrize("env_id, algo, extra", [
    ("CartPole-v1", "dqn", ()), ("toy_envs:PixelChoice-v0", "dqn", ()), ("CartPole-v1", "c51", ()),
    ("toy_envs:PixelChoice-v0", "qr-dqn", ()), ("CartPole-v1", "c51", NOISY_DUELING),
    ("toy_envs:PixelChoice-v0", "dqn", NOISY_DUELING)])
def test_exported_graphs_match_the_live_network(tmp_path, env_id, algo, extra):
    """A distributional network exports its expected Q-values; a noisy one its means."""
    run_dir, out = tmp_path / "run", tmp_path / "export"
    trained = gluon_pdqn("train", "--env", env_id, "--algo", algo, "--run-dir", str(run_dir), "--preset", "cartpole",
                         *FAST, *extra)
    assert trained.returncode == 0, trained.stderr
    result = gluon_pdqn("export", str(run_dir), "--out", str(out))  # no evaluation: falls back to the last
    assert result.returncode == 0, result.stderr
    bundle = checkpoint.resolve(str(run_dir))
    cfg = checkpoint.config_of(bundle)
    assert cfg.agent.algo == algo and cfg.network.noisy == bool(extra)  # (--algo sets agent.algo)
    spec = describe(cfg.env)
    live = SingleLearner(cfg, spec, mx.cpu(0))
    live.load(bundle, with_optimizer=False)
    obs = observations(spec)
    with live.without_noise():  # a noisy network by its means: what deployment runs
        expected = live.q_values(obs)
    assert expected.shape == (len(obs), spec.n_actions)

    block = mx.gluon.SymbolBlock.imports(str(out / "qnetwork-symbol.json"), ["data"],
                                         str(out / "qnetwork-0000.params"))
    np.testing.assert_allclose(block(mx.nd.array(obs, dtype=obs.dtype)).asnumpy(), expected, rtol=1e-4, atol=1e-5)

    steps = json.loads((out / "preprocessing.json").read_text())
    assert steps["input_shape"] == ["batch", *spec.obs_shape] and steps["input_dtype"] == str(spec.obs_dtype)
    assert steps["n_actions"] == spec.n_actions and steps["checkpoint"] == bundle

    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is an optional test dependency "
                                                            "(requirements-export.txt)")
    session = onnxruntime.InferenceSession(str(out / "qnetwork.onnx"))
    assert [i.name for i in session.get_inputs()] == ["data"]  # the weights are constants, not inputs
    got = session.run(None, {"data": obs})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def test_export_refuses_what_it_cannot_write(tmp_path):
    run_dir = tmp_path / "run"
    assert gluon_pdqn("train", "--run-dir", str(run_dir), *FAST).returncode == 0
    assert_one_line_error(gluon_pdqn("export", str(run_dir), "--checkpoint", "last", "--out", "/proc/nope/x"),
                          "cannot create --out")
    assert_one_line_error(gluon_pdqn("export", str(tmp_path / "missing"), "--out", str(tmp_path / "x")),
                          "no checkpoint or run directory")
