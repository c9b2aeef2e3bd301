"""The builder: the only reader of ``run.mode``. It turns a Config into the parts of a run.

A mode is a named pair (``config.MODE_PAIRS``) of a collector (who acts) and a learner placement (how the
learner is spread), which ``run.collector`` and ``run.learner`` can choose freely where the pair makes
sense (``config.REFUSED_PAIRS`` says why the others do not). Below the builder nothing asks which mode it is
in: the loop gets a collector, a learner, how the one learns from the other (``updates``: from a replay, or
from rollouts), a job role, and the hooks it needs.

Adding a collector or a placement is its own module plus one line in ``COLLECTORS`` or ``PLACEMENTS`` here
(and its name in ``config.COLLECTORS`` / ``config.PLACEMENTS``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import envs
from .config import MODE_PAIRS, Config, Pair, job_actor_index, load_preset, mode_pair, pair_of
from .envs import EnvSpec
from .errors import UserError
from .exploration import EpsilonSchedule, action_rng, actor_schedules
from .updates import FromReplay, FromRollouts

# What each multi-device placement spreads over its devices (for the error when it is given only one).
_SPREAD = {"data": "splits each batch over devices", "model": "places network stages on devices",
           "ensemble": "trains one network per device"}


def pair(cfg: Config) -> Pair:
    """The run's pair of collector and learner placement."""
    return pair_of(cfg.run)


# Presets tuned for one environment, picked by its id (RL Zoo's hyperparameters in this toolkit's units).
ENV_PRESETS = {"CartPole-v1": "cartpole", "MountainCar-v0": "mountaincar", "Acrobot-v1": "acrobot",
               "LunarLander-v3": "lunarlander", "FrozenLake-v1": "frozenlake"}


def default_preset(mode: str | None, algo: str | None, env_id: str | None, overrides: dict | None = None) -> str:
    """The preset a train command without --preset starts from.

    Mode async has its own (it has no replay). Otherwise the environment picks it, as RL Zoo picks
    hyperparameters per environment: its own tuned preset (``ENV_PRESETS``), else its family's: ``minatar`` for
    MinAtar ids, ``atari-cpu`` for ALE ids, ``image`` for other environments whose observations are images
    (the environment made as the run's settings ``overrides`` make it, wrappers included, when given),
    ``cartpole`` for the rest.
    """
    if mode == "async":
        return "async-a3c" if algo == "a3c" else "async"
    if env_id in ENV_PRESETS:
        return ENV_PRESETS[env_id]
    if env_id and envs.is_minatar(env_id):
        return "minatar"
    if env_id and envs.is_atari(env_id):
        return "atari-cpu"
    if env_id and overrides is not None:
        from .architecture import image_shape

        spec = envs.describe(load_preset("cartpole").replace(overrides).env)
        if not spec.parts and image_shape(spec) is not None:
            return "image"
    return "cartpole"


def is_job(cfg: Config) -> bool:
    """Whether the run is one worker of a job of several processes (its workers share one run directory)."""
    return pair(cfg).is_job


def default_kvstore(mode: str | None, collector: str | None = None, learner: str | None = None) -> str | None:
    """The kvstore a train command without --kvstore gets: for a parameter-server job dist_sync, or dist_async
    where its workers' collectors are apex actors (see ``config.validate``: dist_sync cannot take them)."""
    if mode is None or not mode_pair(mode, learner, collector).uses_servers:
        return None
    return "dist_async" if mode_pair(mode, learner, collector).collector == "apex" else "dist_sync"


def run_label(cfg: Config) -> str:
    """The pair in a run directory's name: the mode, and the collector or learner where they are not its own."""
    p, (collector, placement) = pair(cfg), MODE_PAIRS[cfg.run.mode]
    return "-".join([cfg.run.mode] + [name for name, own in ((p.collector, collector), (p.placement, placement))
                                      if name != own])


