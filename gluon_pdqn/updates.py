"""How the loop turns what a collector gathered into updates: from a replay, or from actors' rollouts.

The builder picks one of the two for the run's pair (``build.Acting.updates``) and the loop uses either alike::

    result = updates.learn(collected, before, after, outcomes)   # the updates these env steps made due
    updates.settle(outcomes)                                     # take in the outcome of those still running
    row.update(updates.figures(counters))                        # when a metrics row is due
    arrays, scalars = updates.checkpoint_state(with_replay)      # and updates.restore(...) on resume

``Outcomes`` counts what the learner's updates did (applied, or skipped for a non-finite gradient) for both.
"""
from __future__ import annotations

from . import checkpoint, metrics


class Outcomes:
    """Takes in finished updates: counts skipped ones, and stops the run after too many in a row.

    A skipped update (non-finite gradient) changes no parameter; the learner uncounts it from its
    ``learner_steps`` (``Learner.settle``). After ``limit`` skips in a row ``stopped`` holds their number and
    the loop checkpoints and ends the run.

    Args:
        learner: the run's learner.
        counters: the run's counters (``skipped_updates`` is counted there, so it is checkpointed).
        limit: ``run.max_nonfinite_updates``.
    """

    def __init__(self, learner, counters, limit: int):
        self.learner, self.counters, self.limit = learner, counters, limit
        self.in_a_row = 0
        self.stopped: int | None = None

    def take_in(self, result) -> bool:
        """Count a finished update; return whether it applied."""
        if self.learner.settle(result):
            self.in_a_row = 0
            return True
        self.counters.skipped_updates += 1
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            self.stopped = self.in_a_row
        return False


class FromReplay:
    """Updates sampled from the replay the collector fills: ``agent.updates_per_train`` for every
    ``agent.train_every`` env steps, once ``replay.learning_starts`` is reached and the replay holds a batch.

    With Adam the learner never waits for an update (see ``learners.StepResult``); ``settle`` reads the
    outcomes of the updates started since its last call, which waits for them: the one wait of a training
    round. Prioritized replay's new priorities are therefore written once per round, as in Ape-X.

    Args:
        cfg: the run's configuration.
        learner: a learner with ``step`` and ``timed_step``.
        replay: the ReplayBuffer.
        adder: the ``acting.ReplayAdder`` that writes into it (also the learned priorities).
        collector: the run's collector (told when updates were made).
        rng: the loop's action Generator (checkpointed beside the replay).
        budget: this process's env steps (``run.total_env_steps``, or a job worker's share): the schedule of
            prioritized replay's importance-sampling exponent runs over it.
    """

    def __init__(self, cfg, learner, replay, adder, collector, rng, budget: int):
        self.cfg, self.learner, self.replay, self.adder = cfg, learner, replay, adder
        self.collector, self.rng, self.budget = collector, rng, budget
        self.timing_due = True  # time the next update per device (the first of each log window)
        self.timed: tuple[int, list[dict]] | None = None  # (updates, per-device rows) of the timed update, unwritten
        self._pending: list = []  # (replay indices, StepResult) of updates not yet settled

    def describe(self) -> str:
        return f"replay {self.cfg.replay.capacity:,} transitions, {self.replay.nbytes / 2**20:,.1f} MiB"

    def learn(self, collected, before: int, after: int, outcomes: Outcomes):
        """Run the updates the env steps ``before`` -> ``after`` made due; the last one's StepResult, or None."""
        cfg = self.cfg
        due = (after // cfg.agent.train_every - before // cfg.agent.train_every) * cfg.agent.updates_per_train
        if not (due and after >= cfg.replay.learning_starts and self.replay.can_sample(cfg.replay.batch_size)):
            return None
        if cfg.run.overlap_acting:
            # The last round's updates ran while the envs stepped; act on their result from now.
            self.settle(outcomes)
            self.learner.refresh_policy()
        progress = after / self.budget
        beta = cfg.replay.beta_start + (1.0 - cfg.replay.beta_start) * min(progress, 1.0)
        for _ in range(due):
            batch = self.replay.sample(cfg.replay.batch_size, beta=beta)
            if self.timing_due:
                result, rows = self.learner.timed_step(batch)
                self.timed = (self.learner.learner_steps, rows)
                self.timing_due = False
            else:
                result = self.learner.step(batch)
            self._pending.append((batch.indices, result))
        if not cfg.run.overlap_acting:
            self.settle(outcomes)
        self.collector.after_updates(after)
        return result

    def settle(self, outcomes: Outcomes) -> None:
        """Take in the outcome of the updates started since the last call: skips and priorities."""
        pending, self._pending = self._pending, []
        for indices, result in pending:
            if outcomes.take_in(result) and self.adder.prioritized:
                self.adder.learned(indices, result.td_errors())

    def figures(self, counters) -> dict:
        """The replay ratio: transitions sampled per transition collected."""
        return {metrics.REPLAY_RATIO: counters.learner_steps * self.cfg.replay.batch_size / max(counters.env_steps, 1)}

    def checkpoint_state(self, with_replay: bool) -> tuple[dict, dict]:
        """Arrays (``replay.npz``, empty without ``with_replay``) and the scalars of ``state.json``."""
        arrays, scalars = self.replay.state_dict() if with_replay else ({}, None)
        return arrays, {"rng": self.rng.bit_generator.state, "replay": scalars}

    def restore(self, bundle: str, state: dict, notes: list[str]):
        """Load the replay and the action Generator of ``bundle``; return the envs' saved state (or None)."""
        with checkpoint.reading(bundle, f"the 'rng' of {checkpoint.STATE_FILE}"):
            self.rng.bit_generator.state = state["rng"]
        if state["replay"] is None:
            notes.append("checkpoint holds no replay: updates wait until a batch is collected again")
            return None
        with checkpoint.reading(bundle, "replay.npz"):
            self.replay.load_state_dict(checkpoint.load_arrays(bundle, "replay.npz"), state["replay"])
        # The envs' saved state is only of use beside the replay that holds their episodes so far.
        return state["env_snapshot"]


class FromRollouts:
    """One update of a rollout learner (``learn``) from the rollouts that arrived, as soon as they arrive.

    Args:
        learner: a rollout learner (``learners.RolloutLearner``).
        rng: the loop's action Generator (written into checkpoints; async actors draw from their own).
    """

    timing_due = False  # (rollout updates are not timed per device)
    timed = None

    def __init__(self, learner, rng):
        self.learner, self.rng = learner, rng

    @staticmethod
    def describe() -> str:
        return "no replay (it learns from the actors' rollouts)"

    def learn(self, collected, before: int, after: int, outcomes: Outcomes):
        if not collected.rollouts:
            return None
        result = self.learner.learn(collected.rollouts, after)
        outcomes.take_in(result)
        return result

    def settle(self, outcomes: Outcomes) -> None:
        """Nothing runs on: each rollout update is taken in as it is made."""

    @staticmethod
    def figures(counters) -> dict:
        return {}

    def checkpoint_state(self, with_replay: bool) -> tuple[dict, dict]:
        return {}, {"rng": self.rng.bit_generator.state, "replay": None}

    @staticmethod
    def restore(bundle: str, state: dict, notes: list[str]):
        """Nothing to load (a rollout learner's bundle, also of older versions, may lack the Generator)."""
        return None
