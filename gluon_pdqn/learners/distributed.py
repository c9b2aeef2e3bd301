"""DQN on one worker of a parameter-server job (Gorila, Nair et al. 2015) over MXNet's dist kvstore.

Each worker acts, keeps its own replay and computes gradients like the single learner; it pushes them to the
kvstore servers, which hold the parameters and apply the optimizer, and pulls the new parameters back
(``run.push_every``, ``run.pull_every``). In ``dist_sync`` the servers sum one push from every worker before they
update, so every worker holds the same parameters after each step; in ``dist_async`` they apply each push as it
arrives.

Three more keys carry bookkeeping (see ``parallel.kvstore.ServerOptimizer``): an update counter, pulled with the
parameters, which measures how stale each worker's gradients are; a board of every worker's figures, which
rank 0 pulls into the run directory; and the workers' votes to stop, with which dist_sync workers agree on the
update at which they all stop.
"""
from __future__ import annotations

import math
import statistics
import time

import mxnet as mx
import numpy as np

from .. import metrics
from ..config import Config
from ..envs import EnvSpec
from ..parallel.kvstore import ServerOptimizer
from .base import StepResult
from .optimizers import make_optimizer
from .single import OneDevice, ReplayLearner


class ParameterServer(OneDevice):
    """The placement of a learner on one worker of a parameter-server job: its optimizer on the kvstore servers,
    its traffic batched, and the worker's part in the job (``job``).

    Every update computes and clips a gradient here and adds it to a local sum; every ``run.push_every``
    updates the sum is pushed (the servers apply the optimizer to its mean), and every ``run.pull_every``
    pushes the parameters are pulled back. With both at 1 (the default) each update is one push and one
    pull. Between pulls the worker computes gradients on parameters it has not refreshed: that is what
    batching the traffic costs.

    Staleness (``dist_async``): each push also adds one to the servers' update counter, and each pull brings
    the count back. Between two pulls the count grows by this worker's pushes and by the other workers'.
    The last push of the interval was computed on parameters that missed all of them but itself, so
    ``count_now - count_before - 1`` bounds from above the number of updates its gradients missed. The counts
    are read when the figures are logged, not at each pull, which would wait. ``dist_sync`` needs no
    counter (and saves its traffic): there a gradient misses exactly the ``pull_every - 1`` pushes before it.
    ``run.measure_staleness=false`` saves it in ``dist_async`` too.

    The round trip of one push and pull is timed on every ``ROUND_TRIP_EVERY``-th pull, after waiting for the
    gradients; in ``dist_sync`` it includes waiting for every other worker's push of that round.

    Args:
        cfg: the run's configuration.
        ctx: this worker's device.
        kvstore: the job's ``dist_sync`` or ``dist_async`` kvstore.
        posting_actors: the apex actors of this worker, whose figures it posts to rank 0 (every worker of a job
            has the same command line, so the same number).
    """

    ROUND_TRIP_EVERY = 20  # pulls between timed round trips (a timed one waits, so not every one)
    BOARD_WIDTH = 16  # figures a worker can report (plus the "reporting" column), before its actors'

    def __init__(self, cfg: Config, ctx: mx.Context, kvstore, posting_actors: int = 0):
        super().__init__(ctx)
        self.cfg, self.kvstore = cfg, kvstore
        self.params: list = []  # the trained parameters, one key each (``place``)
        self.board_width = self.BOARD_WIDTH + len(metrics.ACTOR_BOARD) * posting_actors  # see metrics.worker_board

    @staticmethod
    def trainers(nets, cfg: Config) -> list:
        return []  # no local optimizer: the servers run it

    def place(self, nets, cfg: Config):
        """Set up the keys and the servers' optimizer for ``nets``' trained parameters."""
        kvstore, ctx = self.kvstore, self.contexts[0]
        self.params = nets.params
        self.push_every, self.pull_every = cfg.run.push_every, cfg.run.pull_every
        optimizer = make_optimizer(cfg.optim, on_kvstore_servers=True)
        # A push carries the sum of push_every gradients; dist_sync also sums one push per worker.
        workers = kvstore.num_workers if kvstore.type == "dist_sync" else 1
        optimizer.rescale_grad = 1.0 / (self.push_every * workers)
        self._keys = list(range(len(self.params)))
        self._counter_key, self._board_key, self._vote_key = len(self._keys), len(self._keys) + 1, len(self._keys) + 2
        self._measures_staleness = kvstore.type == "dist_async" and cfg.run.measure_staleness
        self._pushed_keys = self._keys + ([self._counter_key] if self._measures_staleness else [])
        self._counter_increment = [mx.nd.ones(1, ctx=ctx)] if self._measures_staleness else []
        kvstore.set_optimizer(ServerOptimizer(optimizer, self._counter_key, self._board_key, 1 + self.board_width,
                                              self._vote_key))
        self._votes = kvstore.type == "dist_sync"  # the workers stop together (agree_to_stop)
        self._wish_to_stop = False
        self._stop_agreed = False
        self._votes_pulled = mx.nd.zeros(1, ctx=ctx)  # the votes' total, pulled with the parameters
        self._vote_values = {wish: mx.nd.full(1, float(wish), ctx=ctx) for wish in (False, True)}  # never written
        self._gradient_sum = [mx.nd.zeros(p.shape, ctx=ctx) for p in self.params]
        self._summed = 0  # gradients in the sum
        self.pushes = 0
        self.pulls = 0
        self._joined = False
        self._pulled_counts: list[mx.nd.NDArray] = []  # update counts pulled since the figures were last read
        self._count_before: int | None = None  # the last update count read
        self._round_trips_ms: list[float] = []
        return super().place(nets, cfg)

    @property
    def rank(self) -> int:
        return self.kvstore.rank

    @property
    def num_workers(self) -> int:
        return self.kvstore.num_workers

    @property
    def job(self):
        """A worker of a parameter-server job: ``agree_to_stop``, ``stops_together``, ``leave``,
        ``traffic_figures``, ``exchange_figures``, ``lost_part``."""
        return self

    @staticmethod
    def lost_part(error: Exception):
        """None: ps-lite itself ends a worker whose scheduler or server is lost; no error of it reaches here."""
        return None

    @property
    def stops_together(self) -> bool:
        """Whether the job's workers stop at one agreed update (dist_sync), so that one worker's wish (rank 0's
        evaluation reaching run.stop_return) can end them all; in dist_async each worker stops on its own."""
        return self._votes

    def agree_to_stop(self, wish: bool, env_steps: int, budget_spent: bool) -> bool:
        """Whether this worker stops now (at ``env_steps``; ``budget_spent``: its share of the env steps is done),
        given whether it wishes to (its budget, time or a signal).

        In dist_sync a worker that stopped alone would leave the others waiting for its pushes forever. So
        there a wish is a vote, pushed with the next gradients; the servers sum the votes and the total comes
        back with the parameters, identical for every worker. Every worker stops before the first push after
        a pull that brought a vote (its gradient is dropped), so all stop at the same update and their clocks
        need not agree. A worker that wishes to stop before its first push (during the replay's warm-up)
        pushes a zero gradient with its vote at once and waits for the outcome: that push completes the round
        of a worker already waiting on its first push. In dist_async each worker stops on its own wish.
        """
        if not self._votes:
            return wish
        self._wish_to_stop = self._wish_to_stop or wish
        if self._wish_to_stop and self.pushes == 0 and not self._stop_agreed:
            if not self._joined:
                self._join()
            self._push_and_pull(pull=True)
            self._stop_agreed = self._votes_pulled.asscalar() > 0  # waits for every worker's push of the round
        return self._stop_agreed

    def leave(self) -> None:
        """The run is over: wait until every worker of the job is done."""
        # No worker may exit while another still pushes or pulls: that left a worker hanging here.
        self.kvstore._barrier()

    def restore_notes(self) -> list[str]:
        return ["mode dist: the optimizer's state lives on the kvstore servers, which MXNet cannot save; it starts "
                "afresh"]

    def _join(self) -> None:
        """First push: rank 0's parameters (fresh, or from its checkpoint) become the servers'; all pull them."""
        ctx = self.contexts[0]
        # Copies in MXNet's default layout: a convolution's weights may be held in oneDNN's layout after a forward
        # pass, which the kvstore cannot send ("We can't generate TBlob for MKLDNN data").
        weights = [mx.nd.array(p.data(ctx).asnumpy(), ctx=ctx) for p in self.params]
        board = mx.nd.zeros((self.num_workers, 1 + self.board_width), ctx=ctx)
        self.kvstore.init(self._keys + [self._counter_key, self._board_key, self._vote_key],
                          weights + [mx.nd.zeros(1, ctx=ctx), board, mx.nd.zeros(1, ctx=ctx)])
        self._joined = True
        self._pull()

    def _pull(self) -> None:
        """Pull the parameters (and, for staleness, the update count)."""
        out = [p.data(self.contexts[0]) for p in self.params]
        keys = list(self._pushed_keys)
        if self._measures_staleness:
            self._pulled_counts.append(mx.nd.zeros(1, ctx=self.contexts[0]))
            out.append(self._pulled_counts[-1])
        if self._votes:
            keys.append(self._vote_key)
            out.append(self._votes_pulled)
        self.kvstore.pull(keys, out=out)
        self.pulls += 1

    def _push_and_pull(self, pull: bool = False) -> None:
        """Push the gradient sum (in dist_async, also one to the update counter; in dist_sync, this worker's
        vote to stop); pull when due (or asked to). Once the workers agreed to stop, nothing more is pushed."""
        if self._votes and self._votes_pulled.asscalar() > 0:
            self._stop_agreed = True
        if self._stop_agreed:
            self._gradient_sum = [mx.nd.zeros_like(total) for total in self._gradient_sum]
            self._summed = 0
            return
        pulling = pull or (self.pushes + 1) % self.pull_every == 0
        timed = pulling and self.pulls % self.ROUND_TRIP_EVERY == 1
        if timed:
            for total in self._gradient_sum:
                total.wait_to_read()
            start = time.perf_counter()
        keys, values = self._pushed_keys, self._gradient_sum + self._counter_increment
        if self._votes:
            keys, values = keys + [self._vote_key], values + [self._vote_values[self._wish_to_stop]]
        self.kvstore.push(keys, values)
        # A fresh sum, not the old one zeroed: ps-lite may still be sending from the pushed arrays (zeroing
        # them in place lost updates in the equivalence test).
        self._gradient_sum = [mx.nd.zeros_like(total) for total in self._gradient_sum]
        self._summed = 0
        self.pushes += 1
        if pulling:
            self._pull()
            if timed:
                for param in self.params:
                    param.data(self.contexts[0]).wait_to_read()
                self._round_trips_ms.append(1000.0 * (time.perf_counter() - start))

    def traffic_figures(self) -> dict:
        """Since the last call: staleness (mean, max over pull intervals; dist_async) and median round trip."""
        counts = [int(count.asscalar()) for count in self._pulled_counts]
        self._pulled_counts = []
        if self._count_before is not None:
            counts.insert(0, self._count_before)
        staleness = [after - before - 1 for before, after in zip(counts, counts[1:])]
        self._count_before = counts[-1] if counts else None
        round_trips, self._round_trips_ms = self._round_trips_ms, []
        return {"staleness": statistics.fmean(staleness) if staleness else float("nan"),
                "staleness_max": max(staleness) if staleness else float("nan"),
                "round_trip_ms": statistics.median(round_trips) if round_trips else float("nan"),
                "pushes": self.pushes}

    def exchange_figures(self, figures: dict) -> list[dict]:
        """Post this worker's ``figures`` to the board; rank 0 gets back every worker's latest row.

        Every worker must call it at the same points of its run, with the same names (``dist_sync`` waits for
        every worker's post). Rows are dicts with ``rank`` and the names given; a worker that has not posted
        yet has no row.
        """
        if len(figures) > self.board_width:
            raise ValueError(f"at most {self.board_width} figures fit on the board, not {len(figures)}")
        if not self._joined:
            self._join()
        board = np.zeros((self.num_workers, 1 + self.board_width), dtype=np.float32)
        board[self.rank, 0] = 1.0  # this row is posted
        board[self.rank, 1:1 + len(figures)] = [float(v) for v in figures.values()]
        self.kvstore.push(self._board_key, mx.nd.array(board, ctx=self.contexts[0]))
        if self.rank != 0 and self.kvstore.type != "dist_sync":
            return []
        # In dist_sync every worker pulls the board it posted to and waits for it, as a barrier: a server holds
        # a pull back while a round of pushes to its key is incomplete, so rank 0's pull, had another worker
        # already posted the next round (one that ran a log interval ahead during the replay's warm-up, with no
        # update to keep them in step), waited for rank 0's own next post: both workers hung.
        pulled = mx.nd.zeros(board.shape, ctx=self.contexts[0])
        self.kvstore.pull(self._board_key, out=pulled)
        rows = pulled.asnumpy()
        if self.rank != 0:
            return []
        names = list(figures)
        return [{"rank": rank, **{name: float(v) for name, v in zip(names, row[1:])}}
                for rank, row in enumerate(rows) if row[0] != 0]

    def apply_update(self, learner, losses, q_taken, td_abs) -> StepResult:
        """Clip the gradient and add it to the sum; push and pull when due. The host reads the norm (one wait):
        the servers' optimizer cannot skip a non-finite gradient, so it is left out of the sum here."""
        if not self._joined:
            self._join()
        grad_norm, scale = learner.gradients.read_norm_and_scale()
        if math.isfinite(grad_norm):  # a non-finite gradient is left out of the sum
            learner.gradients.scale(scale)
            for total, param in zip(self._gradient_sum, self.params):
                total += param.grad(self.contexts[0])
        self._summed += 1
        if self._summed == self.push_every:
            # In dist_sync the servers wait for a push from every worker: a sum of zeros is pushed too.
            self._push_and_pull()
        learner.count_update()
        return StepResult(grad_norm, losses, q_taken, td_abs, counted=True)


class DistLearner(ReplayLearner):
    """The replay learner of one worker of a parameter-server job (``ParameterServer``).

    Args:
        cfg: the run's configuration.
        spec: the environment's spaces.
        ctx: this worker's device.
        kvstore: the job's ``dist_sync`` or ``dist_async`` kvstore.
        posting_actors: the apex actors of this worker (``ParameterServer``).
    """

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context, kvstore, posting_actors: int = 0):
        super().__init__(cfg, spec, ParameterServer(cfg, ctx, kvstore, posting_actors))

    @property
    def rank(self) -> int:
        return self.placement.rank