def describe(cfg: Config) -> str:
    """The pair as the start of a run reports it."""
    p = pair(cfg)
    if p.collector == "apex":
        return (f"mode {cfg.run.mode} ({cfg.actors.count} actor processes of {cfg.env.num_envs} env(s) each, "
                f"{p.placement} learner)")
    if (p.collector, p.placement) == MODE_PAIRS[cfg.run.mode]:
        return f"mode {cfg.run.mode}"
    return f"mode {cfg.run.mode} ({p})"


# --- learner placements -------------------------------------------------------------------------


def _one_device(kind: str, contexts: list, hint: str = " (--learner data or model spreads it)") -> None:
    if len(contexts) != 1:
        raise UserError(f"the {kind} learner trains on one device; --ctx names {len(contexts)}{hint}")


def _spread(kind: str, contexts: list) -> None:
    if len(contexts) < 2:
        raise UserError(f"the {kind} learner {_SPREAD[kind]}; give --ctx two or more, e.g. cpu:0,cpu:1")


def _single(cfg, spec, contexts, topology):
    from .learners import SingleLearner

    _one_device("single", contexts)
    return SingleLearner(cfg, spec, contexts[0])


def _data(cfg, spec, contexts, topology):
    from .learners import DataParallelLearner

    _spread("data", contexts)
    return DataParallelLearner(cfg, spec, contexts)


def _model(cfg, spec, contexts, topology):
    from .learners import ModelParallelLearner

    _spread("model", contexts)
    return ModelParallelLearner(cfg, spec, contexts)


def _ensemble(cfg, spec, contexts, topology):
    from .learners import EnsembleLearner

    _spread("ensemble", contexts)
    return EnsembleLearner(cfg, spec, contexts)


def _ps(cfg, spec, contexts, topology):
    from .learners import DistLearner

    _one_device("ps", contexts, hint=" (one device per worker of the job)")
    if topology.kvstore is None:
        raise UserError("mode dist learns on the servers of a parameter-server job; this process joined none")
    # Apex actors on the worker post their figures to rank 0 with the worker's.
    posting_actors = cfg.actors.count if pair(cfg).collector == "apex" else 0
    return DistLearner(cfg, spec, contexts[0], topology.kvstore, posting_actors)


def _rollout(cfg, spec, contexts, topology):
    from .learners.async_learners import A3CLearner, AsyncQLearner

    _one_device("rollout", contexts, hint=" (mode async learns in the one thread that owns MXNet)")
    return (A3CLearner if cfg.actors.algo == "a3c" else AsyncQLearner)(cfg, spec, contexts[0])


def _horovod(cfg, spec, contexts, topology):
    from .learners.allreduce import HorovodLearner

    _one_device("horovod", contexts, hint=" (one device per rank of the job)")
    return HorovodLearner(cfg, spec, contexts[0])


PLACEMENTS = {"single": _single, "data": _data, "model": _model, "ensemble": _ensemble, "ps": _ps,
              "horovod": _horovod, "rollout": _rollout}


def make_learner(cfg: Config, spec: EnvSpec, contexts: list, topology=None):
    """The learner of the run's placement over ``contexts`` (``topology``: the parameter-server job's)."""
    from .parallel import Topology

    placement = pair(cfg).placement
    if cfg.run.precision == "fp16" and placement in ("model", "ensemble", "horovod"):
        raise UserError(f"run.precision=fp16 (loss scaling) is built for the single, data and ps learners, not "
                        f"{placement}; use fp32 there")
    return PLACEMENTS[placement](cfg, spec, contexts, topology or Topology())


def load_policy(bundle: str, cfg: Config, spec: EnvSpec, contexts: list):
    """The learner of checkpoint ``bundle`` with its parameters loaded, for acting (``greedy_values``) only.

    Data-, model-parallel, ps and async Q checkpoints hold the parameters of a single-device learner, so they
    load into one on ``contexts[0]``; an ensemble's members go round-robin on ``contexts`` (the devices it
    trained on may not exist here); an A3C checkpoint loads into an A3C learner.
    """
    from . import checkpoint
    from .learners import EnsembleLearner, SingleLearner
    from .learners.async_learners import A3CLearner

    placement = pair(cfg).placement
    if placement == "ensemble":
        members = len([name for name in os.listdir(bundle) if name.startswith("member")])
        learner = EnsembleLearner(cfg, spec, [contexts[i % len(contexts)] for i in range(max(members, 2))])
    elif placement == "rollout" and cfg.actors.algo == "a3c":
        learner = A3CLearner(cfg, spec, contexts[0])
    else:
        learner = SingleLearner(cfg, spec, contexts[0])
    with checkpoint.reading(bundle, "its parameter files"):
        learner.load(bundle, with_optimizer=False)
    return learner


