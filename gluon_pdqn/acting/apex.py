"""Apex actors (Horgan et al. 2018): actor processes feeding one shared prioritized replay that any learner samples.

Each actor is a spawned process with its own vector env (``env.num_envs`` environments) and its own epsilon
(the Ape-X ladder), acting with a local copy of the learner's online network: numpy for MLPs, MXNet (one
thread) for CNNs. It forms the n-step transitions of its steps itself, computes their initial priorities
``|G_t^(n) + gamma^n max_a Q(s_{t+n}, a) - Q(s_t, a_t)|`` with that copy, and hands its experience in every
``actors.send_every`` env steps. The learner's process stores it in the run's replay (one stream per actor
env, the actor's priorities as initial priorities; under a distributional algorithm, whose priorities are the
learner's loss, on another scale than a TD error, the replay's largest priority instead), runs the updates
that experience makes due, as every replay mode does, and updates the priorities of what it sampled.

Parameters travel through shared memory, not pipes: the learner publishes its online parameters every
``actors.sync_every`` env steps (all actors together) under a sequence lock, and each actor copies them every
``actors.sync_every`` of its own steps. So the learner never blocks on an actor, and the pipes carry one way
only (actor -> learner), which cannot deadlock:

    actor -> learner   ("experience", dict of arrays)   steps and episode starts, in order, per env
    actor -> learner   ("error", text, environment_fault, traceback)   the actor failed and has ended

The shared block's header also carries the run's env steps (for the actors' epsilon schedules), the stop
flag the learner raises when the run ends, and per actor the steps the learner has stored: an actor runs at
most ``2 * actors.send_every`` steps ahead of it. Without that bound, an actor of a learner-bound run (CartPole
at 32 samples per transition) ran up to a pipe's buffer ahead, and the policies that acted were 880 updates old
with 2 actors and 1,740 with 4 (against 83 with 1).
"""
from __future__ import annotations

import time
from multiprocessing import shared_memory

import numpy as np

from .. import envs
from .. import metrics
from ..config import Config
from ..distributional import ReturnModel
from ..envs import EnvSpec
from ..errors import EnvironmentFault
from ..exploration import EpsilonSchedule, action_rng, epsilon_greedy
from .adder import ReplayAdder
from .checks import check_step, environment_call
from .pool import POLL_SECONDS, ActorPool, total_mib
from .protocol import Collected, Episode

BEGIN, STEP = 0, 1  # kinds of experience events


class SharedParameters:
    """A flat float32 copy of the learner's online parameters in shared memory, behind a sequence lock.

    Header (int64): sequence (odd while a copy is being written), the learner steps of the parameters, the
    run's env steps, the stop flag, then per actor the steps the learner has taken in from it.
    """

    _FIXED = 4

    def __init__(self, size: int, actors: int, name: str | None = None):
        header = self._FIXED + actors
        nbytes = 8 * header + 4 * max(size, 1)
        self._memory = shared_memory.SharedMemory(name=name, create=name is None, size=nbytes)
        self.name = self._memory.name
        self.owner = name is None
        self._header = np.ndarray((header,), dtype=np.int64, buffer=self._memory.buf)
        self._values = np.ndarray((size,), dtype=np.float32, buffer=self._memory.buf, offset=8 * header)
        if self.owner:
            self._header[:] = 0
        self._seen = -1

    def publish(self, flat: np.ndarray, learner_steps: int) -> None:
        self._header[0] += 1
        self._values[...] = flat
        self._header[1] = learner_steps
        self._header[0] += 1

    def read_new(self, out: np.ndarray) -> int | None:
        """Copy parameters newer than the last read into ``out``; their learner steps, or None if none are newer."""
        while True:
            sequence = int(self._header[0])
            if sequence == self._seen or sequence == 0:
                return None
            if sequence % 2:
                time.sleep(0.0005)  # a copy is being written
                continue
            out[...] = self._values
            steps = int(self._header[1])
            if int(self._header[0]) == sequence:
                self._seen = sequence
                return steps

    @property
    def env_steps(self) -> int:
        return int(self._header[2])

    @env_steps.setter
    def env_steps(self, value: int) -> None:
        self._header[2] = value

    @property
    def stopping(self) -> bool:
        return bool(self._header[3])

    def stop(self) -> None:
        self._header[3] = 1

    def taken_in(self, actor: int) -> int:
        """Steps of ``actor`` the learner has stored so far."""
        return int(self._header[self._FIXED + actor])

    def add_taken_in(self, actor: int, steps: int) -> None:
        self._header[self._FIXED + actor] += steps

    def close(self) -> None:
        # The views must go before the mapping can close.
        del self._header, self._values
        self._memory.close()
        if self.owner:
            self._memory.unlink()


