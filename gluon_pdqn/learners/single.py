"""The single-device DQN learner: the baseline every parallel mode is measured against."""
from __future__ import annotations

import contextlib
import json
import math
import os
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from .. import networks
from ..config import Config
from ..envs import EnvSpec
from ..errors import UserError
from ..distributional import ReturnModel
from ..losses import DistributionalLoss, DistributionalTDTarget, DQNLoss, TDTarget
from ..replay import Batch
from ..networks.precision import check_precision, lower_precision
from .base import (DynamicLossScale, GradientNormAndScale, Learner, StepResult, copy_params, device_figures,
                   load_params, load_trainer_states, save_params, save_trainer_states)
from .optimizers import MultiTensorAdam, make_optimizer


def apply_update_rule(parts: list["SingleLearner"], count_update, losses, q_taken, td_abs) -> StepResult:
    """The update rule of the replay learners, in one place: clip, skip a non-finite step, update, count.

    ``parts`` hold the gradients: one learner, or an ensemble's members (each clipped by its own norm; a
    non-finite gradient in any skips all). With Adam (``MultiTensorAdam``) nothing waits: the norms and clip
    scales stay on the device and the update kernel itself skips a step whose scale is NaN, so the update is
    counted before it is known whether it applied (``StepResult.counted``; ``Learner.settle`` uncounts it).
    Other optimizers read the norm (one wait) and skip on the host. ``count_update`` counts an applied update
    and refreshes the target network when it is due. The ps learner (mode dist) differs: its optimizer runs on
    the kvstore servers (see ``DistLearner``).
    """
    if all(part._skips_on_device() for part in parts):
        norms_and_scales = [part._grad_norm_and_scale() for part in parts]
        if len(parts) == 1:
            grad_norm, scale = norms_and_scales[0]
            scales = [scale]  # NaN already when the norm is not finite
        else:
            first = parts[0].contexts[0]
            grad_norm = mx.nd.add_n(*[(n * n).as_in_context(first) for n, _ in norms_and_scales]).sqrt()
            all_finite_or_nan = grad_norm * 0 + 1  # one part's non-finite gradient skips every part
            scales = [scale * all_finite_or_nan.as_in_context(scale.context) for _, scale in norms_and_scales]
        for part, scale in zip(parts, scales):
            for trainer in part.trainers:
                trainer._optimizer.gradient_scale = scale
                trainer.update(1)
        count_update()
        return StepResult(grad_norm, losses, q_taken, td_abs, counted=True)
    norms_and_scales = [part._read_grad_norm_and_scale() for part in parts]
    grad_norm = norms_and_scales[0][0] if len(parts) == 1 else math.sqrt(sum(n * n for n, _ in norms_and_scales))
    if not math.isfinite(grad_norm):
        return StepResult(grad_norm, losses, q_taken, td_abs)
    for part, (_, scale) in zip(parts, norms_and_scales):
        part._scale_gradients(scale)
        for trainer in part.trainers:
            trainer.update(1)
    count_update()
    return StepResult(grad_norm, losses, q_taken, td_abs)


