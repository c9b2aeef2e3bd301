"""The framework's own limit: DQN on Atari and on MinAtar written as a bare MXNet/Gluon script, without gluon_pdqn.

What a competent user writes from MXNet's documentation: the Nature CNN (MinAtar's small CNN) as a HybridSequential, hybridized
with static memory; TD targets computed outside ``autograd.record``; the Huber loss; gluonnlp's global-norm
clip (not waiting for the norm); a Gluon Trainer. Optionally bf16 through AMP's graph conversion, with the
fp32 parameters shared. The benchmarks run it beside gluon_pdqn doing the same work, so that a figure of ours
reads as a ratio to what MXNet itself allows on the machine of the day.
"""
from __future__ import annotations

import os
import time
import warnings

# MXNet gives its kernels half the CPUs unless told otherwise (it assumes two hyperthreads a core); a user who
# read its performance notes sets OMP_NUM_THREADS to the cores for a CNN, as gluon_pdqn's command line does.
# Both run in one process in the benchmarks, so the two sides get the same setting whichever loads MXNet first.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

import gluonnlp  # noqa: E402
import gymnasium as gym  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import autograd, gluon, nd  # noqa: E402

N_ACTIONS = 6  # Pong's minimal action set


def nature_cnn(n_actions: int = N_ACTIONS) -> gluon.HybridSequential:
    """Conv 32x8x8/4, 64x4x4/2, 64x3x3/1, dense 512, dense n_actions, over uint8 frames scaled inside."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.HybridLambda(lambda F, x: F.cast(x, "float32") / 255.0),
            gluon.nn.Conv2D(32, 8, strides=4, activation="relu"), gluon.nn.Conv2D(64, 4, strides=2, activation="relu"),
            gluon.nn.Conv2D(64, 3, strides=1, activation="relu"), gluon.nn.Flatten(),
            gluon.nn.Dense(512, activation="relu"), gluon.nn.Dense(n_actions))
    return net


def small_cnn(n_actions: int) -> gluon.HybridSequential:
    """MinAtar's network (Young & Tian 2019): conv 16x3x3/1, dense 128, dense n_actions, over 0/1 cells."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(16, 3, strides=1, activation="relu"), gluon.nn.Flatten(),
            gluon.nn.Dense(128, activation="relu"), gluon.nn.Dense(n_actions))
    return net


def mlp(n_actions: int, hidden=(128, 128)) -> gluon.HybridSequential:
    """ReLU layers of widths ``hidden``, then a linear layer of n_actions: the cartpole preset's network."""
    net = gluon.nn.HybridSequential()
    for width in hidden:
        net.add(gluon.nn.Dense(width, activation="relu"))
    net.add(gluon.nn.Dense(n_actions))
    return net


def _in_bf16(net: gluon.HybridBlock) -> gluon.HybridBlock:
    from mxnet.contrib import amp

    data = mx.sym.var("data")
    block = gluon.SymbolBlock(amp.convert_symbol(net(data), target_dtype="bfloat16"), data,
                              params=net.collect_params())
    block.hybridize(static_alloc=True, static_shape=True)
    return block


