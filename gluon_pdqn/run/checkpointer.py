"""Checkpoints of a training run: save, restore, the best policy, and the newest few kept (as Dopamine's).

A bundle holds everything needed to continue the run exactly: the learner's parameters and optimizer, the
replay and the loop's action Generator (``updates``), the collector's arrays and its environments' state,
and the loop's counters and evaluations (``state.json``). ``checkpoint`` writes and verifies the files.
"""
from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np

from .. import checkpoint
from ..errors import UserError


class Checkpointer:
    """Writes and restores the bundles of one run directory.

    Args:
        run_dir: the run directory (``checkpoints/`` inside it).
        cfg: the run's configuration.
        spec: the environment's spaces (a bundle of another environment is refused).
        learner, collector, updates: the parts whose state a bundle holds.
    """

    def __init__(self, run_dir: str, cfg, spec, learner, collector, updates):
        self.run_dir, self.cfg, self.spec = run_dir, cfg, spec
        self.learner, self.collector, self.updates = learner, collector, updates
        self.newest: tuple[int, str] | None = None  # (env steps, path) of the last bundle written in this session
        self.resumed: tuple[int, str] | None = None  # (env steps, path) of the bundle this session resumed from
        self.listeners: list = []  # called with (env steps, path) after each bundle is written

    def save(self, counters, evaluations: dict, best: bool = False) -> str:
        """Write a complete bundle at ``counters.env_steps``; ``evaluations`` is {"best": .., "last": ..}.

        ``best=True`` writes ``checkpoints/best`` instead, for the policy of the best evaluation so far: the same
        bundle without the replay and the environments' state (a run resumed from it refills its replay).
        """
        with_replay = self.cfg.replay.save_in_checkpoint and not best
        loop_arrays, env_state = self.collector.checkpoint_state(with_envs=with_replay)
        replay_arrays, scalars = self.updates.checkpoint_state(with_replay)

        def write_files(directory: str) -> None:
            self.learner.save(directory)
            np.savez(os.path.join(directory, "loop.npz"), **loop_arrays)
            if replay_arrays:
                np.savez(os.path.join(directory, "replay.npz"), **replay_arrays)

        state = {
            "config": self.cfg.to_dict(),
            "env_spec": {"id": self.spec.id, "obs_shape": list(self.spec.obs_shape),
                         "n_actions": self.spec.n_actions},
            "counters": asdict(counters),
            **scalars,  # "rng" and "replay"
            "env_snapshot": env_state,
            "eval": evaluations,
        }
        if best:
            return checkpoint.save_best(self.run_dir, state, write_files)
        bundle = checkpoint.save(self.run_dir, counters.env_steps, state, write_files, self.cfg.run.keep_checkpoints)
        self.newest = (counters.env_steps, bundle)
        for listener in self.listeners:
            listener(*self.newest)
        return bundle

    def restore(self, bundle: str, notes: list[str]) -> tuple[dict, dict]:
        """Load ``bundle`` into the learner, the replay and the collector; return its counters and
        evaluations ({"best": .., "last": ..}), and add to ``notes`` what could not be restored."""
        state = checkpoint.read_state(bundle)
        if state["env_spec"]["id"] != self.spec.id or state["env_spec"]["n_actions"] != self.spec.n_actions:
            raise UserError(f"checkpoint {bundle} is for {state['env_spec']['id']}, not {self.spec.id}")
        with checkpoint.reading(bundle, "its parameter or optimizer files"):
            self.learner.load(bundle)
        notes.extend(self.learner.restore_notes())
        counters = state["counters"]
        self.resumed = (counters["env_steps"], bundle)
        self.learner.learner_steps = counters["learner_steps"]
        loop = None
        if self.collector.checkpoint_arrays:
            arrays = checkpoint.load_arrays(bundle, "loop.npz")
            with checkpoint.reading(bundle, "loop.npz"):
                loop = {key: arrays[key] for key in self.collector.checkpoint_arrays}
        env_state = self.updates.restore(bundle, state, notes)
        self.collector.restore(loop, env_state, counters["env_steps"], notes)
        evaluations = {"best": checkpoint.best_return(self.run_dir, state), "last": state["eval"]["last"]}
        return counters, evaluations

    @property
    def newest_bundle(self) -> tuple[int, str] | None:
        """(env steps, path) of the newest bundle of this run: written in this session, or resumed from."""
        return self.newest or self.resumed
