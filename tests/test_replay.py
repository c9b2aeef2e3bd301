import numpy as np
import pytest

from gluon_pdqn.errors import UserError
from gluon_pdqn.replay import ReplayBuffer, SumTree


def fill(buffer, env, episodes, terminated=True, first_episode=0,
         obs_of=lambda t, e: np.array([t, e], np.float32)):
    """Episodes of the given lengths with reward t+1 at step t; obs encodes (step, episode)."""
    for e, length in enumerate(episodes, start=first_episode):
        buffer.begin_episode(env, obs_of(0, e))
        for t in range(length):
            done = t == length - 1
            buffer.add(env, action=t % 2, reward=float(t + 1), next_obs=obs_of(t + 1, e),
                       terminated=done and terminated, truncated=done and not terminated)


def all_transitions(buffer, n=4000):
    batch = buffer.sample(n)
    return {(int(o[1]), int(o[0])): (r, d, tuple(no)) for o, r, d, no in
            zip(batch.obs, batch.rewards, batch.discounts, batch.next_obs)}


def test_one_step_terminated_does_not_bootstrap_and_truncated_does():
    gamma = 0.9
    for terminated in (True, False):
        buffer = ReplayBuffer(100, 1, (2,), np.float32, n_step=1, gamma=gamma, seed=0)
        fill(buffer, 0, [3, 3], terminated=terminated)
        seen = all_transitions(buffer)
        # Episode 0: steps 0,1,2 with rewards 1,2,3; the last one ends the episode.
        assert seen[(0, 0)] == (1.0, pytest.approx(gamma), (1.0, 0.0))
        reward, discount, next_obs = seen[(0, 2)]
        assert reward == 3.0 and next_obs == (3.0, 0.0)  # the final observation is kept
        assert discount == (0.0 if terminated else pytest.approx(gamma))


def test_n_step_returns_are_cut_at_the_episode_end_by_hand():
    gamma = 0.5
    buffer = ReplayBuffer(100, 1, (2,), np.float32, n_step=3, gamma=gamma, seed=0)
    fill(buffer, 0, [4], terminated=False)  # truncated
    fill(buffer, 0, [4], terminated=True, first_episode=1)
    buffer.begin_episode(0, np.array([0, 9], np.float32))  # an episode in progress, so the last ones are valid
    for _ in range(4):
        buffer.add(0, 0, 0.0, np.array([1, 9], np.float32), False, False)
    seen = all_transitions(buffer)
    # From step 0: 1 + 0.5*2 + 0.25*3 = 2.75, bootstrapped from obs 3 with 0.5**3.
    assert seen[(0, 0)] == (2.75, 0.125, (3.0, 0.0))
    # From step 2 of a truncated episode: 3 + 0.5*4 = 5, bootstrap gamma**2 from the final obs 4.
    assert seen[(0, 2)] == (5.0, 0.25, (4.0, 0.0))
    # Same in the terminated episode: no bootstrap.
    assert seen[(1, 2)] == (5.0, 0.0, (4.0, 1.0))
    assert seen[(1, 3)] == (4.0, 0.0, (4.0, 1.0))


def test_environments_never_mix():
    buffer = ReplayBuffer(200, 2, (2,), np.float32, n_step=3, gamma=0.9, seed=0)
    # Interleave two envs step by step; obs[1] holds 100 * env + episode.
    for env in (0, 1):
        buffer.begin_episode(env, np.array([0, 100 * env], np.float32))
    for t in range(30):
        for env in (0, 1):
            buffer.add(env, 0, 1.0, np.array([t + 1, 100 * env], np.float32), False, False)
    batch = buffer.sample(500)
    assert np.all(batch.obs[:, 1] == batch.next_obs[:, 1])
    assert np.all(batch.next_obs[:, 0] - batch.obs[:, 0] == 3)
    assert set(np.unique(batch.obs[:, 1])) == {0.0, 100.0}


def test_frame_stacks_match_what_the_environment_showed():
    import gymnasium as gym

    import toy_envs  # noqa: F401  (registers the toy environments)

    env = gym.wrappers.FrameStackObservation(gym.make("CountingImage-v0"), 4, padding_type="reset")
    buffer = ReplayBuffer(60, 1, (6, 6), np.uint8, frame_stack=4, n_step=1, seed=0)
    shown = {}
    obs, _ = env.reset(seed=0)
    buffer.begin_episode(0, obs)
    for _ in range(40):  # several episodes of 7 steps, wrapping the 60-slot ring
        next_obs, reward, terminated, truncated, _ = env.step(0)
        buffer.add(0, 0, reward, next_obs, terminated, truncated)
        shown[obs.tobytes()] = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
            buffer.begin_episode(0, obs)
        else:
            obs = next_obs
    batch = buffer.sample(300)
    for o, no in zip(batch.obs, batch.next_obs):
        assert o.tobytes() in shown, "a sampled stack the environment never showed"
        np.testing.assert_array_equal(shown[o.tobytes()], no)