class _LocalPolicy:
    """An actor's copy of the online network: numpy for an MLP, an MXNet block on the CPU otherwise.

    A noisy network (``network.noisy``) acts with noise of its own, drawn afresh for every call.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, layout: list[tuple[str, tuple]], seed: int):
        import mxnet as mx

        from .. import networks

        self._mx = mx
        self.return_model = ReturnModel.of(cfg.agent)  # Q-values, or a return distribution to take the mean of
        self.n_actions = spec.n_actions
        self.block = networks.build(cfg.network, spec, prefix="actor_", per_action=self.return_model.per_action)
        self.block.initialize(ctx=mx.cpu())
        self.block(mx.nd.zeros((1,) + spec.obs_shape, dtype=spec.obs_dtype))
        self._params = networks.structural_params(self.block)
        self._layout = layout
        self._numpy = networks.numpy_copy(self.block)
        if self._numpy is None and cfg.run.hybridize:
            self.block.hybridize(static_alloc=True)
        names = {id(p): name for name, p in self._params.items()}
        self._numpy_order = [names[id(p)] for p in self._numpy.parameters()] if self._numpy else []
        self._noise_rng = np.random.default_rng(seed + 17) if cfg.network.noisy else None
        self._networks = networks

    def load(self, flat: np.ndarray) -> None:
        views, offset = {}, 0
        for name, shape in self._layout:
            size = int(np.prod(shape))
            views[name] = flat[offset:offset + size].reshape(shape)
            offset += size
        if self._numpy is not None:
            self._numpy.load(np.concatenate([views[name].ravel() for name in self._numpy_order]))
            return
        for name, param in self._params.items():
            param.set_data(self._mx.nd.array(views[name]))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Q-values (batch, n_actions): what the actor acts on and computes its priorities with."""
        if self._numpy is not None:
            if self._noise_rng is not None:
                self._numpy.resample(self._noise_rng)
            outputs = self._numpy(obs)
        else:
            if self._noise_rng is not None:
                self._networks.resample_noise(self.block, self._noise_rng)
            outputs = self.block(self._mx.nd.array(obs, dtype=obs.dtype)).asnumpy()
        return self.return_model.expected_q(outputs, self.n_actions)


class _Outbox:
    """An actor's experience since its last hand-in, as the events the learner applies in order."""

    def __init__(self):
        self.kinds, self.envs, self.actions, self.rewards, self.frames = [], [], [], [], []
        self.terminated, self.truncated, self.priorities, self.episodes = [], [], [], []

    def begin(self, env: int, frame: np.ndarray) -> None:
        self._event(BEGIN, env, 0, 0.0, frame, False, False, 0.0)

    def step(self, env: int, action: int, reward: float, frame: np.ndarray, terminated: bool, truncated: bool,
             priority: float) -> None:
        self._event(STEP, env, action, reward, frame, terminated, truncated, priority)

    def _event(self, kind, env, action, reward, frame, terminated, truncated, priority) -> None:
        self.kinds.append(kind)
        self.envs.append(env)
        self.actions.append(action)
        self.rewards.append(reward)
        self.frames.append(frame)
        self.terminated.append(terminated)
        self.truncated.append(truncated)
        self.priorities.append(priority)

    def pack(self, **extra) -> dict:
        return {"kinds": np.array(self.kinds, np.uint8), "envs": np.array(self.envs, np.int32),
                "actions": np.array(self.actions, np.int32), "rewards": np.array(self.rewards, np.float32),
                "frames": np.stack(self.frames) if self.frames else None,
                "terminated": np.array(self.terminated, bool), "truncated": np.array(self.truncated, bool),
                "priorities": np.array(self.priorities, np.float32), "episodes": self.episodes, **extra}


