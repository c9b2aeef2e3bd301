"""Experience replay that stores each observation frame once and forms transitions when sampling.

Each environment of a vector env writes into its own ring of slots (as Tianshou's per-env buffers), so
n-step returns and frame stacks never cross environments. A slot holds one frame and, once the agent has
acted, the action and reward that followed it. An episode's final observation gets a slot of its own
(flagged LAST, with whether the episode terminated), so a truncated episode can still bootstrap from it.

At sampling time a transition at slot t gathers rewards t..t+k-1 (k <= n, cut at the episode's end), the
stacked observation ending at t and the one ending at t+k; frames before an episode's first slot are
replaced by that first frame, as gymnasium's ``FrameStackObservation(padding_type="reset")`` does.
Atari frames are stored as single uint8 84x84 arrays, so a million transitions take about 7 GB.
"""
from __future__ import annotations

import resource
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .sum_tree import SumTree

FIRST = np.uint8(1)  # slot is the first observation of an episode
LAST = np.uint8(2)  # slot is the final observation of an episode (no action follows)
TERMINATED = np.uint8(4)  # on a LAST slot: the episode terminated (no bootstrap), else it was truncated


@dataclass
class Batch:
    """A sampled batch of n-step transitions, as numpy arrays with the batch on axis 0.

    ``discounts`` is gamma**k for a k-step transition whose end may be bootstrapped, and 0 where the episode
    terminated within the k steps: the TD target is ``rewards + discounts * Q_target(next_obs)``.
    """

    obs: np.ndarray
    actions: np.ndarray  # int32
    rewards: np.ndarray  # float32, discounted sum over the k steps
    next_obs: np.ndarray
    discounts: np.ndarray  # float32
    weights: np.ndarray  # float32 importance-sampling weights (all 1 for uniform replay)
    indices: np.ndarray  # int64 leaf indices, for update_priorities


def available_memory_bytes() -> int | None:
    """Memory the system can still give (MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def address_space_room_bytes() -> int | None:
    """Bytes this process may still map under its address-space limit (``ulimit -v``), or None if unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as f:
            mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        mapped = 0
    return max(0, soft - mapped)