def test_state_dict_round_trip_continues_identically():
    a = ReplayBuffer(50, 1, (2,), np.float32, n_step=2, seed=3, prioritized=True)
    fill(a, 0, [5, 7, 9])
    arrays, scalars = a.state_dict()
    b = ReplayBuffer(50, 1, (2,), np.float32, n_step=2, seed=99, prioritized=True)
    b.load_state_dict({k: v.copy() for k, v in arrays.items()}, scalars)
    for _ in range(3):
        x, y = a.sample(8, beta=0.5), b.sample(8, beta=0.5)
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.obs, y.obs)
        a.update_priorities(x.indices, np.arange(8.0))
        b.update_priorities(y.indices, np.arange(8.0))


def test_prioritized_sampling_follows_priorities():
    buffer = ReplayBuffer(100, 1, (2,), np.float32, seed=0, prioritized=True, alpha=1.0, priority_epsilon=0.0)
    fill(buffer, 0, [40])
    batch = buffer.sample(32)
    everything = np.unique(buffer.sample(2000).indices)
    # Give one transition 30x the priority of the others.
    priorities = np.ones(everything.size)
    priorities[0] = 30.0
    buffer.update_priorities(everything, priorities)
    counts = np.bincount(buffer.sample(4000, beta=1.0).indices, minlength=100)
    share = counts[everything[0]] / counts.sum()
    expected = 30.0 / (30.0 + everything.size - 1)
    assert abs(share - expected) < 0.05
    weights = buffer.sample(64, beta=1.0)
    heavy = weights.indices == everything[0]
    assert heavy.any()  # drawn about 40% of the time, so surely in a batch of 64
    assert weights.weights[heavy].max() < weights.weights[~heavy].min()  # and given the smallest weight
    assert batch.weights.max() == 1.0


def test_sum_tree_finds_the_interval_containing_each_target():
    rng = np.random.default_rng(0)
    tree = SumTree(37)
    values = rng.random(37)
    tree.set(np.arange(37), values)
    assert tree.total == pytest.approx(values.sum())
    targets = rng.random(500) * values.sum()
    expected = np.searchsorted(np.cumsum(values), targets, side="right")
    np.testing.assert_array_equal(tree.find(targets), expected)


@pytest.mark.parametrize("capacity", [1, 37, 1024])
def test_sum_tree_set_one_keeps_the_tree_bitwise_equal_to_set(capacity):
    rng = np.random.default_rng(1)
    batched, single = SumTree(capacity), SumTree(capacity)
    for index, priority in zip(rng.integers(0, capacity, 3 * capacity), rng.random(3 * capacity) ** 0.6):
        batched.set(np.array([index]), np.array([priority]))
        single.set_one(int(index), float(priority))
    np.testing.assert_array_equal(single._nodes, batched._nodes)
    assert single.total == batched.total


def test_memory_is_checked_before_allocating():
    with pytest.raises(UserError, match="lower replay.capacity"):
        ReplayBuffer(10**9, 1, (84, 84), np.uint8, frame_stack=4)
    need = ReplayBuffer.bytes_needed(1_000_000, (84, 84), np.uint8, prioritized=False)
    assert 7.0e9 < need < 7.1e9  # about 7 GB for a million Atari transitions


def test_prioritized_sampling_skips_slots_whose_n_step_window_is_open():
    buffer = ReplayBuffer(100, 1, (2,), np.float32, n_step=3, seed=0, prioritized=True, alpha=1.0)
    buffer.begin_episode(0, np.array([0, 0], np.float32))
    for t in range(30):  # one long episode still in progress
        buffer.add(0, 0, 1.0, np.array([t + 1, 0], np.float32), False, False)
    complete = np.unique(buffer.sample(500).indices)
    buffer.update_priorities(complete, np.full(complete.size, 1e-4))
    buffer.max_priority = 1e6  # what the next transitions get once complete
    for t in range(31, 33):  # two more steps: their windows stay open, so they must not take the mass
        buffer.add(0, 0, 1.0, np.array([t, 0], np.float32), False, False)
    batch = buffer.sample(64)
    assert np.all(batch.next_obs[:, 0] - batch.obs[:, 0] == 3)  # only complete 3-step transitions
    # The two slots whose windows closed during those steps (28 and 29) took max priority and dominate.
    assert np.isin(batch.obs[:, 0], [28, 29]).mean() > 0.95
