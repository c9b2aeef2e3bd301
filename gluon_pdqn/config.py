"""Every setting of a run, as frozen dataclasses; presets (TOML files) and ``key=value`` overrides load into them.

Units are in the names or the comments: ``env_steps`` are agent decisions, ``learner_steps`` are gradient
updates. Library code receives a resolved :class:`Config` and never reads the command line or the environment.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Optional

from .errors import UserError

MODES = ("single", "data", "model", "ensemble", "apex", "async", "dist")  # named pairs (collector, learner)
# A mode is a pair: who acts (the collector) and how the learner is placed. The vector env steps in the
# learner's process (and in each worker of a parameter-server job); apex actor processes feed one shared replay
# (Horgan et al. 2018); async actors ask for every action and hand in rollouts (Mnih et al. 2016). The
# placements: one device, data parallel, model parallel, an ensemble (one network per device), a
# parameter-server worker (ps: parameters on the kvstore servers), a rank of a Horovod job (horovod: gradients
# averaged over the ranks by ring allreduce), or the rollout learner of async actors. Mode dist is a job of
# several processes started by `gluon-pdqn launch`: a parameter-server job by default, allreduce with
# --learner horovod.
COLLECTORS = ("vector", "apex", "async")
PLACEMENTS = ("single", "data", "model", "ensemble", "ps", "horovod", "rollout")
JOB_PLACEMENTS = ("ps", "horovod")  # the placements whose run is a job of several processes
MODE_PAIRS = {"single": ("vector", "single"), "data": ("vector", "data"), "model": ("vector", "model"),
              "ensemble": ("vector", "ensemble"), "apex": ("apex", "single"), "async": ("async", "rollout"),
              "dist": ("vector", "ps")}
# Why a pair is refused, for every pair that is (the rest combine freely).
REFUSED_PAIRS = {
    ("apex", "ensemble"): "apex actors act on one network's parameters, an ensemble acts on its members' mixture",
    ("apex", "rollout"): "apex actors feed a replay; the rollout learner learns from async actors' rollouts",
    ("apex", "horovod"): "every rank of an allreduce job must update in step with the others, while apex actors "
                         "set each rank's pace of updates by their own; use the ps learner (dist_async) with them",
    **{("async", p): "async actors hand in rollouts, which only the rollout learner learns from"
       for p in ("single", "data", "model", "ensemble", "ps", "horovod")},
    ("vector", "rollout"): "the rollout learner learns from async actors' rollouts, not from a replay",
}
KVSTORES = ("device", "local", "nccl", "dist_sync", "dist_async")  # run.kvstore: data parallel's, then ps's
ASYNC_ALGOS = ("one-step-q", "n-step-q", "a3c")  # algorithms of mode async (Mnih et al. 2016)
REPLAY_ALGOS = ("dqn", "c51", "qr-dqn")  # what the replay learners' networks estimate (distributional.py)
PRECISIONS = ("fp32", "bf16", "fp16")  # compute precisions of updates (see networks/precision.py)
CHANNEL_LAYOUTS = ("auto", "last", "first")  # where an image observation's channel axis is
EVAL_PROTOCOLS = ("auto", "nature", "machado", "plain")  # how evaluation episodes are played (envs/protocols.py)



@dataclass(frozen=True)
class EnvConfig:
    id: str = "CartPole-v1"  # a gymnasium id, `module:Name-v0` for a user's own, or an ALE id (`ALE/Pong-v5`)
    num_envs: int = 1  # environments stepped together by one acting loop (a gymnasium vector env)
    frame_stack: int = 1  # observations stacked by the env; Atari ids always stack 4
    channels: str = "auto"  # image observations: channel axis `last` (gymnasium's H, W, C), `first`, or `auto`
    max_episode_steps: int = 0  # time limit override in env steps; 0 keeps the environment's own
    sticky_actions: float = 0.0  # Atari repeat_action_probability (0.25 in Machado et al. 2018), train and eval
    noop_max: int = 30  # Atari: up to this many no-op actions at reset
    frame_skip: int = 4  # Atari: emulator frames per agent step, max-pooled over the last two
    episodic_life: bool = True  # Atari training: a lost life ends the training episode (not the game)
    clip_rewards: bool = True  # Atari training: rewards clipped to their sign
    max_episode_frames: int = 0  # Atari: emulator frames per episode before truncation; 0 keeps ALE's 108,000
    # Modules imported before the env is made, for ids a package registers when imported (RL Zoo's
    # --gym-packages); ids of well-known packages (MiniGrid-, MinAtar/, ALE/) need none
    packages: tuple[str, ...] = ()
    # Gymnasium wrappers applied to every env of the run (training, evaluation, every actor), innermost first,
    # by import path with keyword arguments: `minigrid.wrappers.ImgObsWrapper`,
    # `gymnasium.wrappers.TimeLimit(max_episode_steps=100)` (RL Zoo's env_wrapper)
    wrappers: tuple[str, ...] = ()
    # Dict observations: the keys the agent takes (nested keys as `a.b`); empty: every key whose values are numbers
    observation_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkConfig:
    # `mlp`, `nature_cnn`, `efficient_cnn` (data-efficient Rainbow's, a quarter of the Nature CNN's update cost),
    # `small_cnn`, or `auto`: the Nature CNN for images of 36x36 and more, the small CNN (MinAtar's) for smaller
    # ones, an MLP for vectors
    name: str = "auto"
    hidden: tuple[int, ...] = (64, 64)  # MLP hidden layer widths
    dueling: bool = False  # dueling head: Q = V + A - mean(A)
    # Noisy dense layers (Fortunato et al. 2018, factorised Gaussian noise) explore instead of epsilon-greedy:
    # with noisy = true, epsilon is 0 once learning starts (random actions fill the replay before)
    noisy: bool = False
    # Initial weights: `xavier` (uniform in +-sqrt(2/(fan_in+fan_out)), zero biases) or `torch`
    # (PyTorch's layer defaults: weights and biases uniform in +-1/sqrt(fan_in), what PyTorch baselines such as
    # MinAtar's reference DQN start from). Noisy layers keep their own (Fortunato et al.'s) either way.
    init: str = "xavier"


@dataclass(frozen=True)
class ReplayConfig:
    capacity: int = 50_000  # transitions held (split evenly over env.num_envs)
    batch_size: int = 64  # transitions per update (the global batch in parallel modes)
    learning_starts: int = 1_000  # env steps of random acting before the first update
    n_step: int = 1  # steps of discounted reward per transition
    prioritized: bool = False  # proportional prioritized replay (Schaul et al. 2016)
    alpha: float = 0.6  # priority exponent
    beta_start: float = 0.4  # importance-sampling exponent, annealed linearly to 1 over the run
    priority_epsilon: float = 1e-6  # added to |TD error| so no transition gets priority 0
    save_in_checkpoint: bool = True  # store the replay's contents with each checkpoint (exact resume)


@dataclass(frozen=True)
class ExplorationConfig:
    schedule: str = "linear"  # `linear` or `exponential` decay of epsilon
    epsilon_start: float = 1.0
    epsilon_final: float = 0.05
    decay_steps: int = 10_000  # env steps from epsilon_start to epsilon_final (after learning_starts)
    eval_epsilon: float = 0.0  # epsilon of evaluation episodes


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # `adam`, `rmsprop` or `sgd`
    learning_rate: float = 1e-3
    adam_epsilon: float = 1e-8
    rmsprop_decay: float = 0.95  # decay of the squared-gradient average (MXNet's gamma1)
    rmsprop_epsilon: float = 0.01
    rmsprop_centered: bool = True  # as in Nature DQN
    # Where epsilon goes: under the root, g / sqrt(v + eps), as DeepMind's DQN and MXNet (false); or added to
    # the root, g / (sqrt(v) + eps), as PyTorch, TensorFlow and code written for them (true). Up to 10x apart
    # in step size at DQN's epsilon of 0.01.
    rmsprop_epsilon_outside_root: bool = False
    momentum: float = 0.0  # sgd momentum
    max_grad_norm: float = 10.0  # global gradient-norm clip; 0 disables clipping
    loss: str = "huber"  # `huber` or `mse`
    huber_delta: float = 1.0


@dataclass(frozen=True)
class AgentConfig:
    gamma: float = 0.99  # discount per env step
    double_q: bool = True  # double DQN targets (van Hasselt et al. 2016)
    train_every: int = 4  # env steps between training rounds
    updates_per_train: int = 1  # learner steps per training round
    target_update_every: int = 500  # learner steps between target-network refreshes
    # What the network estimates (distributional.py): `dqn` (Q-values), `c51` (a categorical distribution of
    # the return on `atoms` values from v_min to v_max, Bellemare et al. 2017) or `qr-dqn` (`quantiles`
    # quantiles of the return, Dabney et al. 2018). v_min and v_max bound the (discounted) returns: +-10 for
    # Atari's clipped rewards, as the paper; set them for other environments.
    algo: str = "dqn"
    atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    quantiles: int = 200


@dataclass(frozen=True)
class ActorsConfig:
    """Mode ``async``: actor-learners stepping their own environments, one MXNet thread learning."""

    count: int = 4  # actors, each with one environment
    algo: str = "n-step-q"  # `one-step-q`, `n-step-q` or `a3c`
    backend: str = "thread"  # actors as `thread`s of the learner's process, or as `process`es
    t_max: int = 5  # env steps per rollout an actor hands in (the paper's t_max and I_AsyncUpdate)
    target_update_env_steps: int = 2_000  # env steps (all actors together) between target-network refreshes
    epsilons: str = "sampled"  # final epsilon per actor: `sampled` from {0.1, 0.01, 0.5}, or the `apex` ladder
    entropy_beta: float = 0.01  # a3c: weight of the policy's entropy bonus
    value_coef: float = 0.5  # a3c: weight of the value loss
    # Mode apex: each actor copies the learner's parameters every `sync_every` of its own env steps (Ape-X
    # used 400 frames: 100 env steps), and hands in its experience every `send_every` env steps
    sync_every: int = 100
    send_every: int = 50


def job_actor_index(rank: int, actors_per_worker: int, actor: int) -> int:
    """The index of worker ``rank``'s actor ``actor`` among all actors of a job (apex actors on every worker of a
    parameter-server job): its rung of the job's epsilon ladder, as in Horgan et al. 2018."""
    return rank * actors_per_worker + actor


