"""The environments users bring: Discrete, MultiDiscrete, MultiBinary, Dict and Tuple observations, packages
that register ids, and wrappers by name."""
import json

import gymnasium as gym
import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn import checkpoint
from gluon_pdqn.build import default_preset
from gluon_pdqn.config import EnvConfig, load_preset
from gluon_pdqn.envs import describe, make_env
from gluon_pdqn.envs.observations import PackedObservation
from gluon_pdqn.errors import UserError
from gluon_pdqn.networks import EncodedQNetwork
from gluon_pdqn.run.loop import Training

from test_cli import FAST, assert_one_line_error, gluon_pdqn
from toy_envs import SpaceEnv


def packed(space, keys=()):
    return PackedObservation(SpaceEnv(space), keys=keys)


@pytest.mark.parametrize("space, value, dtype, expected", [
    (gym.spaces.Discrete(5, start=2), 4, np.uint8, [2]),
    (gym.spaces.MultiDiscrete([3, 4]), np.array([2, 3]), np.uint8, [2, 3]),
    (gym.spaces.MultiBinary(3), np.array([1, 0, 1], np.int8), np.uint8, [1, 0, 1]),
    (gym.spaces.Discrete(300), 299, np.float32, [299]),
    (gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.MultiBinary(2))), (2, np.array([0, 1], np.int8)), np.uint8,
     [2, 0, 1]),
    (gym.spaces.Dict({"b": gym.spaces.Box(-1, 1, (2,), np.float32), "a": gym.spaces.Discrete(2)}),
     {"a": 1, "b": np.array([0.5, -0.25], np.float32)}, np.float32, [1, 0.5, -0.25]),
])
def test_observations_are_packed_as_indices_and_values(space, value, dtype, expected):
    env = packed(space)
    assert env.observation_space.dtype == dtype and env.observation_space.shape == (len(expected),)
    np.testing.assert_array_equal(env.observation(value), np.array(expected, dtype))


def test_a_dict_with_an_image_keeps_bytes_channels_first_and_drops_text():
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (4, 5, 3), np.uint8), "direction": gym.spaces.Discrete(4),
                             "mission": gym.spaces.Text(10)})
    env = packed(space)
    assert env.dropped == ("mission",) and "left out: mission" in env.conversion
    direction, image = env.parts  # (gymnasium sorts a Dict's keys)
    assert (direction.kind, direction.sizes, image.kind, image.shape) == ("onehot", (4,), "image", (3, 4, 5))
    pixels = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
    out = env.observation({"image": pixels, "direction": 3, "mission": "go"})
    assert out.dtype == np.uint8 and out[0] == 3
    np.testing.assert_array_equal(out[1:].reshape(3, 4, 5), pixels.transpose(2, 0, 1))


def test_observation_keys_choose_and_name_what_is_missing():
    space = gym.spaces.Dict({"a": gym.spaces.Discrete(2), "b": gym.spaces.Discrete(3)})
    assert [p.key for p in packed(space, keys=("b",)).parts] == ["b"]
    with pytest.raises(UserError, match="names c, which"):
        packed(space, keys=("c",))


def test_the_encoder_one_hot_encodes_indices_inside_the_network_hybridized_or_not():
    spec = describe(EnvConfig(id="toy_envs:DictChoice-v0"))
    assert spec.obs_dtype == np.uint8 and [p.kind for p in spec.parts] == ["onehot", "image"]
    network = EncodedQNetwork(spec.parts, spec.n_actions, hidden=(8,), prefix="q_")
    network.initialize(mx.init.Xavier())
    obs = np.random.default_rng(0).integers(0, 2, (5, *spec.obs_shape)).astype(np.uint8)
    encoded = network.encoder(mx.nd.array(obs, dtype=np.uint8)).asnumpy()
    np.testing.assert_array_equal(encoded[:, :2], np.eye(2)[obs[:, 0]])  # the direction, one-hot
    eager = network(mx.nd.array(obs, dtype=np.uint8)).asnumpy()
    network.hybridize()
    np.testing.assert_allclose(network(mx.nd.array(obs, dtype=np.uint8)).asnumpy(), eager, rtol=1e-5, atol=1e-6)


def test_a_packed_observation_refuses_a_frame_stack_and_a_network_that_cannot_read_it():
    with pytest.raises(UserError, match="frame_stack"):
        make_env(EnvConfig(id="FrozenLake-v1", frame_stack=2))
    with pytest.raises(UserError, match="network.name=mlp cannot read"):
        from gluon_pdqn import networks

        cfg = load_preset("cartpole").replace({"network.name": "mlp"})
        networks.build(cfg.network, describe(EnvConfig(id="FrozenLake-v1")), prefix="q_")


