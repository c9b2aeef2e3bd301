import gymnasium as gym
import numpy as np
import pytest

from gluon_pdqn.config import EnvConfig, load_preset
from gluon_pdqn.envs import atari, describe, make_env
from gluon_pdqn.errors import UserError


def wrapper_types(env):
    types = []
    while isinstance(env, gym.Wrapper):
        types.append(type(env))
        env = env.env
    return types


def test_atari_training_and_evaluation_pipelines():
    cfg = EnvConfig(id="ALE/Breakout-v5")
    spec = describe(cfg)
    assert spec.is_atari and spec.obs_shape == (4, 84, 84) and spec.obs_dtype == np.uint8
    assert spec.frame_shape == (84, 84) and spec.frame_stack == 4 and spec.n_actions == 4
    train, evaluation = make_env(cfg), make_env(cfg, evaluation=True)
    assert atari.EpisodicLife in wrapper_types(train) and atari.EpisodicLife not in wrapper_types(evaluation)
    assert gym.wrappers.TransformReward in wrapper_types(train)
    assert gym.wrappers.TransformReward not in wrapper_types(evaluation)
    assert atari.FireReset in wrapper_types(train)  # Breakout waits for FIRE
    assert train.unwrapped._frameskip == 1  # frame skip happens in AtariPreprocessing, with max-pooling
    obs, _ = train.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    rewards = [train.step(train.action_space.sample())[1] for _ in range(200)]
    assert set(rewards) <= {-1.0, 0.0, 1.0}
    train.close(), evaluation.close()


def test_episodic_life_ends_the_training_episode_not_the_game():
    env = make_env(EnvConfig(id="ALE/Breakout-v5"))
    env.reset(seed=1)
    ale = env.unwrapped.ale
    lives = ale.lives()
    terminated = False
    while not terminated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not truncated
    assert ale.lives() == lives - 1 and not ale.game_over()
    env.reset()
    assert ale.lives() == lives - 1  # the game went on
    env.close()


@pytest.mark.parametrize("env_id,fragment", [("NoSuchEnv-v0", "NoSuchEnv"), ("CarRacing-v3", "CarRacing"),
                                             ("Pendulum-v1", "discrete action space")])
def test_unusable_environments_are_refused_with_a_clear_message(env_id, fragment):
    with pytest.raises(UserError, match=fragment):
        describe(EnvConfig(id=env_id))


def test_atari_training_runs_end_to_end_on_the_nature_cnn(tmp_path):
    from gluon_pdqn.run.loop import Training

    cfg = load_preset("atari-modern").replace({
        "env.id": "ALE/Pong-v5", "replay.capacity": 2000, "replay.learning_starts": 150, "replay.batch_size": 8,
        "run.total_env_steps": 300, "run.eval_every": 0, "run.log_every": 100, "run.checkpoint_every": 0,
        "agent.target_update_every": 10})
    training = Training(cfg, str(tmp_path))
    summary = training.run()
    assert summary.counters["learner_steps"] == 300 // 4 - 149 // 4  # one per 4 env steps from step 150
    assert training.replay.frames.shape[2:] == (84, 84) and training.replay.frames.dtype == np.uint8
    batch = training.replay.sample(8)
    assert batch.obs.shape == (8, 4, 84, 84) and batch.next_obs.dtype == np.uint8
    assert np.isfinite(training.learner.q_values(batch.obs)).all()


def test_a_users_hwc_image_reaches_the_agent_channels_first():
    import toy_envs  # noqa: F401  (registers the toy environments)

    spec = describe(EnvConfig(id="PixelChoice-v0"))
    assert spec.obs_shape == (3, 10, 10) and spec.obs_dtype == np.uint8 and spec.frame_shape == (3, 10, 10)
    env = make_env(EnvConfig(id="PixelChoice-v0"))
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped  # the toy env keeps the colour it drew for the last observation
    assert obs.shape == (3, 10, 10) and obs.flags.c_contiguous
    assert obs[raw.colour].max() == 255 and obs[1 - raw.colour].max() == 0  # the colour is on its channel
    env.close()


def test_stacked_images_keep_their_channel_axis():
    import toy_envs  # noqa: F401

    spec = describe(EnvConfig(id="PixelChoice-v0", frame_stack=2))
    assert spec.obs_shape == (2, 3, 10, 10) and spec.frame_shape == (3, 10, 10) and spec.frame_stack == 2


def test_bool_grids_become_uint8_and_float64_vectors_float32():
    import toy_envs  # noqa: F401

    env = make_env(EnvConfig(id="MinAtarLike-v0"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 10, 10) and obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 255}
    raw = env.unwrapped.observation_space.sample()
    np.testing.assert_array_equal(env.observation(raw), raw.transpose(2, 0, 1).astype(np.uint8) * 255)
    vector = make_env(EnvConfig(id="Float64Vector-v0"))
    assert vector.reset(seed=0)[0].dtype == np.float32 and vector.observation_space.dtype == np.float32
    # The run says what it did to them.
    assert describe(EnvConfig(id="Float64Vector-v0")).conversion == "float64 vectors cast to float32"
    assert "bool cells as uint8 0/255" in describe(EnvConfig(id="MinAtarLike-v0")).conversion
    assert describe(EnvConfig(id="CartPole-v1")).conversion == ""


def test_channels_first_images_are_read_from_the_shape_or_the_setting():
    from gluon_pdqn.envs.observations import channels_first

    assert not channels_first((84, 84, 3), "auto") and channels_first((3, 84, 84), "auto")
    assert not channels_first((10, 10, 10), "auto")  # ambiguous: gymnasium's convention, channels last
    assert channels_first((10, 10, 10), "first") and not channels_first((3, 84, 84), "last")


@pytest.mark.parametrize("env_id,fragment", [
    ("TextObs-v0", "Text.*ObservationWrapper"), ("TextInDictObs-v0", "none of its parts are numbers")])
def test_observation_spaces_that_cannot_be_taken_are_refused_in_one_line(env_id, fragment):
    import toy_envs  # noqa: F401

    with pytest.raises(UserError, match=fragment) as refused:
        describe(EnvConfig(id=env_id))
    assert "\n" not in str(refused.value)


def test_random_play_is_not_the_environments_own_random_draws():
    """Exploration's stream and gymnasium's np_random of the same seed differ: random play on a colour-guessing
    environment scores about 0, not the 10 of 20 it scored when both came from SeedSequence(seed)."""
    import toy_envs  # noqa: F401

    from gluon_pdqn.exploration import action_rng

    env = make_env(EnvConfig(id="PixelChoice-v0"))
    returns = []
    for seed in range(10):
        rng = action_rng(seed)
        env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            _, reward, done, _, _ = env.step(int(rng.integers(2)))
            total += reward
        returns.append(total)
    assert abs(np.mean(returns)) < 4, returns  # 200 fair coin flips: the mean of 10 returns has std 1.4