def exportable(cfg: Config) -> None:
    """Refuse, in one line, a checkpoint that holds no single Q-network to export."""
    placement = pair(cfg).placement
    if placement == "ensemble":
        raise UserError("export takes one Q-network; an ensemble's members are not exported yet (evaluate or "
                        "resume it instead)")
    if placement == "rollout" and cfg.actors.algo == "a3c":
        raise UserError("export writes Q-networks; an A3C checkpoint holds a policy and a value head")


# --- collectors -----------------------------------------------------------------------------------


@dataclass
class Acting:
    """What the builder hands the loop about acting: the collector and the replay it fills (or None)."""

    collector: object
    replay: object = None  # ReplayBuffer, or None for a rollout learner
    adder: object = None  # acting.adder.ReplayAdder over ``replay``


def _replay(cfg: Config, spec: EnvSpec, streams: int, seed: int):
    from .replay import ReplayBuffer

    return ReplayBuffer(cfg.replay.capacity, streams, spec.frame_shape, spec.obs_dtype,
                        frame_stack=spec.frame_stack, n_step=cfg.replay.n_step, gamma=cfg.agent.gamma, seed=seed,
                        prioritized=cfg.replay.prioritized, alpha=cfg.replay.alpha,
                        priority_epsilon=cfg.replay.priority_epsilon)


def _vector(cfg, spec, learner, topology, seed, rng, notes) -> Acting:
    from .acting.adder import ReplayAdder
    from .acting.vector import VectorCollector

    replay = _replay(cfg, spec, cfg.env.num_envs, seed + 1)
    adder = ReplayAdder(replay, spec.frame_stack)
    # A worker of a parameter-server job acts with its rung of the Ape-X ladder over the job's workers.
    epsilon: EpsilonSchedule = actor_schedules(cfg.exploration, [topology.rank], topology.num_workers, "apex",
                                               offset=cfg.replay.learning_starts, noisy=cfg.network.noisy)[0]
    ensemble = learner.ensemble
    collector = VectorCollector(cfg.env, spec, adder, learner.greedy_values, rng, epsilon,
                                episode_started=ensemble.episode_started if ensemble is not None else None,
                                restore_seed=cfg.run.seed)
    return Acting(collector, replay, adder)


def apex_adder(cfg: Config, replay, frame_stack: int):
    """The writer of apex actors' experience into ``replay``.

    A distributional learner's priorities are its loss (cross-entropy, quantile Huber), not comparable to the
    actors' |TD| of the expected Q: its new transitions enter at the largest priority, as in PER.
    """
    from .acting.adder import ReplayAdder
    from .distributional import ReturnModel

    return ReplayAdder(replay, frame_stack, actor_priorities=not ReturnModel.of(cfg.agent).distributional)


def apex_schedules(cfg: Config, rank: int = 0, num_workers: int = 1) -> list[EpsilonSchedule]:
    """Apex actors' exploration: the Ape-X ladder over every actor of the run, or of the job (worker ``rank``'s
    actor i is actor ``rank * actors.count + i`` of ``num_workers * actors.count``), random until learning
    starts."""
    count = cfg.actors.count
    return actor_schedules(cfg.exploration, [job_actor_index(rank, count, i) for i in range(count)],
                           num_workers * count, "apex", offset=cfg.replay.learning_starts, noisy=cfg.network.noisy)


def async_schedules(cfg: Config) -> list[EpsilonSchedule]:
    """Async actors' exploration: ``actors.epsilons`` (sampled finals or the Ape-X ladder), from the first step."""
    return actor_schedules(cfg.exploration, range(cfg.actors.count), cfg.actors.count, cfg.actors.epsilons,
                           seed=cfg.run.seed)