@dataclass(frozen=True)
class RunConfig:
    mode: str = "single"  # parallelism mode: one of MODES, a named pair of collector and learner placement
    # Who acts: `auto` (the mode's own) or one of COLLECTORS
    collector: str = "auto"
    # How the learner is placed: `auto` (the mode's own) or one of PLACEMENTS (`--mode apex --learner data`)
    learner: str = "auto"
    ctx: str = "cpu:0"  # MXNet contexts: `cpu:0`, `gpu:0`, `gpu:0-3`, `gpu:0,gpu:2`
    kvstore: str = "device"  # data: `device`, `local` or `nccl` (GPU builds); dist: `dist_sync` or `dist_async`
    push_every: int = 1  # dist: updates whose summed gradient one push carries to the servers
    pull_every: int = 1  # dist: pushes between pulls of the parameters from the servers
    # dist_async: count the servers' updates with every push and pull, for the dist/staleness figures (that
    # cost 4-14% of the env steps/s of 2 CartPole workers on one 2-core machine; false saves the traffic).
    measure_staleness: bool = True
    model_split: str = "auto"  # model mode: `auto` (balance parameter counts) or layer indices where stages start
    microbatches: int = 1  # model mode: pieces each batch flows through the stages in (pipelining)
    ensemble_temperature: float = 50.0  # ensemble mode: softmax temperature over members' returns (return units)
    ensemble_acting: str = "mean"  # ensemble mode: act on the members' `mean` Q, or one `member` per episode
    overlap_acting: bool = False  # act from a policy snapshot taken each training round, while updates compute
    seed: int = 0
    total_env_steps: int = 50_000  # run length in env steps
    max_seconds: float = 0.0  # also stop after this many seconds of training (0: no time limit)
    eval_every: int = 2_000  # env steps between greedy evaluations; 0 disables them
    eval_episodes: int = 10
    # How evaluation episodes are played (envs/protocols.py): `nature` or `machado` for ALE ids, `plain` (the env
    # as configured, exploration.eval_epsilon), or `auto` (nature for ALE ids, plain otherwise)
    eval_protocol: str = "auto"
    stop_return: Optional[float] = None  # stop once an evaluation's mean return reaches this (confirmed)
    # A new best evaluation, or one reaching stop_return, is confirmed on this many more episodes of other seeds
    # before it is kept or announced: the best of many short evaluations is biased upward. 0: no confirmation.
    confirm_episodes: int = 30
    checkpoint_every: int = 10_000  # env steps between checkpoints; 0 checkpoints only at the end
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    log_every: int = 1_000  # env steps between metric rows
    hybridize: bool = True  # compile networks to static graphs (static_alloc)
    # Compute precision of updates: fp32; bf16 (CPUs with avx512_bf16 or AMX); fp16 (GPUs, with dynamic loss
    # scaling). Parameters and the optimizer stay fp32 in all three.
    precision: str = "fp32"
    max_nonfinite_updates: int = 20  # consecutive skipped (NaN/inf) updates that stop the run


