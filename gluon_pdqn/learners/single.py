"""The replay learner: networks, an algorithm (the TD target and loss) and a placement, put together.

``ReplayLearner`` is what every replay placement shares: the networks (``QNetworks``), the algorithm
(``TDLearning``: dqn, c51 or qr-dqn) and one update verb (``step``). How a batch's gradient is computed and
applied over devices is the placement's: ``OneDevice`` here, ``DataParallel``, ``ModelParallel`` and
``ParameterServer`` in their modules. ``SingleLearner`` is the replay learner on one device: the baseline
every parallel placement is measured against.
"""
from __future__ import annotations

import math
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..config import Config
from ..envs import EnvSpec
from ..replay import Batch
from .algorithms import TDLearning
from .base import (DynamicLossScale, GradientNormAndScale, Learner, StepResult, device_figures, load_params,
                   load_trainer_states, save_params, save_trainer_states)
from .optimizers import MultiTensorAdam, make_optimizer
from .qnets import QNetworks


def batch_inputs(batch: Batch, ctx: mx.Context, global_batch: int):
    """The loss graph's three inputs on ``ctx``; weights divided by the global batch size."""
    scalars = np.stack([batch.actions.astype(np.float32), batch.rewards, batch.discounts,
                        batch.weights / global_batch], axis=1).astype(np.float32)
    # Zero-copy views: `nd.array` would cost one engine round trip (~140 us here) per array.
    return (mx.nd.from_numpy(np.ascontiguousarray(batch.obs), zero_copy=True).as_in_context(ctx),
            mx.nd.from_numpy(np.ascontiguousarray(batch.next_obs), zero_copy=True).as_in_context(ctx),
            mx.nd.from_numpy(scalars, zero_copy=True).as_in_context(ctx))


class Gradients:
    """The trained parameters' gradients and the optimizers that apply them, with their global norm.

    Args:
        params: the trained parameters.
        trainers: the Gluon Trainers over them (none where the kvstore servers run the optimizer).
        ctx: the device whose copy of the gradients is read (after an allreduce every device holds the same).
        max_grad_norm: ``optim.max_grad_norm`` (0: no clipping).
        norm_and_scale: where the gradients live on several devices (model parallel), the function that gives
            (norm, scale) from the loss scale array; default: one compiled graph on ``ctx``.
    """

    def __init__(self, params: list, trainers: list, ctx: mx.Context, max_grad_norm: float, norm_and_scale=None):
        self.params, self.trainers, self.ctx = params, trainers, ctx
        self.loss_scale_array = mx.nd.ones((1,), ctx=ctx)  # what the backward pass multiplied the loss by (fp16)
        self._graph = GradientNormAndScale(max_grad_norm)
        self._graph.hybridize(static_alloc=True, static_shape=True)
        self._norm_and_scale = norm_and_scale

    def skips_on_device(self) -> bool:
        """Whether the optimizer clips and skips non-finite steps on the device (Adam), so no step waits."""
        return bool(self.trainers) and all(isinstance(t._optimizer, MultiTensorAdam) for t in self.trainers)

    def norm_and_scale(self) -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
        """Global gradient norm and clip scale (see ``base.clip_scale``) as (1,) NDArrays, not waited for."""
        if self._norm_and_scale is not None:
            return self._norm_and_scale(self.loss_scale_array)
        return self._graph(self.loss_scale_array, *[param.grad(self.ctx) for param in self.params])

    def read_norm_and_scale(self) -> tuple[float, float]:
        """Global gradient norm and update scale: the step's one blocking read, which tells whether it is finite."""
        norm, scale = self.norm_and_scale()
        return float(norm.asscalar()), float(scale.asscalar())

    def scale(self, factor: float) -> None:
        """Multiply every gradient by ``factor`` (the clip factor and the inverse loss scale) where it is not 1."""
        if factor != 1.0:
            for param in self.params:
                for grad in param.list_grad():
                    grad *= factor

    def update(self, scale=None) -> None:
        """Apply the optimizers; ``scale`` (a (1,) NDArray): Adam's on-device gradient scale, NaN to skip."""
        for trainer in self.trainers:
            if scale is not None:
                trainer._optimizer.gradient_scale = scale
            trainer.update(1)