def _apex(cfg, spec, learner, topology, seed, rng, notes) -> Acting:
    from .acting.apex import ApexCollector

    replay = _replay(cfg, spec, cfg.actors.count * cfg.env.num_envs, seed + 1)
    adder = apex_adder(cfg, replay, spec.frame_stack)
    schedules = apex_schedules(cfg, topology.rank, topology.num_workers)
    return Acting(ApexCollector(cfg, spec, adder, learner, seed, schedules), replay, adder)


def _async(cfg, spec, learner, topology, seed, rng, notes) -> Acting:
    from .acting.async_actors import AsyncCollector

    if cfg.env.num_envs != 1:
        notes.append("mode async gives each actor one environment; env.num_envs is ignored")
    return Acting(AsyncCollector(cfg, spec, learner, async_schedules(cfg)))


COLLECTORS = {"vector": _vector, "apex": _apex, "async": _async}


# --- a whole run ----------------------------------------------------------------------------------


class Solo:
    """The job role of a process that is the whole run: it stops when it is done, and tells no one."""

    stops_together = True

    @staticmethod
    def agree_to_stop(done: bool, env_steps: int, budget_spent: bool) -> bool:
        return done

    def leave(self) -> None:
        """Nothing to leave."""

    @staticmethod
    def traffic_figures() -> dict:
        return {}

    @staticmethod
    def exchange_figures(figures: dict):
        return None

    @staticmethod
    def lost_part(error: Exception):
        """No other part to lose: every error is the run's own."""
        return None


@dataclass
class Parts:
    """Everything a training run is made of, wired for its pair (see ``run.loop.Training``)."""

    pair: Pair
    spec: EnvSpec
    topology: object  # parallel.Topology: this process's rank among the job's workers
    learner: object
    acting: Acting
    job: object  # the learner's part in a parameter-server job, or Solo
    seed: int  # this worker's seed (the run's seed for every process that is the whole run)
    rng: object  # the loop's action Generator (checkpointed)
    env_step_budget: int  # this worker's share of run.total_env_steps
    updates: object  # updates.FromReplay or updates.FromRollouts: how the learner learns from the collector
    member_evaluations: list = field(default_factory=list)  # (q functions, take returns): ensemble members
    notes: list = field(default_factory=list)


def horovod_topology():
    """Join the Horovod job this process was started in (``gluon-pdqn launch`` sets ``HOROVOD_*``)."""
    from .parallel import Topology
    from .parallel.horovod import join

    rank, size = join()
    return Topology(rank=rank, num_workers=size)


def build(cfg: Config) -> Parts:
    """The parts of a run of ``cfg``: joins a parameter-server job first where the pair has one."""
    import mxnet as mx

    from .parallel import Topology, parse_contexts

    p = pair(cfg)
    spec = envs.describe(cfg.env)
    contexts = parse_contexts(cfg.run.ctx)
    topology = Topology()
    if p.is_job:  # first: a worker joins its job before any MXNet work (one that joined later hung)
        from .parallel import make_topology

        topology = make_topology(cfg.run.kvstore) if p.uses_servers else horovod_topology()
    mx.random.seed(cfg.run.seed)  # parameter initialization only
    learner = make_learner(cfg, spec, contexts, topology)
    seed = cfg.run.seed + 1000 * topology.rank
    rng = action_rng(seed)
    notes: list[str] = []
    acting = COLLECTORS[p.collector](cfg, spec, learner, topology, seed, rng, notes)
    budget = cfg.run.total_env_steps // topology.num_workers
    updates = (FromReplay(cfg, learner, acting.replay, acting.adder, acting.collector, rng, budget) if p.has_replay
               else FromRollouts(learner, rng))
    ensemble = learner.ensemble
    members = [(ensemble.member_q_functions, ensemble.set_member_returns)] if ensemble is not None else []
    return Parts(pair=p, spec=spec, topology=topology, learner=learner, acting=acting,
                 job=learner.job if learner.job is not None else Solo(), seed=seed, rng=rng,
                 env_step_budget=budget, updates=updates, member_evaluations=members, notes=notes)