@pytest.mark.slow  # (moved out of the default suite to keep it within 13 minutes)
def test_frozen_lake_learns_with_default_settings(tmp_path):
    """Discrete observations (the 16 cells) one-hot inside the network, the frozenlake preset picked by the id:
    the slippery lake's greedy success rate over 200 fresh episodes (random play about 0.015, the best policy
    about 0.8)."""
    run_dir = tmp_path / "run"
    trained = gluon_pdqn("train", "--env", "FrozenLake-v1", "--steps", "10000", "--run-dir", str(run_dir))
    assert "preset frozenlake" in trained.stdout
    assert trained.returncode == 0, trained.stderr
    evaluated = gluon_pdqn("evaluate", str(run_dir), "--episodes", "200", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert np.mean(json.loads(evaluated.stdout)["returns"]) >= 0.6


def test_a_users_dict_environment_trains_resumes_evaluates_and_exports(tmp_path):
    """Image + direction + text mission: the reward needs both the pixels and the direction (either alone
    scores about 0, both 20); the text is left out with a note."""
    run_dir = tmp_path / "run"
    trained = gluon_pdqn("train", "--env", "toy_envs:DictChoice-v0", "--steps", "3000", "--run-dir", str(run_dir))
    assert trained.returncode == 0, trained.stderr
    assert "left out: mission" in trained.stdout + trained.stderr and "network encoded" in trained.stdout + trained.stderr
    assert json.loads((run_dir / "summary.json").read_text())["best_eval_mean"] >= 15
    resumed = gluon_pdqn("train", "--resume", str(run_dir), "--steps", "3500", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.read_state(checkpoint.resolve(str(run_dir)))["counters"]["env_steps"] >= 3500
    evaluated = gluon_pdqn("evaluate", str(run_dir), "--episodes", "5", "--json")
    assert evaluated.returncode == 0 and np.mean(json.loads(evaluated.stdout)["returns"]) >= 15, evaluated.stderr


MODES = {"single": {}, "data": {"run.ctx": "cpu:0,cpu:1"}, "model": {"run.ctx": "cpu:0,cpu:1"},
         "ensemble": {"run.ctx": "cpu:0,cpu:1"}, "apex": {"actors.count": 2}, "async": {"actors.count": 2}}


@pytest.mark.parametrize("mode", MODES)
def test_a_dict_environment_learns_in_every_mode(tmp_path, mode):
    """The image and the direction read together (either alone scores about 0) by every learner placement
    and collector (the parameter-server job is the test below)."""
    cfg = load_preset(default_preset(mode, None, "toy_envs:DictChoice-v0")).replace({
        "env.id": "toy_envs:DictChoice-v0", "run.mode": mode, "run.total_env_steps": 4000, "run.stop_return": 18,
        "run.eval_every": 1000, **MODES[mode]})
    summary = Training(cfg, str(tmp_path)).run()
    assert summary.best_eval_mean >= 12, summary


def test_a_dict_environment_learns_in_a_parameter_server_job(tmp_path):
    """Its image part makes it the first CNN in a test of mode dist: a convolution's weights, held in oneDNN's
    layout after a forward pass, killed the server ("init 0 first") until the first push sent default-layout
    copies."""
    run_dir = tmp_path / "run"
    result = gluon_pdqn("launch", "--workers", "2", "--servers", "1", "--", "train", "--mode", "dist", "--env",
                        "toy_envs:DictChoice-v0", "--steps", "6000", "--quiet", "--run-dir", str(run_dir),
                        "--set", "run.stop_return=18", timeout=400)
    assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "summary.json").read_text())["best_eval_mean"] >= 12


def test_a_bare_id_of_a_package_named_in_env_packages_and_the_error_that_says_how(tmp_path):
    result = gluon_pdqn("train", "--env", "Counting-v0", "--set", "env.packages=toy_envs", "--run-dir",
                        str(tmp_path / "run"), *FAST)
    assert result.returncode == 0, result.stderr
    assert_one_line_error(gluon_pdqn("train", "--env", "Counting-v0", "--run-dir", str(tmp_path / "other"), *FAST),
                          "env.packages=PACKAGE")


def test_wrappers_by_name_are_applied_in_every_actor_process(tmp_path):
    """CartPole's rewards are +1 a step; an actor process that applied the wrapper reports negative returns."""
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--mode", "apex", "--actors", "2", "--run-dir", str(run_dir), *FAST,
                        "--set", "env.wrappers=toy_envs.ScaleReward(factor=-1.0)")
    assert result.returncode == 0, result.stderr
    returns = [float(row.split(",")[header.index("return")]) for header in
               [(run_dir / "episodes.csv").read_text().splitlines()[0].split(",")]
               for row in (run_dir / "episodes.csv").read_text().splitlines()[1:]]
    assert returns and max(returns) < 0
    assert checkpoint.config_of(checkpoint.resolve(str(run_dir))).env.wrappers == ("toy_envs.ScaleReward(factor=-1.0)",)