def _act(index: int, conn, cfg: Config, spec: EnvSpec, seed: int, schedule: EpsilonSchedule, shared_name: str,
         layout: list[tuple[str, tuple]]) -> None:
    """The actor's loop: act, close n-step windows as their bootstrap values arrive, hand in, until stopped."""
    size = sum(int(np.prod(shape)) for _, shape in layout)
    shared = SharedParameters(size, cfg.actors.count, name=shared_name)
    policy = _LocalPolicy(cfg, spec, layout, seed)
    flat = np.empty(size, np.float32)
    policy_steps = shared.read_new(flat)
    while policy_steps is None:  # the learner publishes before it starts the actors; this is a safeguard
        time.sleep(0.01)
        policy_steps = shared.read_new(flat)
    policy.load(flat)
    num_envs, n_step, gamma = cfg.env.num_envs, cfg.replay.n_step, cfg.agent.gamma
    discounts = gamma ** np.arange(n_step + 1)
    frame_of = (lambda o: o[-1]) if spec.frame_stack > 1 else (lambda o: o)
    vector_env = envs.make_vector_env(cfg.env, num_envs)
    rng = action_rng(seed)
    try:
        obs, _ = environment_call(cfg.env.id, "the first reset", vector_env.reset, seed=seed)
        outbox = _Outbox()
        for i in range(num_envs):
            outbox.begin(i, frame_of(obs[i]))
        pending: list[list[tuple]] = [[] for _ in range(num_envs)]  # steps whose n-step window is open
        ended: list[tuple | None] = [None] * num_envs  # per env: (terminated, return, length) of an episode that
        # just ended, whose last steps are handed in with the next observation's values
        resetting = np.zeros(num_envs, dtype=bool)
        returns, lengths = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
        actor_steps, since_sync, since_send, handed_in = 0, 0, 0, 0
        # An actor runs at most this many steps ahead of what the learner has stored: its experience stays
        # fresh (its policy lag bounded) when the learner is the slower side, as it is at a high replay ratio.
        ahead = 2 * cfg.actors.send_every
        while not shared.stopping:
            if since_sync >= cfg.actors.sync_every:
                since_sync = 0
                newer = shared.read_new(flat)
                if newer is not None:
                    policy.load(flat)
                    policy_steps = newer
            q = policy(obs)
            for i in range(num_envs):  # obs[i] is s_{t+n} of pending[i][0], or an episode's final observation
                if ended[i] is not None:  # (and this step resets env i: the episode's last steps go first)
                    terminated_i, episode_return, length = ended[i]
                    _flush(outbox, i, pending[i], len(pending[i]), 0.0 if terminated_i else float(q[i].max()),
                           discounts)
                    outbox.episodes.append((i, episode_return, length))
                    ended[i] = None
                elif len(pending[i]) == n_step:
                    _flush(outbox, i, pending[i], 1, float(q[i].max()), discounts)
            actions = epsilon_greedy(lambda: q, schedule(shared.env_steps), spec.n_actions, rng, num_envs)
            next_obs, rewards, terminated, truncated, _ = environment_call(
                cfg.env.id, "a training step", vector_env.step, actions)
            check_step(cfg.env.id, rewards, next_obs, spec.obs_shape, spec.obs_dtype)
            for i in range(num_envs):
                if resetting[i]:  # next-step autoreset: this step only reset env i
                    outbox.begin(i, frame_of(next_obs[i]))
                    continue
                pending[i].append((int(actions[i]), float(rewards[i]), frame_of(next_obs[i]), bool(terminated[i]),
                                   bool(truncated[i]), float(q[i, actions[i]])))
                returns[i] += rewards[i]
                lengths[i] += 1
                if terminated[i] or truncated[i]:
                    ended[i] = (bool(terminated[i]), float(returns[i]), int(lengths[i]))
                    returns[i], lengths[i] = 0.0, 0
            resetting = terminated | truncated
            obs = next_obs
            actor_steps += num_envs
            since_sync += num_envs
            since_send += num_envs
            if since_send >= cfg.actors.send_every:
                handed_in += outbox.kinds.count(STEP)
                conn.send(("experience", outbox.pack(policy_steps=policy_steps, actor_steps=actor_steps,
                                                     epsilon=schedule(shared.env_steps))))
                outbox, since_send = _Outbox(), 0
                while handed_in - shared.taken_in(index) > ahead and not shared.stopping:
                    time.sleep(0.0005)
    finally:
        vector_env.close()
        shared.close()