class ReplayBuffer:
    """Uniform or proportional-prioritized replay over per-environment rings of frames.

    Args:
        capacity: transitions held in all (split evenly over ``num_envs``).
        num_envs: environments writing to it; each gets ``capacity // num_envs`` slots.
        frame_shape: shape of one stored frame (the observation without its stack axis).
        frame_dtype: dtype of frames (uint8 for images).
        frame_stack: frames per observation (1: the observation is the frame).
        n_step: maximum steps of reward per transition.
        gamma: discount per step.
        seed: seed of the sampling Generator (its state is part of ``state_dict``).
        prioritized: proportional prioritized sampling with priority ``(|td| + eps) ** alpha``.
        alpha, priority_epsilon: see ``prioritized``.
    """

    def __init__(self, capacity: int, num_envs: int, frame_shape: tuple[int, ...], frame_dtype, *,
                 frame_stack: int = 1, n_step: int = 1, gamma: float = 0.99, seed: int = 0,
                 prioritized: bool = False, alpha: float = 0.6, priority_epsilon: float = 1e-6):
        self.num_envs = int(num_envs)
        self.slots_per_env = int(capacity) // self.num_envs
        self.frame_shape = tuple(frame_shape)
        self.frame_dtype = np.dtype(frame_dtype)
        self.frame_stack = int(frame_stack)
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.prioritized = bool(prioritized)
        self.alpha = float(alpha)
        self.priority_epsilon = float(priority_epsilon)
        self.rng = np.random.default_rng(seed)
        self._check_memory()
        shape = (self.num_envs, self.slots_per_env)
        try:
            self.frames = np.zeros(shape + self.frame_shape, dtype=self.frame_dtype)
        except MemoryError:
            raise UserError(f"cannot allocate the replay's {self.nbytes / 2**30:.2f} GiB; lower "
                            "replay.capacity") from None
        self.actions = np.zeros(shape, dtype=np.int32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.flags = np.zeros(shape, dtype=np.uint8)
        self.written = np.zeros(self.num_envs, dtype=np.int64)  # slots ever written per env (logical clock)
        self._discount_powers = self.gamma ** np.arange(self.n_step + 1)
        self.tree = SumTree(self.num_envs * self.slots_per_env) if self.prioritized else None
        # Priorities given with ``add_frame``, held until the transition's n-step window closes (NaN: none given).
        self.initial_priority = np.full(shape, np.nan, dtype=np.float32) if self.prioritized else None
        self.max_priority = 1.0

    # --- size -------------------------------------------------------------------------------------

    @staticmethod
    def bytes_needed(capacity: int, frame_shape, frame_dtype, prioritized: bool) -> int:
        """Bytes a buffer of ``capacity`` slots will allocate."""
        frame_bytes = int(np.prod(frame_shape)) * np.dtype(frame_dtype).itemsize
        per_slot = frame_bytes + 4 + 4 + 1  # frame, action, reward, flags
        tree = 2 * 8 * (1 << max(0, (capacity - 1).bit_length())) if prioritized else 0
        return capacity * per_slot + tree

    def _check_memory(self) -> None:
        need = self.bytes_needed(self.num_envs * self.slots_per_env, self.frame_shape, self.frame_dtype,
                                 self.prioritized)
        self.nbytes = need
        available = available_memory_bytes()
        if available is not None and need > 0.9 * available:
            raise UserError(f"replay of {self.num_envs * self.slots_per_env:,} transitions needs "
                            f"{need / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB is available; "
                            "lower replay.capacity")
        room = address_space_room_bytes()
        if room is not None and need > 0.9 * room:
            raise UserError(f"replay of {self.num_envs * self.slots_per_env:,} transitions needs "
                            f"{need / 2**30:.2f} GiB but this process's address-space limit (ulimit -v) leaves "
                            f"{room / 2**30:.2f} GiB; lower replay.capacity or raise the limit")

    # --- writing ----------------------------------------------------------------------------------

    def _frame_of(self, obs: np.ndarray) -> np.ndarray:
        return obs[-1] if self.frame_stack > 1 else obs

    def _write_slot(self, env: int, frame: np.ndarray, flags: np.uint8) -> None:
        slot = self.written[env] % self.slots_per_env
        self.frames[env, slot] = frame
        self.flags[env, slot] = flags
        self.actions[env, slot] = 0
        self.rewards[env, slot] = 0.0
        if self.tree is not None:
            self.tree.set_one(env * self.slots_per_env + slot, 0.0)
        self.written[env] += 1

    def begin_episode(self, env: int, obs: np.ndarray) -> None:
        """Store the first observation of a new episode in env ``env``."""
        self.begin_episode_frame(env, self._frame_of(obs))

    def begin_episode_frame(self, env: int, frame: np.ndarray) -> None:
        """``begin_episode`` given the observation's newest frame only (what apex actors send)."""
        self._write_slot(env, frame, FIRST)

    def add(self, env: int, action: int, reward: float, next_obs: np.ndarray, terminated: bool,
            truncated: bool) -> None:
        """Record that env ``env`` took ``action`` from its newest observation, got ``reward`` and ``next_obs``."""
        self.add_frame(env, action, reward, self._frame_of(next_obs), terminated, truncated)

    def add_frame(self, env: int, action: int, reward: float, next_frame: np.ndarray, terminated: bool,
                  truncated: bool, priority: float | None = None) -> None:
        """``add`` given the next observation's newest frame only.

        ``priority``: the initial |TD error| of the transition that starts at this step, computed by whoever
        acted (Ape-X's actors do); it replaces the maximum priority new transitions get otherwise.
        """
        if self.written[env] == 0:
            raise RuntimeError("add() before begin_episode()")
        slot = (self.written[env] - 1) % self.slots_per_env
        if self.flags[env, slot] & LAST:
            raise RuntimeError("add() after an episode's end; call begin_episode() first")
        self.actions[env, slot] = action
        self.rewards[env, slot] = reward
        if self.tree is not None:
            self.initial_priority[env, slot] = np.nan if priority is None else priority + self.priority_epsilon
        flags = np.uint8(0)
        if terminated or truncated:
            flags = LAST | (TERMINATED if terminated else np.uint8(0))
        self._write_slot(env, next_frame, flags)
        if self.tree is not None:
            # A slot becomes sampleable when its n-step window closes (see _valid_range); it gets its
            # priority then, so the priority mass never sits on slots that cannot be drawn.
            complete = self.written[env] - 1 - self.n_step
            complete_slot = complete % self.slots_per_env
            if complete >= max(0, self.written[env] - self.slots_per_env) and not (
                    self.flags[env, complete_slot] & LAST):
                given = self.initial_priority[env, complete_slot]
                priority = self.max_priority if np.isnan(given) else float(given)
                self.tree.set_one(env * self.slots_per_env + complete_slot, priority ** self.alpha)

    def truncate_open_episodes(self) -> None:
        """End every env's episode in progress as truncated (its environment had to be reset)."""
        for env in np.flatnonzero(self.written > 0):
            slot = (self.written[env] - 1) % self.slots_per_env
            self.flags[env, slot] |= LAST

    # --- sampling ---------------------------------------------------------------------------------

    def _valid_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per env, the logical slots [low, high] that can start a transition (frames and lookahead kept)."""
        high = self.written - 1 - self.n_step
        low = np.maximum(self.written - self.slots_per_env + self.frame_stack - 1, 0)
        return low, high

    def can_sample(self, batch_size: int) -> bool:
        """Whether at least ``batch_size`` complete transitions are stored (sampling draws with replacement)."""
        low, high = self._valid_range()
        return int(np.maximum(high - low + 1, 0).sum()) >= batch_size

    def _is_valid(self, env: np.ndarray, logical: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        ok = (logical >= low[env]) & (logical <= high[env])
        return ok & ((self.flags[env, logical % self.slots_per_env] & LAST) == 0)

    def _sample_uniform(self, batch_size: int, low: np.ndarray, high: np.ndarray):
        sizes = np.maximum(high - low + 1, 0)
        ends = np.cumsum(sizes)
        env = np.empty(batch_size, dtype=np.int64)
        logical = np.empty(batch_size, dtype=np.int64)
        todo = np.arange(batch_size)
        for _ in range(100):
            # One draw over all envs' valid slots laid end to end: uniform over transitions.
            flat = self.rng.integers(0, ends[-1], size=todo.size)
            env[todo] = np.searchsorted(ends, flat, side="right")
            logical[todo] = low[env[todo]] + flat - (ends[env[todo]] - sizes[env[todo]])
            todo = todo[~self._is_valid(env[todo], logical[todo], low, high)]  # LAST slots are no transitions
            if todo.size == 0:
                return env, logical
        raise RuntimeError("replay could not draw a valid batch")

    def _sample_prioritized(self, batch_size: int, low: np.ndarray, high: np.ndarray):
        env = np.empty(batch_size, dtype=np.int64)
        logical = np.empty(batch_size, dtype=np.int64)
        todo = np.arange(batch_size)
        total = self.tree.total
        # Stratified: one draw from each of batch_size equal slices of the priority mass. The rare draw that
        # lands on a slot no longer valid (the oldest frames of a full ring) is redrawn from the whole mass.
        targets = (todo + self.rng.random(todo.size)) * (total / batch_size)
        for _ in range(100):
            leaves = self.tree.find(np.minimum(targets, np.nextafter(total, 0)))
            env[todo], slot = np.divmod(leaves, self.slots_per_env)
            # Logical index of the slot: the newest write of that slot position.
            newest = self.written[env[todo]] - 1
            logical[todo] = newest - ((newest - slot) % self.slots_per_env)
            valid = self._is_valid(env[todo], logical[todo], low, high) & (self.tree.get(leaves) > 0)
            todo = todo[~valid]
            if todo.size == 0:
                return env, logical
            targets = self.rng.random(todo.size) * total
        raise RuntimeError("replay could not draw a valid prioritized batch")

    def _stacked(self, env: np.ndarray, logical: np.ndarray) -> np.ndarray:
        if self.frame_stack == 1:
            return self.frames[env, logical % self.slots_per_env]
        columns = [logical]
        current = logical
        for _ in range(self.frame_stack - 1):
            at_first = (self.flags[env, current % self.slots_per_env] & FIRST) != 0
            current = np.where(at_first, current, current - 1)  # clamp at the episode's first frame
            columns.append(current)
        slots = np.stack(columns[::-1], axis=1) % self.slots_per_env
        return self.frames[env[:, None], slots]

    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        """A batch of n-step transitions; ``beta`` is the importance-sampling exponent (prioritized only)."""
        low, high = self._valid_range()
        if not np.any(high >= low):
            raise RuntimeError("replay holds no complete transition yet")
        sampler = self._sample_prioritized if self.prioritized else self._sample_uniform
        env, logical = sampler(batch_size, low, high)
        n = self.n_step
        steps_ahead = logical[:, None] + np.arange(n)  # slots t .. t+n-1 hold the rewards
        rewards = self.rewards[env[:, None], steps_ahead % self.slots_per_env]
        ends_after = (self.flags[env[:, None], (steps_ahead + 1) % self.slots_per_env] & LAST) != 0
        # Step k is counted if the episode did not end at any of slots t+1 .. t+k.
        ended_before = np.concatenate([np.zeros((batch_size, 1), bool), np.cumsum(ends_after, 1)[:, :-1] > 0], 1)
        counted = ~ended_before
        steps = counted.sum(axis=1)
        returns = (rewards * counted * self._discount_powers[:n]).sum(axis=1)
        next_logical = logical + steps
        next_flags = self.flags[env, next_logical % self.slots_per_env]
        terminated = ((next_flags & LAST) != 0) & ((next_flags & TERMINATED) != 0)
        discounts = self._discount_powers[steps] * ~terminated
        leaves = env * self.slots_per_env + logical % self.slots_per_env
        if self.prioritized:
            probabilities = self.tree.get(leaves) / self.tree.total
            weights = probabilities ** (-beta)
            weights = weights / weights.max()
        else:
            weights = np.ones(batch_size)
        return Batch(obs=self._stacked(env, logical), actions=self.actions[env, logical % self.slots_per_env],
                     rewards=returns.astype(np.float32), next_obs=self._stacked(env, next_logical),
                     discounts=discounts.astype(np.float32), weights=weights.astype(np.float32),
                     indices=leaves)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Set priorities ``(|td| + eps) ** alpha`` for the transitions ``indices`` of a sampled batch."""
        if self.tree is None:
            return
        priorities = np.abs(td_errors).astype(np.float64) + self.priority_epsilon
        self.max_priority = max(self.max_priority, float(priorities.max()))
        # A slot rewritten since it was sampled holds priority 0 until its action arrives; keep it so.
        alive = self.tree.get(indices) > 0
        self.tree.set(indices[alive], priorities[alive] ** self.alpha)

    # --- state ------------------------------------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays for an .npz file, JSON-able scalars) that ``load_state_dict`` restores exactly."""
        arrays = {"frames": self.frames, "actions": self.actions, "rewards": self.rewards, "flags": self.flags,
                  "written": self.written}
        if self.tree is not None:
            arrays["priorities"] = self.tree.state_dict()["leaves"]
            arrays["initial_priority"] = self.initial_priority
        scalars = {"rng": self.rng.bit_generator.state, "max_priority": self.max_priority}
        return arrays, scalars

    def load_state_dict(self, arrays: dict[str, np.ndarray], scalars: dict) -> None:
        for name in ("frames", "actions", "rewards", "flags", "written"):
            target = getattr(self, name)
            source = arrays[name]
            if source.shape != target.shape or source.dtype != target.dtype:
                raise ValueError(f"replay '{name}' has shape {source.shape} {source.dtype}, "
                                 f"expected {target.shape} {target.dtype}")
            target[...] = source
        if self.tree is not None:
            if "priorities" not in arrays:
                raise ValueError("replay state has no priorities but the buffer is prioritized")
            self.tree.load_state_dict({"leaves": arrays["priorities"]})
            # (checkpoints written before actors could give priorities hold none: NaN, the maximum is used)
            given = arrays["initial_priority"] if "initial_priority" in arrays else np.nan
            self.initial_priority[...] = given
        self.rng.bit_generator.state = scalars["rng"]
        self.max_priority = float(scalars["max_priority"])