class SingleLearner(Learner):
    """DQN on one MXNet context: online and target networks, a fused loss graph and a Gluon Trainer.

    Args:
        cfg: the run's configuration (network, optimizer, agent sections are read).
        spec: the environment's spaces.
        ctx: the device to train on.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context):
        self.contexts = [ctx]
        self._build_networks(cfg, spec, self.contexts)
        self.target_block, self.loss_block = self._loss_blocks(self.online_compute, self.target_compute,
                                                               hybridize=cfg.run.hybridize)
        self.trainers = [gluon.Trainer(self.online.collect_params(), make_optimizer(cfg.optim),
                                       update_on_kvstore=False)]

    def _build_networks(self, cfg: Config, spec: EnvSpec, contexts: list[mx.Context], with_target: bool = True) -> None:
        """Online and (unless not ``with_target``) target networks on ``contexts``, equal weights, and what acts.

        Acting uses a numpy copy of an MLP (a Gluon call costs more than the whole numpy forward pass) or
        the network itself. With ``run.overlap_acting`` it acts from a snapshot of the online network,
        taken by ``refresh_policy``, so choosing actions never waits for updates still being computed.

        ``online_compute`` and ``target_compute`` are the networks the update computes with: the networks
        themselves, or in ``run.precision`` bf16/fp16 graphs over the same fp32 parameters (acting, one
        observation at a time, stays in fp32: the casts cost more than they save there).
        """
        self.cfg, self.spec = cfg, spec
        check_precision(cfg.run.precision, contexts)
        self.overlap = cfg.run.overlap_acting
        # What the network's outputs are: Q-values, or a return distribution per action (distributional.py).
        self.return_model = ReturnModel.of(cfg.agent)
        per_action = self.return_model.per_action
        self.online = networks.build(cfg.network, spec, prefix="online_", per_action=per_action)
        initializer = mx.init.Xavier(rnd_type="uniform", factor_type="avg", magnitude=1.0)
        self.online.initialize(initializer, ctx=contexts)
        # Deferred shapes are resolved by one forward pass before anything reads the parameters.
        dummy = mx.nd.zeros((1,) + spec.obs_shape, ctx=contexts[0], dtype=spec.obs_dtype)
        self.online(dummy)
        self.target = None
        if with_target:
            self.target = networks.build(cfg.network, spec, prefix="target_", per_action=per_action)
            self.target.initialize(initializer, ctx=contexts)
            self.target.collect_params().setattr("grad_req", "null")
            self.target(dummy)
            copy_params(self.online, self.target)
        self.online_compute = lower_precision(self.online, cfg.run.precision)
        self.target_compute = self.target and lower_precision(self.target, cfg.run.precision)
        # fp16 scales the loss so that small gradients survive; bf16 has fp32's exponent range and needs none.
        self.loss_scale = DynamicLossScale() if cfg.run.precision == "fp16" else None
        self._loss_scale_array = mx.nd.ones((1,), ctx=contexts[0])
        self._last_result: StepResult | None = None
        self._params = [p for p in self.online.collect_params().values() if p.grad_req != "null"]
        self._norm_and_scale = GradientNormAndScale(cfg.optim.max_grad_norm)
        self._norm_and_scale.hybridize(static_alloc=True, static_shape=True)
        self.acting_snapshot = None
        self.acting_network = self.online
        if self.overlap:
            self.acting_snapshot = networks.build(cfg.network, spec, prefix="acting_", per_action=per_action)
            self.acting_snapshot.initialize(initializer, ctx=contexts[0])
            self.acting_snapshot.collect_params().setattr("grad_req", "null")
            if cfg.run.hybridize:
                self.acting_snapshot.hybridize(static_alloc=True)
            self.acting_snapshot(dummy)
            copy_params(self.online, self.acting_snapshot)
            self.acting_network = self.acting_snapshot
        self.learner_steps = 0
        # Noisy layers (network.noisy) get new noise before every update (online and target networks
        # independently) and before every action; evaluation silences them (``without_noise``).
        self._noisy = cfg.network.noisy
        self._noise_rng = np.random.default_rng(cfg.run.seed + 11)
        self._acting_noise = True
        self._numpy_policy = (networks.NumpyMLP(self.acting_network) if isinstance(self.online, networks.MLP)
                              else None)
        self._policy_stale = True

    def _loss_blocks(self, online, target, hybridize: bool):
        """The TD-target graph (run without recording) and the loss graph (recorded) over these networks."""
        cfg, model = self.cfg, self.return_model
        if model.distributional:
            blocks = (DistributionalTDTarget(online, target, model, self.spec.n_actions, double_q=cfg.agent.double_q),
                      DistributionalLoss(online, model, self.spec.n_actions, huber_delta=cfg.optim.huber_delta))
        else:
            blocks = (TDTarget(online, target, double_q=cfg.agent.double_q),
                      DQNLoss(online, loss=cfg.optim.loss, huber_delta=cfg.optim.huber_delta))
        if hybridize:
            for block in blocks:
                block.hybridize(static_alloc=True, static_shape=True)
        return blocks

    # --- acting -----------------------------------------------------------------------------------

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values (the expected return under a distributional algorithm) of the acting network.

        A noisy network acts with new noise at every call, or with none inside ``without_noise``.
        """
        return self.return_model.expected_q(self._outputs(obs), self.spec.n_actions)

    def _outputs(self, obs: np.ndarray) -> np.ndarray:
        """The acting network's outputs (batch, n_actions * per_action) for ``obs``."""
        if self._numpy_policy is not None:
            if self._policy_stale:
                self._load_numpy_copy(self._numpy_policy)
                self._policy_stale = False
            if self._noisy:
                if self._acting_noise:
                    self._numpy_policy.resample(self._noise_rng)
                else:
                    self._numpy_policy.silence()
            return self._numpy_policy(obs)
        if self._noisy:
            if self._acting_noise:
                networks.resample_noise(self.acting_network, self._noise_rng)
            else:
                networks.silence_noise(self.acting_network)
        return self.acting_network(mx.nd.array(obs, ctx=self.contexts[0], dtype=obs.dtype)).asnumpy()

    @contextlib.contextmanager
    def without_noise(self):
        """Act with the noisy layers' means inside (deterministic evaluation); new noise again after."""
        self._acting_noise = False
        try:
            yield
        finally:
            self._acting_noise = True

    def _resample_for_update(self) -> None:
        """New noise in the online and the target network, before an update (Fortunato et al. 2018)."""
        if self._noisy:
            networks.resample_noise(self.online, self._noise_rng)
            if self.target is not None:
                networks.resample_noise(self.target, self._noise_rng)

    def _load_numpy_copy(self, policy: networks.NumpyMLP) -> None:
        """Copy the parameters of the block ``policy`` mirrors into it: one device read."""
        arrays = [p.list_data()[0].as_in_context(self.contexts[0]).reshape((-1,)) for p in policy.parameters()]
        policy.load(mx.nd.concat(*arrays, dim=0).asnumpy())

    def refresh_policy(self) -> None:
        if self.acting_snapshot is not None:
            copy_params(self.online, self.acting_snapshot)
            self._policy_stale = True

    # --- learning ---------------------------------------------------------------------------------

    @staticmethod
    def _inputs(batch: Batch, ctx: mx.Context, global_batch: int):
        """The loss graph's three inputs on ``ctx``; weights divided by the global batch size."""
        scalars = np.stack([batch.actions.astype(np.float32), batch.rewards, batch.discounts,
                            batch.weights / global_batch], axis=1).astype(np.float32)
        # Zero-copy views: `nd.array` would cost one engine round trip (~140 us here) per array.
        return (mx.nd.from_numpy(np.ascontiguousarray(batch.obs), zero_copy=True).as_in_context(ctx),
                mx.nd.from_numpy(np.ascontiguousarray(batch.next_obs), zero_copy=True).as_in_context(ctx),
                mx.nd.from_numpy(scalars, zero_copy=True).as_in_context(ctx))

    def _forward_backward(self, batch: Batch):
        """Loss, Q(s, a) and |TD| per device (lists), with the gradients left in the parameters."""
        obs, next_obs, scalars = self._inputs(batch, self.contexts[0], len(batch.actions))
        targets = self.target_block(next_obs, scalars)  # not recorded: no backward pass over s'
        with autograd.record():
            losses, q_taken, td_abs = self.loss_block(obs, scalars, targets)
        self._backward([losses])
        return [losses], [q_taken], [td_abs]

    def _backward(self, losses: list) -> None:
        """Backward from the per-device losses, multiplied by the loss scale where there is one (fp16)."""
        if self.loss_scale is None:
            autograd.backward(losses)
            return
        if self._last_result is not None:  # the previous step's outcome sets this step's scale
            self.loss_scale.observe(not self._last_result.skipped)
        self._loss_scale_array[:] = self.loss_scale.scale  # what the update divides out
        autograd.backward(losses, head_grads=[mx.nd.full(l.shape, self.loss_scale.scale, ctx=l.context)
                                              for l in losses])

    def _reduce_gradients(self) -> None:
        """Combine gradients across devices (nothing to do on one)."""

    def step(self, batch: Batch) -> StepResult:
        self._resample_for_update()
        losses, q_taken, td_abs = self._forward_backward(batch)
        self._reduce_gradients()
        self._last_result = self._apply_update(losses, q_taken, td_abs)
        return self._last_result

    def timed_step(self, batch: Batch) -> tuple[StepResult, list[dict]]:
        """``step`` with a wait after each phase, for per-device figures (milliseconds).

        Per device: ``forward_backward_ms`` until its gradients were ready, ``idle_ms`` it then waited for
        the slowest device, and the shared ``kvstore_ms`` (gradient reduction) and ``update_ms``. The waits
        cost throughput, so the loop times one update per log window, not all of them.
        """
        start = time.perf_counter()
        self._resample_for_update()
        losses, q_taken, td_abs = self._forward_backward(batch)
        ready = []
        for ctx in self.contexts:
            for param in self._params:
                if ctx in param.list_ctx():
                    param.grad(ctx).wait_to_read()
            ready.append(time.perf_counter() - start)
        reduce_start = time.perf_counter()
        self._reduce_gradients()
        mx.nd.waitall()
        update_start = time.perf_counter()
        result = self._last_result = self._apply_update(losses, q_taken, td_abs)
        mx.nd.waitall()
        end = time.perf_counter()
        return result, device_figures(self.contexts, ready, update_start - reduce_start, end - update_start,
                                      end - start)

    def _apply_update(self, losses, q_taken, td_abs) -> StepResult:
        """Check the gradient, clip it, update, and refresh the target network when due (``apply_update_rule``)."""
        return apply_update_rule([self], self._count_update, losses, q_taken, td_abs)

    def _skips_on_device(self) -> bool:
        """Whether the optimizer clips and skips non-finite steps on the device (Adam), so no step waits."""
        return all(isinstance(trainer._optimizer, MultiTensorAdam) for trainer in self.trainers)

    def _count_update(self) -> None:
        self.learner_steps += 1
        if not self.overlap:
            self._policy_stale = True
        if self.learner_steps % self.cfg.agent.target_update_every == 0:
            self.sync_target()

    def _grad_norm_and_scale(self) -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
        """Global gradient norm and clip scale (see ``base.clip_scale``) as (1,) NDArrays, not waited for."""
        # After a data-parallel allreduce every device holds the same gradient; the first one's is read.
        return self._norm_and_scale(self._loss_scale_array, *[param.grad(self.contexts[0]) for param in self._params])

    def _read_grad_norm_and_scale(self) -> tuple[float, float]:
        """Global gradient norm and update scale: the step's one blocking read, which tells whether it is finite."""
        norm, scale = self._grad_norm_and_scale()
        return float(norm.asscalar()), float(scale.asscalar())

    def _scale_gradients(self, scale: float) -> None:
        """Multiply every gradient by ``scale`` (the clip factor and the inverse loss scale) where it is not 1."""
        if scale != 1.0:
            for param in self._params:
                for grad in param.list_grad():
                    grad *= scale

    def sync_target(self) -> None:
        copy_params(self.online, self.target)

    # --- state ------------------------------------------------------------------------------------

    def _optimizer_files(self) -> list[str]:
        if len(self.trainers) == 1:
            return ["optimizer"]
        return [f"optimizer-stage{i}" for i in range(len(self.trainers))]

    def _blocks(self) -> dict:
        blocks = {"online": self.online}
        if self.target is not None:
            blocks["target"] = self.target
        if self.acting_snapshot is not None:
            blocks["acting"] = self.acting_snapshot
        return blocks

    NOISE_FILE = "noise_rng.json"  # the noisy layers' generator (network.noisy), for an exact resume

    def save(self, directory: str) -> None:
        save_params(self._blocks(), directory)
        for trainer, name in zip(self.trainers, self._optimizer_files()):
            save_trainer_states(trainer, directory, name)
        if self.cfg.network.noisy:
            with open(os.path.join(directory, self.NOISE_FILE), "w") as f:
                json.dump(self._noise_rng.bit_generator.state, f)

    def load(self, directory: str, with_optimizer: bool = True) -> None:
        load_params(self._blocks(), directory)
        if with_optimizer:
            for trainer, name in zip(self.trainers, self._optimizer_files()):
                load_trainer_states(trainer, directory, name)
        noise = os.path.join(directory, self.NOISE_FILE)
        if self.cfg.network.noisy and os.path.exists(noise):  # (a checkpoint from before it was saved has none)
            try:
                with open(noise) as f:
                    self._noise_rng.bit_generator.state = json.load(f)
            except (OSError, ValueError, TypeError, KeyError) as e:
                raise UserError(f"{directory}: {self.NOISE_FILE} is corrupt ({type(e).__name__})") from None
        self._policy_stale = True
