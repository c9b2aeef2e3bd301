"""The networks a learner holds and acts with: online, target, an acting snapshot, a numpy copy, noise."""
from __future__ import annotations

import contextlib
import json
import os

import mxnet as mx
import numpy as np

from .. import networks
from ..envs import EnvSpec
from ..errors import UserError
from ..networks.precision import check_precision, lower_precision
from .base import copy_params

NOISE_FILE = "noise_rng.json"  # the noisy layers' generator (network.noisy), for an exact resume


class QNetworks:
    """Online and (unless not ``with_target``) target networks on ``contexts``, equal weights, and what acts.

    Acting uses a numpy copy of an MLP or of a CNN with small convolutions (MinAtar's), refreshed after each
    update (its forward and refresh together cost no more than a Gluon call, and less where updates are rarer),
    or the network itself. With ``run.overlap_acting`` it acts from a snapshot of the online network, taken by
    ``refresh_policy``, so choosing actions never waits for updates still being computed.

    ``online_compute`` and ``target_compute`` are the networks an update computes with: the networks
    themselves, or in ``run.precision`` bf16/fp16 graphs over the same fp32 parameters (acting, one
    observation at a time, stays in fp32: the casts cost more than they save there).

    Noisy layers (``network.noisy``) get new noise before every update (online and target independently,
    ``resample_for_update``) and before every action; ``without_noise`` silences them (evaluation).

    Args:
        cfg: the run's configuration (network, run sections are read).
        spec: the environment's spaces (``n_actions`` outputs per ``per_action``).
        contexts: the devices every network is initialized on.
        per_action: outputs per action (1 for Q-values; atoms or quantiles for a return distribution).
        with_target: whether there is a target network.
        noise_seed: seed of the noise generator (default: ``run.seed + 11``).
    """

    def __init__(self, cfg, spec: EnvSpec, contexts: list[mx.Context], per_action: int = 1,
                 with_target: bool = True, noise_seed=None):
        check_precision(cfg.run.precision, contexts)
        self.contexts = contexts
        self.overlap = cfg.run.overlap_acting
        self.online = networks.build(cfg.network, spec, prefix="online_", per_action=per_action)
        initializer = mx.init.Xavier(rnd_type="uniform", factor_type="avg", magnitude=1.0)
        self.online.initialize(initializer, ctx=contexts)
        # Deferred shapes are resolved by one forward pass before anything reads the parameters.
        dummy = mx.nd.zeros((1,) + spec.obs_shape, ctx=contexts[0], dtype=spec.obs_dtype)
        self.online(dummy)
        if cfg.network.init == "torch":
            networks.torch_default_init(self.online)
        self.target = None
        if with_target:
            self.target = networks.build(cfg.network, spec, prefix="target_", per_action=per_action)
            self.target.initialize(initializer, ctx=contexts)
            self.target.collect_params().setattr("grad_req", "null")
            self.target(dummy)
            copy_params(self.online, self.target)
        self.online_compute = lower_precision(self.online, cfg.run.precision)
        self.target_compute = self.target and lower_precision(self.target, cfg.run.precision)
        self.params = [p for p in self.online.collect_params().values() if p.grad_req != "null"]  # trained
        self.acting_snapshot = None
        self.acting_network = self.online  # (a model-parallel learner acts with its staged network)
        if self.overlap:
            self.acting_snapshot = networks.build(cfg.network, spec, prefix="acting_", per_action=per_action)
            self.acting_snapshot.initialize(initializer, ctx=contexts[0])
            self.acting_snapshot.collect_params().setattr("grad_req", "null")
            if cfg.run.hybridize:
                self.acting_snapshot.hybridize(static_alloc=True)
            self.acting_snapshot(dummy)
            copy_params(self.online, self.acting_snapshot)
            self.acting_network = self.acting_snapshot
        self.noisy = cfg.network.noisy
        self.noise_rng = np.random.default_rng(cfg.run.seed + 11 if noise_seed is None else noise_seed)
        self._acting_noise = True
        self._numpy_policy = networks.numpy_copy(self.acting_network)
        self._target_numpy = None  # a numpy copy of the target network (``target_outputs``), made on first use
        self._policy_stale = True
        self._target_stale = True

    # --- acting -----------------------------------------------------------------------------------

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        """The acting network's outputs (batch, n_actions * per_action) for ``obs``, as numpy."""
        if self._numpy_policy is not None:
            if self._policy_stale:
                self._load_numpy_copy(self._numpy_policy)
                self._policy_stale = False
            if self.noisy:
                if self._acting_noise:
                    self._numpy_policy.resample(self.noise_rng)
                else:
                    self._numpy_policy.silence()
            return self._numpy_policy(obs)
        if self.noisy:
            if self._acting_noise:
                networks.resample_noise(self.acting_network, self.noise_rng)
            else:
                networks.silence_noise(self.acting_network)
        return self.acting_network(mx.nd.array(obs, ctx=self.contexts[0], dtype=obs.dtype)).asnumpy()

    def target_outputs(self, obs: np.ndarray) -> np.ndarray:
        """The target network's outputs for ``obs``, as numpy (through a numpy copy where acting uses one)."""
        if self._numpy_policy is None:
            return self.target(mx.nd.array(obs, ctx=self.contexts[0], dtype=obs.dtype)).asnumpy()
        if self._target_numpy is None:
            self._target_numpy = networks.numpy_copy(self.target)
        if self._target_stale:
            self._load_numpy_copy(self._target_numpy)
            self._target_stale = False
        return self._target_numpy(obs)

    @contextlib.contextmanager
    def without_noise(self):
        """Act with the noisy layers' means inside (deterministic evaluation); new noise again after."""
        self._acting_noise = False
        try:
            yield
        finally:
            self._acting_noise = True

    def resample_for_update(self) -> None:
        """New noise in the online and the target network, before an update (Fortunato et al. 2018)."""
        if self.noisy:
            networks.resample_noise(self.online, self.noise_rng)
            if self.target is not None:
                networks.resample_noise(self.target, self.noise_rng)

    @staticmethod
    def _load_numpy_copy(policy) -> None:
        """Copy the parameters of the block ``policy`` mirrors into it: one read per parameter.

        (One ``concat`` of them on the device and a single read measured 1.1 ms for MinAtar's network here,
        the reads one by one 0.1 ms.)
        """
        policy.load(np.concatenate([p.list_data()[0].asnumpy().ravel() for p in policy.parameters()]))

    def updated(self) -> None:
        """The online parameters changed: act with them from now (unless acting from a snapshot)."""
        if not self.overlap:
            self._policy_stale = True

    def refresh_policy(self) -> None:
        """Take a new acting snapshot (``run.overlap_acting``); nothing to do otherwise."""
        if self.acting_snapshot is not None:
            copy_params(self.online, self.acting_snapshot)
            self._policy_stale = True

    def sync_target(self) -> None:
        copy_params(self.online, self.target)
        self._target_stale = True

    # --- state ------------------------------------------------------------------------------------

    def blocks(self) -> dict:
        """The networks a checkpoint holds, by name."""
        blocks = {"online": self.online}
        if self.target is not None:
            blocks["target"] = self.target
        if self.acting_snapshot is not None:
            blocks["acting"] = self.acting_snapshot
        return blocks

    def save_noise(self, directory: str) -> None:
        if self.noisy:
            with open(os.path.join(directory, NOISE_FILE), "w") as f:
                json.dump(self.noise_rng.bit_generator.state, f)

    def loaded(self, directory: str) -> None:
        """The parameters were loaded from ``directory``: restore the noise generator, act with the new ones."""
        noise = os.path.join(directory, NOISE_FILE)
        if self.noisy and os.path.exists(noise):  # (a checkpoint from before it was saved has none)
            try:
                with open(noise) as f:
                    self.noise_rng.bit_generator.state = json.load(f)
            except (OSError, ValueError, TypeError, KeyError) as e:
                raise UserError(f"{directory}: {NOISE_FILE} is corrupt ({type(e).__name__})") from None
        self._policy_stale = True
        self._target_stale = True
