"""The learner of one rank of a Horovod job: its gradients averaged over every rank by ring allreduce.

Each rank of the job is a replica: its own collector, replay and exploration (its rung of the epsilon ladder
over the ranks, as a parameter-server worker's), and a learner whose gradient, at every update, is the mean
of every rank's (``horovod.mxnet.DistributedTrainer``). After the allreduce every rank holds the same gradient,
so the same norm, clip factor, non-finite skip and optimizer step: the parameters stay identical on every
rank with no server in between, and the target refresh (counted in updates) happens at the same update
everywhere. Rank 0's parameters (fresh, or loaded from its checkpoint on a resume) are broadcast to the others
before the first update.

Every rank must make the same collective calls in the same order: each update's allreduce, each vote to stop
(``agree_to_stop``: a signal, the time budget or rank 0's solved evaluation on any rank stops all at the same
update), and each log's gathering of figures at rank 0 (``exchange_figures``). The vector collector gives
that: every rank steps ``env.num_envs`` environments per turn, and updates, votes and logs at the same counts
of env steps.
"""
from __future__ import annotations

import statistics
import time

import mxnet as mx
import numpy as np

from ..config import Config
from ..envs import EnvSpec
from ..errors import JobPeerLost
from ..parallel import horovod
from .optimizers import make_optimizer
from .single import OneDevice, ReplayLearner