class BareDQN:
    """Online and target networks, one update per call of ``update``, greedy actions from ``act``.

    Args:
        network: the network's factory (``nature_cnn`` or ``small_cnn``), called with ``n_actions``.
        obs_shape, obs_dtype: one observation's.
        n_actions: the actions.
        optimizer: ``adam`` (lr 1e-4) or ``rmsprop`` (centred, lr 2.5e-4, as Nature DQN).
        double_q: double DQN targets.
        max_grad_norm: global-norm clip (0: none).
        bf16: compute the update's forward and backward passes in bf16 (fp32 parameters).
    """

    def __init__(self, optimizer: str = "adam", double_q: bool = True, max_grad_norm: float = 10.0,
                 bf16: bool = False, gamma: float = 0.99, network=nature_cnn, obs_shape=(4, 84, 84),
                 obs_dtype: str = "uint8", n_actions: int = N_ACTIONS, learning_rate: float | None = None):
        self.net, self.target = network(n_actions), network(n_actions)
        self.n_actions = n_actions
        self.updates = 0
        self.obs_dtype = obs_dtype
        dummy = nd.zeros((1,) + tuple(obs_shape), dtype=obs_dtype)
        for block in (self.net, self.target):
            block.initialize(mx.init.Xavier())
            block.hybridize(static_alloc=True, static_shape=True)
            block(dummy)
        self.sync_target()
        self.compute_net = _in_bf16(self.net) if bf16 else self.net
        self.compute_target = _in_bf16(self.target) if bf16 else self.target
        self.params = list(self.net.collect_params().values())
        settings = ({"learning_rate": learning_rate or 1e-4} if optimizer == "adam" else
                    {"learning_rate": learning_rate or 2.5e-4, "gamma1": 0.95, "gamma2": 0.0, "epsilon": 0.01,
                     "centered": True})
        self.trainer = gluon.Trainer(self.net.collect_params(), optimizer, settings, update_on_kvstore=False)
        self.double_q, self.max_grad_norm, self.gamma = double_q, max_grad_norm, gamma

    def learn(self, rng, stored: int, batch_size: int, target_every: int, obs, actions, rewards, next_obs, dones=None,
              discounts=None) -> None:
        """One update from a uniform batch of the first ``stored`` transitions of the replay arrays; the target is
        refreshed every ``target_every`` updates (``self.updates`` counts them)."""
        index = rng.integers(0, stored, batch_size)
        self.update(obs[index], actions[index], rewards[index], next_obs[index],
                    None if dones is None else dones[index], None if discounts is None else discounts[index])
        self.updates += 1
        if self.updates % target_every == 0:
            self.sync_target()

    def sync_target(self) -> None:
        for source, destination in zip(self.net.collect_params().values(), self.target.collect_params().values()):
            destination.set_data(source.data())

    def act(self, obs: np.ndarray) -> int:
        """The greedy action for one observation (for Pong (4, 84, 84) uint8)."""
        return int(self.net(nd.array(obs[None], dtype=self.obs_dtype)).argmax(axis=1).asscalar())

    def update(self, obs, actions, rewards, next_obs, dones, discounts=None) -> None:
        """One update from numpy arrays (observations; actions, rewards, dones per transition; ``discounts``: each
        transition's discount of its bootstrap, for n-step returns, instead of gamma (1 - done))."""
        obs, next_obs = nd.array(obs, dtype=self.obs_dtype), nd.array(next_obs, dtype=self.obs_dtype)
        actions, rewards = nd.array(actions), nd.array(rewards)
        next_q = self.compute_target(next_obs)
        if self.double_q:
            bootstrap = nd.pick(next_q, nd.argmax(self.compute_net(next_obs), axis=1), axis=1)
        else:
            bootstrap = next_q.max(axis=1)
        discounts = nd.array(discounts if discounts is not None else self.gamma * (1.0 - np.asarray(dones, np.float32)))
        targets = rewards + discounts * bootstrap
        with autograd.record():
            q = nd.pick(self.compute_net(obs), actions, axis=1)
            loss = nd.smooth_l1(q - targets, scalar=1.0).mean()
        loss.backward()
        if self.max_grad_norm > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gluonnlp.utils.clip_grad_global_norm(self.params, self.max_grad_norm, check_isfinite=False)
        self.trainer.update(1)


def pong_env(seed: int) -> gym.Env:
    """ALE Pong with the DQN preprocessing (no-op reset, frame skip 4 with max-pooling, 84x84 gray, stack 4)."""
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=False)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
    env = gym.wrappers.FrameStackObservation(env, 4)
    env.reset(seed=seed)
    return env