@dataclass(frozen=True)
class Config:
    preset: str = "cartpole"
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    actors: ActorsConfig = field(default_factory=ActorsConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, overrides: dict[str, Any]) -> "Config":
        """A copy with dotted-key overrides applied (``{"replay.capacity": 1000}``); values may be strings."""
        data = self.to_dict()
        for key, value in overrides.items():
            section, name = _split_key(key)
            data[section][name] = _coerce(key, _field_type(section, name), value)
        return from_dict(data)


_SECTION_CLASSES = {
    "env": EnvConfig, "network": NetworkConfig, "replay": ReplayConfig, "exploration": ExplorationConfig,
    "optim": OptimConfig, "agent": AgentConfig, "actors": ActorsConfig, "run": RunConfig,
}


def valid_keys() -> list[str]:
    """Every dotted key that presets and ``--set`` accept."""
    return [f"{s}.{f.name}" for s, cls in _SECTION_CLASSES.items() for f in dataclasses.fields(cls)]


def _split_key(key: str) -> tuple[str, str]:
    section, _, name = key.partition(".")
    if section not in _SECTION_CLASSES or name not in {f.name for f in dataclasses.fields(_SECTION_CLASSES[section])}:
        raise UserError(f"unknown setting '{key}'; valid settings: {', '.join(valid_keys())}")
    return section, name