def apply_update_rule(parts: list[Gradients], count_update, losses, q_taken, td_abs) -> StepResult:
    """The update rule of the replay learners, in one place: clip, skip a non-finite step, update, count.

    ``parts`` hold the gradients: one learner's, or an ensemble's members' (each clipped by its own norm; a
    non-finite gradient in any skips all). With Adam (``MultiTensorAdam``) nothing waits: the norms and clip
    scales stay on the device and the update kernel itself skips a step whose scale is NaN, so the update is
    counted before it is known whether it applied (``StepResult.counted``; ``Learner.settle`` uncounts it).
    Other optimizers read the norm (one wait) and skip on the host. ``count_update`` counts an applied update
    and refreshes the target network when it is due. The ps placement differs: its optimizer runs on the
    kvstore servers (see ``ParameterServer``).
    """
    if all(part.skips_on_device() for part in parts):
        norms_and_scales = [part.norm_and_scale() for part in parts]
        if len(parts) == 1:
            grad_norm, scale = norms_and_scales[0]
            scales = [scale]  # NaN already when the norm is not finite
        else:
            first = parts[0].ctx
            grad_norm = mx.nd.add_n(*[(n * n).as_in_context(first) for n, _ in norms_and_scales]).sqrt()
            all_finite_or_nan = grad_norm * 0 + 1  # one part's non-finite gradient skips every part
            scales = [scale * all_finite_or_nan.as_in_context(scale.context) for _, scale in norms_and_scales]
        for part, scale in zip(parts, scales):
            part.update(scale)
        count_update()
        return StepResult(grad_norm, losses, q_taken, td_abs, counted=True)
    norms_and_scales = [part.read_norm_and_scale() for part in parts]
    grad_norm = norms_and_scales[0][0] if len(parts) == 1 else math.sqrt(sum(n * n for n, _ in norms_and_scales))
    if not math.isfinite(grad_norm):
        return StepResult(grad_norm, losses, q_taken, td_abs)
    for part, (_, scale) in zip(parts, norms_and_scales):
        part.scale(scale)
        part.update()
    count_update()
    return StepResult(grad_norm, losses, q_taken, td_abs)


class OneDevice:
    """The placement of a learner on one device: the batch whole, the gradient as it is.

    Every placement gives the same few things (``DataParallel``, ``ModelParallel`` and ``ParameterServer`` too):
    ``contexts`` (its devices) and ``build_contexts`` (where the networks are initialized), ``place`` (the
    networks the loss graphs compute with, and whether those graphs hybridize), ``trainers``,
    ``forward_backward``, ``reduce_gradients``, ``norm_and_scale`` (None: one graph on the first device),
    ``apply_update``, ``job`` (a parameter-server job's role, or None) and ``restore_notes``.

    Args:
        ctx: the device.
    """

    job = None

    def __init__(self, ctx: mx.Context):
        self.contexts = [ctx]
        self.build_contexts = self.contexts

    @staticmethod
    def place(nets: QNetworks, cfg: Config):
        return nets.online_compute, nets.target_compute, cfg.run.hybridize

    @staticmethod
    def trainers(nets: QNetworks, cfg: Config) -> list:
        return [gluon.Trainer(nets.online.collect_params(), make_optimizer(cfg.optim), update_on_kvstore=False)]

    def forward_backward(self, batch: Batch, target_block, loss_block, backward):
        """Loss, Q(s, a) and |TD| per device (lists), with the gradients left in the parameters."""
        obs, next_obs, scalars = batch_inputs(batch, self.contexts[0], len(batch.actions))
        targets = target_block(next_obs, scalars)  # not recorded: no backward pass over s'
        with autograd.record():
            losses, q_taken, td_abs = loss_block(obs, scalars, targets)
        backward([losses])
        return [losses], [q_taken], [td_abs]

    def reduce_gradients(self, trainers: list) -> None:
        """Combine gradients across devices (nothing to do on one)."""

    norm_and_scale = None

    @staticmethod
    def apply_update(learner: "ReplayLearner", losses, q_taken, td_abs) -> StepResult:
        """Check the gradient, clip it, update, and refresh the target network when due (``apply_update_rule``)."""
        return apply_update_rule([learner.gradients], learner.count_update, losses, q_taken, td_abs)

    @staticmethod
    def restore_notes() -> list[str]:
        return []