def _flush(outbox: _Outbox, env: int, pending: list[tuple], count: int, bootstrap: float,
           discounts: np.ndarray) -> None:
    """Hand in the first ``count`` pending steps of ``env``, each with its n-step initial priority.

    Step j's return runs to the end of ``pending`` (its window: n steps, or fewer where the episode ended),
    bootstrapped from ``bootstrap``, the greedy value after the window (0 where the episode terminated).
    """
    rewards = np.array([step[1] for step in pending])
    for j in range(count):
        k = len(pending) - j
        target = float(np.dot(discounts[:k], rewards[j:])) + discounts[k] * bootstrap
        action, reward, frame, terminated, truncated, q_taken = pending[j]
        outbox.step(env, action, reward, frame, terminated, truncated, abs(target - q_taken))
    del pending[:count]


class ApexCollector:
    """The learner's side of apex actors: start them, store what they hand in, publish parameters.

    Args:
        cfg: the run's configuration (``actors.count`` actors of ``env.num_envs`` envs each).
        spec: the environment's spaces.
        adder: the writer into the shared replay, which has ``actors.count * env.num_envs`` streams.
        variables: where the actors' parameters come from: ``policy_parameters()`` (name -> numpy array) and
            ``learner_steps`` (the learner; Acme calls this a variable source).
        seed: the actors' seeds derive from it (see ``open_session``).
        schedules: each actor's exploration schedule (``exploration.actor_schedules``).
    """

    checkpoint_arrays = ()  # the actors' envs are not captured: a resumed run starts new episodes

    def __init__(self, cfg: Config, spec: EnvSpec, adder: ReplayAdder, variables, seed: int,
                 schedules: list[EpsilonSchedule]):
        self.cfg, self.spec, self.adder, self.variables = cfg, spec, adder, variables
        self.schedules = schedules
        self.seed = seed
        layout = [(name, tuple(array.shape)) for name, array in variables.policy_parameters().items()]
        self.layout = layout
        self.shared = SharedParameters(sum(int(np.prod(shape)) for _, shape in layout), cfg.actors.count)
        self.publish()
        self.env_steps = 0  # the run's env steps, for the actors' epsilon schedules
        self._last_published_env_steps = 0
        self.pool: ActorPool | None = None
        self.actor_steps = np.zeros(cfg.actors.count, dtype=np.int64)  # env steps each actor handed in
        self.actor_epsilon = np.array([s(0) for s in self.schedules])
        self._window = self._new_window()
        self.broken = False

    def publish(self) -> None:
        """Copy the learner's online parameters to the actors' shared block."""
        arrays = self.variables.policy_parameters()
        flat = np.concatenate([arrays[name].ravel() for name, _ in self.layout]).astype(np.float32, copy=False)
        self.shared.publish(flat, self.variables.learner_steps)

    def start(self, seed: int) -> None:
        """A fresh run: nothing to do here, the actors begin their episodes themselves."""

    def open_session(self) -> None:
        """Spawn the actors; each begins its episodes.

        Actor i seeds its envs and exploration from ``seed + 1000 * (i + 1)`` plus the run's env steps, so a
        resumed run's actors do not replay the first session's episodes.
        """
        seed = self.seed + self.env_steps
        self.pool = ActorPool("apex actor", _act, lambda i: (self.cfg, self.spec, seed + 1000 * (i + 1),
                                                             self.schedules[i], self.shared.name, self.layout),
                              self.cfg.actors.count, backend="process")

    def collect(self, env_steps: int, learning: bool, phase_seconds: dict) -> Collected:
        """Store what the actors handed in since the last call (waiting up to POLL_SECONDS for some).

        The actors explore by their own schedules. Waiting counts as acting in ``phase_seconds``.
        """
        started = time.perf_counter()
        try:
            messages = self.pool.receive(POLL_SECONDS)
        except EnvironmentFault:
            self.broken = True
            raise
        waited = time.perf_counter()
        collected = Collected()
        for index, (_, experience) in messages:
            self._store(index, experience, collected)
        self.env_steps += collected.env_steps
        self.shared.env_steps = self.env_steps
        phase_seconds["act"] += waited - started
        phase_seconds["store"] += time.perf_counter() - waited
        return collected

    def _store(self, actor: int, experience: dict, collected: Collected) -> None:
        base = actor * self.cfg.env.num_envs
        episodes = iter(experience["episodes"])
        kinds, envs_, frames = experience["kinds"], experience["envs"], experience["frames"]
        before = collected.env_steps
        for k in range(len(kinds)):
            stream = base + int(envs_[k])
            if kinds[k] == BEGIN:
                self.adder.begin(stream, frames[k])
                continue
            terminated, truncated = bool(experience["terminated"][k]), bool(experience["truncated"][k])
            self.adder.add(stream, int(experience["actions"][k]), float(experience["rewards"][k]), frames[k],
                           terminated, truncated, priority=float(experience["priorities"][k]))
            collected.env_steps += 1
            if terminated or truncated:
                env, episode_return, length = next(episodes)
                collected.episodes.append(Episode(base + env, episode_return, length, collected.env_steps))
                self._window["returns"][actor].append(episode_return)
        received = collected.env_steps - before
        self.shared.add_taken_in(actor, received)
        self.actor_steps[actor] += received
        self.actor_epsilon[actor] = experience["epsilon"]
        window = self._window
        window["steps"][actor] += received
        window["lag_sum"] += received * max(self.variables.learner_steps - experience["policy_steps"], 0)

    def after_updates(self, env_steps: int) -> None:
        """Publish the parameters when ``actors.sync_every`` env steps passed since the last publication."""
        if env_steps - self._last_published_env_steps >= self.cfg.actors.sync_every:
            self.publish()
            self._last_published_env_steps = env_steps

    def set_env_steps(self, env_steps: int) -> None:
        """The run's env steps so far (a resumed run's actors continue their epsilon schedules from there)."""
        self.env_steps = env_steps
        self.shared.env_steps = env_steps
        self._last_published_env_steps = env_steps

    def epsilon(self, env_steps: int) -> float:
        """The actors' mean exploration rate, as they last reported it."""
        return float(self.actor_epsilon.mean())

    # --- figures ----------------------------------------------------------------------------------

    def _new_window(self) -> dict:
        count = self.cfg.actors.count
        return {"start": time.perf_counter(), "steps": np.zeros(count, dtype=np.int64), "lag_sum": 0,
                "returns": [[] for _ in range(count)]}

    def window_figures(self) -> tuple[dict, list[dict]]:
        """(metrics: the policy lag over the window, rows of actors.csv: one per actor), and a new window."""
        window, self._window = self._window, self._new_window()
        elapsed = max(time.perf_counter() - window["start"], 1e-9)
        total = int(window["steps"].sum())
        rows = [{"actor": i, "final_epsilon": schedule.final, "actor_env_steps": int(self.actor_steps[i]),
                 "env_steps_per_s": window["steps"][i] / elapsed, "episodes": len(window["returns"][i]),
                 "mean_return": float(np.mean(window["returns"][i])) if window["returns"][i] else float("nan")}
                for i, schedule in enumerate(self.schedules)]
        lag = window["lag_sum"] / total if total else float("nan")
        memory = self.pool.resident_mib() if self.pool is not None else [""] * len(rows)
        for row, mib in zip(rows, memory):
            row["rss_mib"] = mib
        return {metrics.ACTOR_POLICY_LAG: lag, metrics.ACTORS_RSS_MIB: total_mib(memory)}, rows

    # --- checkpoints and the end ------------------------------------------------------------------

    def checkpoint_state(self, with_envs: bool) -> tuple[dict, None]:
        return {}, None

    def restore(self, arrays, env_state, env_steps: int, notes: list[str]) -> None:
        """Continue at ``env_steps``: the saved replay's open episodes end as truncated, the actors start new ones."""
        self.set_env_steps(env_steps)
        self.adder.truncate_open_episodes()
        notes.append("mode apex: the actors' environments are not captured in checkpoints; episodes restart")

    def close(self, timeout: float = 10.0) -> None:
        """Stop the actors (raise the flag; the pool drains their pipes so none blocks in a send), then free
        the shared block."""
        self.shared.stop()
        if self.pool is not None:
            self.pool.close(timeout)
            self.pool = None
        self.shared.close()