class HorovodAllreduce(OneDevice):
    """The placement of a learner on one rank of a Horovod job: gradients averaged over the ranks, then the
    update of one device (``single.apply_update_rule``), and the rank's part in the job (``job``).

    The exchange of one update (the allreduce of every gradient, waited for) is timed on every
    ``EXCHANGE_TIMED_EVERY``-th update, after waiting for the backward pass, so that it measures the exchange
    alone.

    Args:
        ctx: this rank's device.
    """

    EXCHANGE_TIMED_EVERY = 20  # updates between timed exchanges (a timed one waits for the backward pass first)
    VOTE_EVERY = 32  # env steps (of each rank) between votes to stop

    def __init__(self, ctx: mx.Context):
        super().__init__(ctx)
        self.hvd = horovod.require()
        self.rank, self.num_workers = self.hvd.rank(), self.hvd.size()
        self.nets = None
        self._broadcast_done = False
        self._voted_round = 0  # env steps // VOTE_EVERY at this rank's last vote to stop
        self.exchanges = 0
        self._exchanges_ms: list[float] = []

    @property
    def job(self):
        """A rank of a Horovod job: ``agree_to_stop``, ``stops_together``, ``leave``, ``traffic_figures``,
        ``exchange_figures``, ``lost_part``."""
        return self

    stops_together = True  # every rank stops at one agreed update

    def place(self, nets, cfg: Config):
        self.nets = nets
        return super().place(nets, cfg)

    def trainers(self, nets, cfg: Config) -> list:
        # Each rank's gradient is divided by the number of ranks before the sum (gradient_predivide_factor):
        # the gradients left in the parameters are the mean over the ranks, whose norm is the one clipping reads
        # on one device. (Horovod's own default sums them and divides in the optimizer's rescale_grad instead.)
        return [self.hvd.DistributedTrainer(nets.online.collect_params(), make_optimizer(cfg.optim),
                                            gradient_predivide_factor=float(self.num_workers), prefix="grad.")]

    def _broadcast(self) -> None:
        """Rank 0's online and target parameters become every rank's (fresh, or as loaded on a resume)."""
        for name, block in (("online", self.nets.online), ("target", self.nets.target)):
            # Copies in MXNet's default layout: a convolution's weights may be held in oneDNN's layout after a
            # forward pass, which Horovod's operations cannot read.
            params = block.collect_params()
            arrays = {key: mx.nd.array(param.data(self.contexts[0]).asnumpy(), ctx=self.contexts[0])
                      for key, param in params.items()}
            self.hvd.broadcast_parameters(arrays, root_rank=0, prefix=f"{name}.")
            for key, param in params.items():
                param.set_data(arrays[key])
        self._wait(lambda: [p.data(self.contexts[0]) for p in self.nets.params], "the broadcast of parameters")
        self.nets.updated()
        self.nets.refresh_policy()
        self._broadcast_done = True

    def forward_backward(self, batch, target_block, loss_block, backward):
        if not self._broadcast_done:
            self._broadcast()
        return super().forward_backward(batch, target_block, loss_block, backward)

    def reduce_gradients(self, trainers: list) -> None:
        """Average the gradients over the ranks, and wait for them: an allreduce that failed (a rank is gone)
        must not reach the parameters, which the run's last checkpoint still has to save."""
        grads = [param.grad(self.contexts[0]) for param in self.nets.params]
        timed = self.exchanges % self.EXCHANGE_TIMED_EVERY == 1
        if timed:
            self._wait(lambda: grads, "the backward pass")
            start = time.perf_counter()
        trainers[0].allreduce_grads()  # DistributedTrainer's allreduce (trainer.update alone skips it)
        self._wait(lambda: grads, "the gradients' allreduce")
        if timed:
            self._exchanges_ms.append(1000.0 * (time.perf_counter() - start))
        self.exchanges += 1

    def _wait(self, arrays, what: str) -> None:
        """Wait for ``arrays()``; a failed collective (another rank ended) becomes ``JobPeerLost``."""
        try:
            for array in arrays():
                array.wait_to_read()
        except mx.base.MXNetError as error:
            raise self._peer_lost(what, error) from None

    # Words of the errors a collective fails with when another rank has ended: Gloo's, from the failed transfer,
    # and Horovod's, for every collective after its background loop ended.
    FAILURE_WORDS = ("Horovod has been shut down", "Connection reset by peer", "Connection closed by peer",
                     "Read error", "Write error", "Broken pipe")

    def lost_part(self, error: Exception) -> JobPeerLost | None:
        """``JobPeerLost`` if ``error`` is a failed collective's, seen wherever MXNet carried it (any array the
        collective wrote, any computed from those, any wait for them all); None for any other error."""
        if isinstance(error, mx.base.MXNetError) and any(w in str(error) for w in self.FAILURE_WORDS):
            return self._peer_lost("a computation after a collective", error)
        return None

    def _peer_lost(self, what: str, error: Exception) -> JobPeerLost:
        """The error of a failed collective, once MXNet's engine holds no failure any more.

        MXNet keeps a failed operation's error on every array it wrote and computed from them, and in the
        engine, which raises it at the next wait for everything: the checkpoint that follows failed on it (seen
        here when a rank was killed under load). A wait for everything raises the first stored error and clears them
        all; no collective is started after this, so the next wait raises none (three is a bound, not a count).
        """
        for _ in range(3):
            try:
                mx.nd.waitall()
                break
            except mx.base.MXNetError:
                continue
        return JobPeerLost(f"rank {self.rank}: {what} failed: {JobPeerLost.WORDS} ({_first_line(error)})")

    def agree_to_stop(self, wish: bool, env_steps: int, budget_spent: bool) -> bool:
        """Whether every rank stops now.

        Every rank counts the same env steps turn after turn (``env.num_envs`` a turn; a turn in which an
        environment only reset counts none, on each rank at its own time), so every rank spends its share of
        the budget at the same count: then all stop with no word. Any other wish (a signal, the time budget,
        rank 0's solved evaluation) is a vote: the ranks' wishes summed by an allreduce, taken when the count
        of env steps crosses a multiple of ``VOTE_EVERY``, which every rank does at the same counts. A wish
        waits for the next vote. (A vote at every turn of CartPole's loop ran 71 to 97 env steps/s a rank where
        one every 32 env steps ran 85 to 134, both beside two MinAtar runs.)
        """
        if budget_spent:
            self._end_horovod()
            return True
        if env_steps // self.VOTE_EVERY == self._voted_round:
            return False
        self._voted_round = env_steps // self.VOTE_EVERY
        try:
            votes = self.hvd.allreduce(mx.nd.full((1,), float(wish), ctx=self.contexts[0]), average=False,
                                       name="stop")
            agreed = float(votes.asscalar()) > 0
        except mx.base.MXNetError as error:
            raise self._peer_lost("the vote to stop", error) from None
        if agreed:
            self._end_horovod()
        return agreed

    def _end_horovod(self) -> None:
        """No collective follows (the ranks only checkpoint now): end Horovod on every rank together, while every
        rank is there. A rank that exited without it would show the others' Horovod a broken connection."""
        self.hvd.shutdown()

    def leave(self) -> None:
        """Nothing to wait for: Horovod ended when the ranks agreed to stop."""

    def restore_notes(self) -> list[str]:
        return []

    def traffic_figures(self) -> dict:
        """Since the last call: the median exchange (allreduce) of one update in ms, and the updates exchanged.
        Synchronous: every gradient is computed on the parameters every rank holds (staleness 0)."""
        exchanges, self._exchanges_ms = self._exchanges_ms, []
        return {"staleness": 0.0, "staleness_max": 0.0,
                "round_trip_ms": statistics.median(exchanges) if exchanges else float("nan"),
                "pushes": self.exchanges}

    def exchange_figures(self, figures: dict) -> list[dict]:
        """Gather every rank's ``figures`` at rank 0 (an allgather: every rank calls it at the same log)."""
        row = np.array([[float(v) for v in figures.values()]], dtype=np.float32)
        try:
            # Horovod's allgather waits for its result itself: a lost rank fails the call, not only the read.
            table = self.hvd.allgather(mx.nd.array(row, ctx=self.contexts[0]), name="figures").asnumpy()
        except mx.base.MXNetError as error:
            raise self._peer_lost("gathering the figures", error) from None
        if self.rank != 0:
            return []
        return [{"rank": rank, **dict(zip(figures, map(float, values)))} for rank, values in enumerate(table)]


def _first_line(error: Exception) -> str:
    """MXNet's own line of an MXNetError (its text begins with a C++ traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    own = [line for line in lines if line.startswith("MXNetError:")]
    return (own[0][len("MXNetError:"):].strip() if own else lines[-1] if lines else type(error).__name__)[:200]


class HorovodLearner(ReplayLearner):
    """The replay learner of one rank of a Horovod job (``HorovodAllreduce``).

    Args:
        cfg: the run's configuration.
        spec: the environment's spaces.
        ctx: this rank's device.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context):
        super().__init__(cfg, spec, HorovodAllreduce(ctx))

    @property
    def rank(self) -> int:
        return self.placement.rank