def _field_type(section: str, name: str):
    return typing.get_type_hints(_SECTION_CLASSES[section])[name]


def _coerce(key: str, kind, value):
    """Turn ``value`` (a string from the command line, or a TOML/JSON value) into the field's type."""
    origin = typing.get_origin(kind)
    try:
        if origin is typing.Union:  # Optional[float]
            (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
            if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
                return None
            return _coerce(key, inner, value)
        if origin is tuple and typing.get_args(kind)[0] is str:
            if isinstance(value, str):
                value = _split_top_level(value)
            if not isinstance(value, (list, tuple)):
                raise ValueError(value)
            return tuple(str(v).strip() for v in value if str(v).strip())
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            return tuple(int(v) for v in value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(str(value).replace("_", "")) if isinstance(value, str) else int(value)
        if kind is float:
            number = float(value)
            if not math.isfinite(number):
                raise UserError(f"setting '{key}' takes a finite number, not {value!r}")
            return number
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    type_name = getattr(kind, "__name__", str(kind))
    raise UserError(f"setting '{key}' takes a {type_name}, not {value!r}")


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses, brackets, braces and quotes (``a(x=1, y=2),b``)."""
    pieces, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    return pieces + [text[start:]]


def parse_wrapper(text: str) -> tuple[str, dict]:
    """The import path and keyword arguments of one ``env.wrappers`` entry: ``module.Class`` or
    ``module.Class(key=value, ...)`` with literal values."""
    def dotted(node) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        raise ValueError(text)

    problem = (f"env.wrappers takes entries like module.Class or module.Class(key=value), with literal values; "
               f"not {text!r}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
        call = node if isinstance(node, ast.Call) else None
        path = dotted(call.func if call else node)
        if call and call.args:
            raise ValueError(text)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords} if call else {}
    except (SyntaxError, ValueError):
        raise UserError(problem) from None
    if "." not in path or None in kwargs:
        raise UserError(problem)
    return path, kwargs


# Settings renamed since runs were saved with them: (section, old name) -> new name. A saved config.json keeps
# loading (resume, evaluate, export).
RENAMED = {("actors", "target_update_every"): "target_update_env_steps"}


def from_dict(data: dict, preset: str | None = None) -> Config:
    """Build a Config from nested dicts (a preset file or a saved ``config.json``); unknown keys are errors."""
    sections = {}
    for section, values in data.items():
        if isinstance(values, dict):
            values = {RENAMED.get((section, name), name): value for name, value in values.items()}
        if section == "preset":
            continue
        if section not in _SECTION_CLASSES:
            raise UserError(f"unknown setting section '{section}'; valid sections: {', '.join(_SECTION_CLASSES)}")
        if not isinstance(values, dict):
            raise UserError(f"setting section '{section}' must be a table of key = value")
        kwargs = {}
        for name, value in values.items():
            _split_key(f"{section}.{name}")
            kwargs[name] = _coerce(f"{section}.{name}", _field_type(section, name), value)
        sections[section] = _SECTION_CLASSES[section](**kwargs)
    return Config(preset=preset or data.get("preset", "custom"), **sections)


def _preset_dir():
    return resources.files("gluon_pdqn").joinpath("presets")


def preset_names() -> list[str]:
    """Names of the presets shipped in ``gluon_pdqn/presets``."""
    return sorted(p.name[: -len(".toml")] for p in _preset_dir().iterdir()
                  if p.name.endswith(".toml"))


def load_preset(name: str) -> Config:
    """The preset ``name`` (a shipped preset, or a path to a TOML file of the same form)."""
    if name.endswith(".toml"):
        try:
            with open(name, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise UserError(f"cannot read preset file {name}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"preset file {name} is not valid TOML: {e}") from None
        return from_dict(data, preset=name)
    if name not in preset_names():
        raise UserError(f"unknown preset '{name}'; available: {', '.join(preset_names())} (or a .toml file)")
    data = tomllib.loads(_preset_dir().joinpath(f"{name}.toml").read_text())
    return from_dict(data, preset=name)


@dataclass(frozen=True)
class Pair:
    """Who acts (one of COLLECTORS) and how the learner is placed (one of PLACEMENTS)."""

    collector: str
    placement: str

    def __str__(self) -> str:
        return f"{self.collector} collector, {self.placement} learner"

    @property
    def is_job(self) -> bool:
        """A worker of a job of several processes (started by ``gluon-pdqn launch``; its workers share a run
        directory): a parameter-server job, or a Horovod job."""
        return self.placement in JOB_PLACEMENTS

    @property
    def uses_servers(self) -> bool:
        """A worker of a parameter-server job (ps): its parameters live on the kvstore servers."""
        return self.placement == "ps"

    @property
    def has_replay(self) -> bool:
        """Whether experience goes through a replay (the rollout learner learns from rollouts as they arrive)."""
        return self.placement != "rollout"

    @property
    def one_device(self) -> bool:
        """Whether the learner uses one device (data, model and the ensemble spread over several)."""
        return self.placement in ("single", "ps", "horovod", "rollout")

    @property
    def has_actors(self) -> bool:
        """Whether actors act (``actors.count`` of them), not the in-process vector env."""
        return self.collector != "vector"

    @property
    def refused(self) -> str | None:
        """Why the pair makes no sense, or None."""
        return REFUSED_PAIRS.get((self.collector, self.placement))


def pair_of(run: RunConfig) -> Pair:
    """The pair of ``run``: its mode's (``MODE_PAIRS``), with ``run.collector`` and ``run.learner`` where set."""
    return mode_pair(run.mode, None if run.learner == "auto" else run.learner,
                     None if run.collector == "auto" else run.collector)


def mode_pair(mode: str, learner: str | None = None, collector: str | None = None) -> Pair:
    """The pair of ``mode``, with the collector or learner placement named instead of the mode's own."""
    own_collector, own_placement = MODE_PAIRS[mode]
    return Pair(collector or own_collector, learner or own_placement)


def validate(cfg: Config) -> None:
    """Reject settings that cannot work, with a message naming the setting."""
    checks = [
        (cfg.env.num_envs >= 1, "env.num_envs must be at least 1"),
        (cfg.env.frame_stack >= 1, "env.frame_stack must be at least 1"),
        (cfg.env.channels in CHANNEL_LAYOUTS, f"env.channels must be one of {', '.join(CHANNEL_LAYOUTS)}"),
        (0.0 <= cfg.env.sticky_actions <= 1.0, "env.sticky_actions must lie in [0, 1]"),
        (cfg.env.noop_max >= 0 and cfg.env.max_episode_steps >= 0,
         "env.noop_max and env.max_episode_steps must not be negative"),
        (cfg.env.frame_skip >= 1, "env.frame_skip must be at least 1"),
        (0.0 <= cfg.optim.momentum < 1.0 and 0.0 <= cfg.optim.rmsprop_decay < 1.0,
         "optim.momentum and optim.rmsprop_decay must lie in [0, 1)"),
        (cfg.optim.adam_epsilon > 0 and cfg.optim.rmsprop_epsilon > 0 and cfg.replay.priority_epsilon > 0,
         "optim.adam_epsilon, optim.rmsprop_epsilon and replay.priority_epsilon must be positive"),
        (cfg.run.model_split == "auto" or all(p.strip().isdigit() for p in cfg.run.model_split.split(",")),
         "run.model_split must be auto or comma-separated layer indices (2 or 2,4)"),
        (cfg.network.name in ("auto", "mlp", "nature_cnn", "efficient_cnn", "small_cnn"),
         "network.name must be auto, mlp, nature_cnn, efficient_cnn or small_cnn"),
        (all(h > 0 for h in cfg.network.hidden), "network.hidden widths must be positive"),
        (cfg.network.init in ("xavier", "torch"), "network.init must be xavier or torch"),
        (cfg.replay.batch_size >= 1, "replay.batch_size must be at least 1"),
        (cfg.replay.capacity >= cfg.replay.batch_size, "replay.capacity must be at least replay.batch_size"),
        (cfg.replay.capacity >= 2 * cfg.env.num_envs * (cfg.replay.n_step + cfg.env.frame_stack),
         "replay.capacity is too small for env.num_envs, replay.n_step and env.frame_stack"),
        (cfg.replay.n_step >= 1, "replay.n_step must be at least 1"),
        (cfg.replay.learning_starts >= 0, "replay.learning_starts must not be negative"),
        (cfg.replay.alpha >= 0 and 0 <= cfg.replay.beta_start <= 1, "replay.alpha >= 0 and beta_start in [0, 1]"),
        (cfg.exploration.schedule in ("linear", "exponential"), "exploration.schedule must be linear or exponential"),
        (all(0.0 <= e <= 1.0 for e in (cfg.exploration.epsilon_start, cfg.exploration.epsilon_final,
                                        cfg.exploration.eval_epsilon)),
         "exploration.epsilon_start, exploration.epsilon_final and exploration.eval_epsilon must lie in [0, 1]"),
        (cfg.exploration.decay_steps >= 1, "exploration.decay_steps must be at least 1"),
        (cfg.optim.name in ("adam", "rmsprop", "sgd"), "optim.name must be adam, rmsprop or sgd"),
        (cfg.optim.learning_rate > 0, "optim.learning_rate must be positive"),
        (cfg.optim.max_grad_norm >= 0, "optim.max_grad_norm must not be negative"),
        (cfg.optim.loss in ("huber", "mse"), "optim.loss must be huber or mse"),
        (cfg.optim.huber_delta > 0, "optim.huber_delta must be positive"),
        (0.0 < cfg.agent.gamma <= 1.0, "agent.gamma must lie in (0, 1]"),
        (cfg.agent.train_every >= 1 and cfg.agent.updates_per_train >= 1, "agent.train_every and "
                                                                          "agent.updates_per_train must be >= 1"),
        (cfg.agent.target_update_every >= 1, "agent.target_update_every must be at least 1"),
        (cfg.run.total_env_steps >= 1, "run.total_env_steps must be at least 1"),
        (cfg.run.seed >= 0, "run.seed must not be negative"),
        (cfg.run.max_seconds >= 0, "run.max_seconds must not be negative"),
        (cfg.run.eval_every >= 0 and cfg.run.eval_episodes >= 1, "run.eval_every >= 0 and run.eval_episodes >= 1"),
        (cfg.run.confirm_episodes >= 0, "run.confirm_episodes must be >= 0"),
        (cfg.run.eval_protocol in EVAL_PROTOCOLS, f"run.eval_protocol must be one of {', '.join(EVAL_PROTOCOLS)}"),
        (cfg.env.max_episode_frames >= 0, "env.max_episode_frames must not be negative"),
        (cfg.run.checkpoint_every >= 0, "run.checkpoint_every must not be negative"),
        (cfg.run.keep_checkpoints >= 1, "run.keep_checkpoints must be at least 1"),
        (cfg.run.log_every >= 1, "run.log_every must be at least 1"),
        (cfg.run.kvstore in KVSTORES, f"run.kvstore must be one of {', '.join(KVSTORES)}"),
        (cfg.actors.sync_every >= 1 and cfg.actors.send_every >= 1,
         "actors.sync_every and actors.send_every must be at least 1"),
        (cfg.run.microbatches >= 1, "run.microbatches must be at least 1"),
        (cfg.run.precision in PRECISIONS, f"run.precision must be one of {', '.join(PRECISIONS)}"),
        (cfg.run.push_every >= 1 and cfg.run.pull_every >= 1, "run.push_every and run.pull_every must be >= 1"),
        (cfg.run.ensemble_temperature > 0, "run.ensemble_temperature must be positive"),
        (cfg.run.ensemble_acting in ("mean", "member"), "run.ensemble_acting must be mean or member"),
        (cfg.replay.batch_size % cfg.run.microbatches == 0, "replay.batch_size must be a multiple of run.microbatches"),
        (cfg.run.max_nonfinite_updates >= 1, "run.max_nonfinite_updates must be at least 1"),
        (cfg.actors.count >= 1, "actors.count must be at least 1"),
        (cfg.actors.algo in ASYNC_ALGOS, f"actors.algo must be one of {', '.join(ASYNC_ALGOS)}"),
        (cfg.agent.algo in REPLAY_ALGOS, f"agent.algo must be one of {', '.join(REPLAY_ALGOS)}"),
        (cfg.agent.atoms >= 2 and cfg.agent.v_min < cfg.agent.v_max,
         "agent.atoms must be at least 2 and agent.v_min below agent.v_max"),
        (cfg.agent.quantiles >= 1, "agent.quantiles must be at least 1"),
        (cfg.actors.backend in ("thread", "process"), "actors.backend must be thread or process"),
        (cfg.actors.t_max >= 1 and cfg.actors.target_update_env_steps >= 1,
         "actors.t_max and actors.target_update_env_steps must be at least 1"),
        (cfg.actors.epsilons in ("sampled", "apex"), "actors.epsilons must be sampled or apex"),
        (cfg.actors.entropy_beta >= 0 and cfg.actors.value_coef > 0,
         "actors.entropy_beta must not be negative and actors.value_coef must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    for wrapper in cfg.env.wrappers:
        parse_wrapper(wrapper)
    _validate_pair(cfg)


def _validate_pair(cfg: Config) -> None:
    """Reject a pair of collector and learner placement that makes no sense, and settings its pair cannot use."""
    run = cfg.run
    if run.mode not in MODES:
        raise UserError(f"run.mode must be one of {', '.join(MODES)}")
    if run.collector not in ("auto", *COLLECTORS):
        raise UserError(f"run.collector must be auto or one of {', '.join(COLLECTORS)}")
    if run.learner not in ("auto", *PLACEMENTS):
        raise UserError(f"run.learner must be auto or one of {', '.join(PLACEMENTS)}")
    pair = pair_of(run)
    if pair.refused:
        raise UserError(f"--mode {run.mode} with the {pair} makes no sense: {pair.refused}")
    rollout = not pair.has_replay
    checks = [
        (pair.uses_servers == run.kvstore.startswith("dist_"),
         "mode dist takes --kvstore dist_sync or dist_async, and only mode dist does (with the ps learner; the "
         "horovod learner takes none)"),
        (not (pair.collector == "apex" and run.kvstore == "dist_sync"),
         "apex actors on the workers of a job need --kvstore dist_async (the default with --collector apex): "
         "each worker updates at its own actors' pace, and dist_sync's servers wait for every worker at each "
         "push, so the workers would wait on each other forever"),
        (not (pair.has_actors and run.overlap_acting),
         f"run.overlap_acting is for the in-process vector env; {pair.collector} actors always act while it "
         "learns"),
        (not rollout or run.precision == "fp32", "run.precision bf16 and fp16 are for the replay learners; mode "
                                                 "async computes in fp32"),
        (not (rollout and cfg.network.noisy),
         "network.noisy is for the replay modes; mode async's actors explore with their own epsilons"),
        (not (rollout and cfg.agent.algo != "dqn"),
         f"--algo {cfg.agent.algo} is for the replay modes; mode async learns with {', '.join(ASYNC_ALGOS)}"),
        (not (pair.placement == "ensemble" and cfg.agent.algo != "dqn"),
         f"--algo {cfg.agent.algo} learns with the single, data, model and ps learners (modes single, data, "
         "model, apex, dist); the ensemble mixes its members' target Q-values, which has no distributional form "
         "here"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