@pytest.mark.parametrize("wrapper, fragment", [("toy_envs.NoSuchWrapper", "cannot import toy_envs.NoSuchWrapper"),
                                               ("toy_envs.ScaleReward(1, 2)", "literal values")])
def test_a_wrapper_that_cannot_be_applied_is_one_line(tmp_path, wrapper, fragment):
    assert_one_line_error(gluon_pdqn("train", "--run-dir", str(tmp_path / "run"), *FAST, "--set",
                                     f"env.wrappers={wrapper}"), fragment)


@pytest.mark.slow  # (moved out of the default suite to keep it within 13 minutes)
def test_minigrid_by_its_bare_id_learns(tmp_path):
    """MiniGrid-Empty-5x5-v0 with minigrid installed (no prefix, no wrapper): its Dict observation's image and
    direction, its text mission left out."""
    pytest.importorskip("minigrid", reason="minigrid is a test dependency (requirements-test.txt)")
    run_dir = tmp_path / "run"
    trained = gluon_pdqn("train", "--env", "MiniGrid-Empty-5x5-v0", "--steps", "12000", "--quiet",
                         "--run-dir", str(run_dir), "--set", "run.stop_return=0.9")
    assert trained.returncode == 0, trained.stderr
    evaluated = gluon_pdqn("evaluate", str(run_dir), "--episodes", "20", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert np.mean(json.loads(evaluated.stdout)["returns"]) >= 0.9


def test_a_minigrid_episode_is_recorded_as_a_video_without_warnings(tmp_path):
    """evaluate --video plays a Dict environment (MiniGrid's image, direction and mission) frame by frame."""
    run_dir, video = tmp_path / "run", tmp_path / "episode.gif"
    trained = gluon_pdqn("train", "--env", "MiniGrid-Empty-5x5-v0", "--steps", "300", "--quiet", "--run-dir",
                         str(run_dir), "--set", "replay.learning_starts=100", "--set", "run.eval_every=0")
    assert trained.returncode == 0, trained.stderr
    # Random actions (epsilon 1) move the agent, so the frames differ (the GIF writer merges equal ones).
    evaluated = gluon_pdqn("evaluate", str(run_dir), "--episodes", "1", "--epsilon", "1.0", "--video", str(video))
    assert evaluated.returncode == 0, evaluated.stderr
    for result in (trained, evaluated):
        assert "Overriding environment" not in result.stderr  # minigrid's ids were registered once
    from PIL import Image

    with Image.open(video) as gif:
        assert gif.size == (160, 160) and gif.n_frames > 5, (gif.size, gif.n_frames)


@pytest.mark.parametrize("env_id", ["toy_envs:DictChoice-v0", "toy_envs:MixedSpaces-v0"])
def test_an_exported_network_takes_each_part_by_name_as_the_environment_gives_it(tmp_path, env_id):
    """The exported graphs (MXNet, ONNX) take one named input per part, unpacked (an image channels last, a
    Discrete's index), and compute what the live learner computes on the packed observations."""
    from gluon_pdqn.learners import SingleLearner

    run_dir, out = tmp_path / "run", tmp_path / "export"
    assert gluon_pdqn("train", "--env", env_id, "--run-dir", str(run_dir), *FAST).returncode == 0
    result = gluon_pdqn("export", str(run_dir), "--out", str(out), "--format", "both")
    assert result.returncode == 0, result.stderr
    bundle = checkpoint.resolve(str(run_dir))
    cfg = checkpoint.config_of(bundle)
    spec = describe(cfg.env)
    live = SingleLearner(cfg, spec, mx.cpu(0))
    live.load(bundle, with_optimizer=False)

    env = make_env(cfg.env)
    raw = [env.unwrapped.observation_space.sample() for _ in range(6)]
    expected = live.q_values(np.stack([env.observation(o) for o in raw]))
    steps = json.loads((out / "preprocessing.json").read_text())
    names = [i["name"] for i in steps["inputs"]]
    assert names == [p.key for p in spec.parts]

    inputs = {i["name"]: np.stack([_leaf(o, i["name"]) for o in raw]).astype(i["dtype"]) for i in steps["inputs"]}
    block = mx.gluon.SymbolBlock.imports(str(out / "qnetwork-symbol.json"), names, str(out / "qnetwork-0000.params"))
    got = block(*[mx.nd.array(inputs[n], dtype=inputs[n].dtype) for n in names]).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is an optional test dependency")
    session = onnxruntime.InferenceSession(str(out / "qnetwork.onnx"))
    assert [i.name for i in session.get_inputs()] == names
    np.testing.assert_allclose(session.run(None, inputs)[0], expected, rtol=1e-4, atol=1e-5)


def _leaf(observation, key):
    for name in key.split("."):
        observation = observation[name] if isinstance(observation, dict) else observation[int(name)]
    return np.asarray(observation)