class ReplayLearner(Learner):
    """DQN (or C51, QR-DQN: ``agent.algo``) from replay batches: networks, algorithm and placement put together.

    Args:
        cfg: the run's configuration (network, optimizer, agent sections are read).
        spec: the environment's spaces.
        placement: how the update is spread over devices (``OneDevice``, ``DataParallel``, ``ModelParallel``,
            ``ParameterServer``).
        noise_seed: seed of the noisy layers' generator (default: ``run.seed + 11``; an ensemble gives each
            member its own).
    """

    def __init__(self, cfg: Config, spec: EnvSpec, placement, noise_seed=None):
        self.cfg, self.spec, self.placement = cfg, spec, placement
        self.contexts = placement.contexts
        self.algorithm = TDLearning(cfg, spec.n_actions)
        self.nets = QNetworks(cfg, spec, placement.build_contexts, self.algorithm.return_model.per_action,
                              noise_seed=noise_seed)
        online, target, hybridize = placement.place(self.nets, cfg)
        self.target_block, self.loss_block = self.algorithm.graphs(online, target, hybridize)
        # fp16 scales the loss so that small gradients survive; bf16 has fp32's exponent range and needs none.
        self.loss_scale = DynamicLossScale() if cfg.run.precision == "fp16" else None
        self._last_result: StepResult | None = None
        self.gradients = Gradients(self.nets.params, placement.trainers(self.nets, cfg), self.contexts[0],
                                   cfg.optim.max_grad_norm, placement.norm_and_scale)
        self.learner_steps = 0

    # --- what the learner is made of, by name (export, tests) -------------------------------------

    @property
    def online(self):
        return self.nets.online

    @property
    def target(self):
        return self.nets.target

    @property
    def trainers(self) -> list:
        return self.gradients.trainers

    @property
    def return_model(self):
        return self.algorithm.return_model

    @property
    def job(self):
        return self.placement.job

    def restore_notes(self) -> list[str]:
        return self.placement.restore_notes()

    # --- acting -----------------------------------------------------------------------------------

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values (the expected return under a distributional algorithm) of the acting network.

        A noisy network acts with new noise at every call, or with none inside ``without_noise``.
        """
        return self.algorithm.return_model.expected_q(self.nets.outputs(obs), self.spec.n_actions)

    def without_noise(self):
        return self.nets.without_noise()

    def refresh_policy(self) -> None:
        self.nets.refresh_policy()

    # --- learning ---------------------------------------------------------------------------------

    def backward(self, losses: list) -> None:
        """Backward from the per-device losses, multiplied by the loss scale where there is one (fp16)."""
        if self.loss_scale is None:
            autograd.backward(losses)
            return
        if self._last_result is not None:  # the previous step's outcome sets this step's scale
            self.loss_scale.observe(not self._last_result.skipped)
        self.gradients.loss_scale_array[:] = self.loss_scale.scale  # what the update divides out
        autograd.backward(losses, head_grads=[mx.nd.full(l.shape, self.loss_scale.scale, ctx=l.context)
                                              for l in losses])

    def forward_backward(self, batch: Batch):
        """Loss, Q(s, a) and |TD| per device (lists), with the gradients left in the parameters."""
        return self.placement.forward_backward(batch, self.target_block, self.loss_block, self.backward)

    def step(self, batch: Batch) -> StepResult:
        """One gradient update from a replay batch; refreshes the target network when it is due."""
        self.nets.resample_for_update()
        losses, q_taken, td_abs = self.forward_backward(batch)
        self.placement.reduce_gradients(self.trainers)
        self._last_result = self.placement.apply_update(self, losses, q_taken, td_abs)
        return self._last_result

    def timed_step(self, batch: Batch) -> tuple[StepResult, list[dict]]:
        """``step`` with a wait after each phase, for per-device figures (milliseconds).

        Per device: ``forward_backward_ms`` until its gradients were ready, ``idle_ms`` it then waited for
        the slowest device, and the shared ``kvstore_ms`` (gradient reduction) and ``update_ms``. The waits
        cost throughput, so the loop times one update per log window, not all of them.
        """
        start = time.perf_counter()
        self.nets.resample_for_update()
        losses, q_taken, td_abs = self.forward_backward(batch)
        ready = []
        for ctx in self.contexts:
            for param in self.nets.params:
                if ctx in param.list_ctx():
                    param.grad(ctx).wait_to_read()
            ready.append(time.perf_counter() - start)
        reduce_start = time.perf_counter()
        self.placement.reduce_gradients(self.trainers)
        mx.nd.waitall()
        update_start = time.perf_counter()
        result = self._last_result = self.placement.apply_update(self, losses, q_taken, td_abs)
        mx.nd.waitall()
        end = time.perf_counter()
        return result, device_figures(self.contexts, ready, update_start - reduce_start, end - update_start,
                                      end - start)

    def count_update(self) -> None:
        """An update applied: count it, act with it, and refresh the target network when it is due."""
        self.learner_steps += 1
        self.nets.updated()
        if self.learner_steps % self.cfg.agent.target_update_every == 0:
            self.sync_target()

    def sync_target(self) -> None:
        self.nets.sync_target()

    # --- state ------------------------------------------------------------------------------------

    def _optimizer_files(self) -> list[str]:
        if len(self.trainers) == 1:
            return ["optimizer"]
        return [f"optimizer-stage{i}" for i in range(len(self.trainers))]

    def save(self, directory: str) -> None:
        save_params(self.nets.blocks(), directory)
        for trainer, name in zip(self.trainers, self._optimizer_files()):
            save_trainer_states(trainer, directory, name)
        self.nets.save_noise(directory)

    def load(self, directory: str, with_optimizer: bool = True) -> None:
        load_params(self.nets.blocks(), directory)
        if with_optimizer:
            for trainer, name in zip(self.trainers, self._optimizer_files()):
                load_trainer_states(trainer, directory, name)
        self.nets.loaded(directory)


class SingleLearner(ReplayLearner):
    """The replay learner on one device (``OneDevice``).

    Args:
        cfg: the run's configuration.
        spec: the environment's spaces.
        ctx: the device to train on.
        noise_seed: see ``ReplayLearner``.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context, noise_seed=None):
        super().__init__(cfg, spec, OneDevice(ctx), noise_seed=noise_seed)