def pong_loop(agent: BareDQN, env_steps: int, learning_starts: int = 1_000, train_every: int = 4,
              target_every: int = 1_000, batch_size: int = 32, capacity: int = 10_000, epsilon: float = 0.1,
              seed: int = 0) -> dict:
    """DQN's loop on Pong: random acting until ``learning_starts``, then epsilon-greedy through the network
    (epsilon constant), an update every ``train_every`` steps.

    Returns env steps/s and updates/s over the learning phase (after ``learning_starts``).
    """
    env = pong_env(seed)
    rng = np.random.default_rng(seed)
    obs_buffer = np.zeros((capacity, 4, 84, 84), np.uint8)
    next_buffer = np.zeros_like(obs_buffer)
    actions, rewards, dones = (np.zeros(capacity, np.int64), np.zeros(capacity, np.float32),
                               np.zeros(capacity, np.float32))
    obs, _ = env.reset(seed=seed)
    start = None
    for t in range(env_steps):
        if t == learning_starts:
            start, updates_before = time.perf_counter(), agent.updates
        # The network acts only on the steps that do not explore (SB3's DQN and gluon_pdqn do the same).
        if t < learning_starts or rng.random() < epsilon:
            action = int(rng.integers(N_ACTIONS))
        else:
            action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        i = t % capacity
        obs_buffer[i], next_buffer[i] = obs, next_obs
        actions[i], rewards[i], dones[i] = action, np.sign(reward), float(terminated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        if t >= learning_starts and t % train_every == 0:
            agent.learn(rng, min(t + 1, capacity), batch_size, target_every, obs_buffer, actions, rewards, next_buffer,
                        dones)
    mx.nd.waitall()
    seconds = time.perf_counter() - start
    env.close()
    return {"env_steps_per_s": (env_steps - learning_starts) / seconds, "updates_per_s": (agent.updates - updates_before) / seconds}


def minatar_loop(agent: BareDQN, game: str, env_steps: int, learning_starts: int = 5_000,
                 decay_steps: int = 100_000, measure_from: int = 5_000, target_every: int = 1_000,
                 batch_size: int = 32, capacity: int = 100_000, seed: int = 0) -> dict:
    """DQN's loop on a MinAtar game as the paper runs it: MinAtar's own environment (sticky actions), random acting
    until ``learning_starts``, epsilon from 1 to 0.1 over ``decay_steps`` env steps, one update per env step.

    Returns env steps/s and updates/s from ``measure_from`` on.
    """
    from minatar import Environment

    env = Environment(game)  # (seeded by numpy's global generator, as the reference does)
    np.random.seed(seed)
    n_actions = env.num_actions()
    rng = np.random.default_rng(seed)
    shape = env.state_shape()
    obs_buffer = np.zeros((capacity, shape[2], shape[0], shape[1]), np.float32)
    next_buffer = np.zeros_like(obs_buffer)
    actions, rewards, dones = (np.zeros(capacity, np.int64), np.zeros(capacity, np.float32),
                               np.zeros(capacity, np.float32))
    env.reset()
    obs = env.state().transpose(2, 0, 1).astype(np.float32)
    start = None
    for t in range(env_steps):
        if t == measure_from:
            start, updates_before = time.perf_counter(), agent.updates
        epsilon = max(0.1, 1.0 - 0.9 * t / decay_steps)
        if t < learning_starts or rng.random() < epsilon:
            action = int(rng.integers(n_actions))
        else:
            action = agent.act(obs)
        reward, terminated = env.act(action)
        next_obs = env.state().transpose(2, 0, 1).astype(np.float32)
        i = t % capacity
        obs_buffer[i], next_buffer[i] = obs, next_obs
        actions[i], rewards[i], dones[i] = action, reward, float(terminated)
        if terminated:
            env.reset()
            next_obs = env.state().transpose(2, 0, 1).astype(np.float32)
        obs = next_obs
        if t >= learning_starts:
            agent.learn(rng, min(t + 1, capacity), batch_size, target_every, obs_buffer, actions, rewards, next_buffer,
                        dones)
    mx.nd.waitall()
    seconds = time.perf_counter() - start
    return {"env_steps_per_s": (env_steps - measure_from) / seconds,
            "updates_per_s": (agent.updates - updates_before) / seconds}


def cartpole_loop(agent: BareDQN, env_steps: int, learning_starts: int = 1_000, train_every: int = 256,
                  updates_per_train: int = 128, target_every: int = 128, batch_size: int = 64,
                  capacity: int = 50_000, n_step: int = 3, decay_steps: int = 8_000, final_epsilon: float = 0.04,
                  seed: int = 0) -> dict:
    """DQN's loop on CartPole-v1 with the cartpole preset's schedule: random acting until ``learning_starts``,
    epsilon from 1 to ``final_epsilon`` over ``decay_steps``, ``updates_per_train`` updates every ``train_every``
    env steps, ``n_step`` returns formed as transitions arrive.

    Returns env steps/s and updates/s from ``learning_starts`` on.
    """
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    gamma = agent.gamma
    obs_buffer = np.zeros((capacity, 4), np.float32)
    next_buffer = np.zeros_like(obs_buffer)
    actions, rewards, discounts = (np.zeros(capacity, np.int64), np.zeros(capacity, np.float32),
                                   np.zeros(capacity, np.float32))
    stored, pending = 0, []  # pending: the episode's last (obs, action, reward) not yet n steps old
    obs, _ = env.reset(seed=seed)
    start = None
    for t in range(env_steps):
        if t == learning_starts:
            start, updates_before = time.perf_counter(), agent.updates
        epsilon = max(final_epsilon, 1.0 - (1.0 - final_epsilon) * t / decay_steps)
        if t < learning_starts or rng.random() < epsilon:
            action = int(rng.integers(agent.n_actions))
        else:
            action = agent.act(obs.astype(np.float32))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        pending.append((obs, action, float(reward)))
        ended = terminated or truncated
        # Store the n-step transitions that are complete: the oldest pending one, or all of them at an episode's end.
        while pending and (len(pending) == n_step or ended):
            first_obs, first_action, _ = pending[0]
            ret = sum(r * gamma ** k for k, (_, _, r) in enumerate(pending))
            i = stored % capacity
            obs_buffer[i], next_buffer[i], actions[i], rewards[i] = first_obs, next_obs, first_action, ret
            discounts[i] = 0.0 if terminated else gamma ** len(pending)
            stored += 1
            pending.pop(0)
            if not ended:
                break
        obs = env.reset()[0] if ended else next_obs
        if ended:
            pending = []
        if t >= learning_starts and (t + 1) % train_every == 0:
            for _ in range(updates_per_train):
                agent.learn(rng, min(stored, capacity), batch_size, target_every, obs_buffer, actions, rewards,
                            next_buffer, discounts=discounts)
    mx.nd.waitall()
    seconds = time.perf_counter() - start
    env.close()
    return {"env_steps_per_s": (env_steps - learning_starts) / seconds,
            "updates_per_s": (agent.updates - updates_before) / seconds}
