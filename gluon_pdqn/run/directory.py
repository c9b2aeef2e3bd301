"""The run directory of a train command: a new one created and claimed, or an existing one resumed.

One process trains a run directory at a time (its owner lock); the workers of a launched parameter-server
job share theirs (rank 0 writes it) and do not claim it: their launcher watches over them instead.
"""
from __future__ import annotations

import datetime
import fcntl
import os
import re
import shutil
from dataclasses import dataclass

from .. import build, checkpoint
from ..config import Config
from ..errors import UserError
from ..parallel.launcher import is_launched_worker

LOCK_FILE = ".owner.lock"
# What a resumed run may change; the rest defines the run and must stay as its checkpoint has it.
RESUMABLE_SETTINGS = ("run.total_env_steps", "run.max_seconds", "run.eval_every", "run.eval_episodes",
                      "run.stop_return", "run.checkpoint_every", "run.keep_checkpoints", "run.log_every",
                      "run.max_nonfinite_updates", "run.eval_protocol")


@dataclass
class RunDirectory:
    """Where a run writes, what it continues from, and its owner lock (held while this object lives)."""

    path: str
    cfg: Config
    bundle: str | None  # the checkpoint bundle to continue from (None: a fresh run)
    created: bool  # made by this command, so removed again if the run never starts
    owner: object  # the open lock file, or None (a job's worker)

    def discard(self) -> None:
        """Leave nothing behind for a run that never started in a directory this command created."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)


def slug(env_id: str) -> str:
    """An environment id as a file-name piece: ``ALE/Pong-v5`` -> ``ALE-Pong-v5``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", env_id).strip("-")


def now_stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def default_path(cfg: Config) -> str:
    """``runs/<env>-<mode>-s<seed>-<time>``; the workers of one launched job share the launcher's time stamp."""
    stamp = os.environ.get("GLUON_PDQN_JOB_STAMP") or now_stamp()
    return os.path.join("runs", f"{slug(cfg.env.id)}-{build.run_label(cfg)}-s{cfg.run.seed}-{stamp}")


def _claims() -> bool:
    """Whether this process owns its run directory (a launched job's workers share it)."""
    return not is_launched_worker()


def resume(resume_path: str, overrides: dict) -> RunDirectory:
    """The run of ``resume_path`` (a run directory or one of its bundles) with ``overrides`` applied.

    Repeating the run's own settings is fine (the command that started a run resumes it); changing one that
    the checkpoint depends on is refused in one line.
    """
    owner = None
    if _claims() and os.path.isdir(resume_path):
        owner = claim(checkpoint.run_dir_of(resume_path) if checkpoint.is_bundle(resume_path) else resume_path)
    bundle = checkpoint.resolve(resume_path)
    saved = checkpoint.config_of(bundle)
    fixed = sorted(k for k, v in overrides.items() if k not in RESUMABLE_SETTINGS and saved.replace({k: v}) != saved)
    if fixed:
        raise UserError(f"cannot change {', '.join(fixed)} when resuming; resumable: {', '.join(RESUMABLE_SETTINGS)}")
    run_dir = checkpoint.run_dir_of(bundle)
    if _claims() and owner is None:
        owner = claim(run_dir)
    return RunDirectory(run_dir, saved.replace(overrides), bundle, created=False, owner=owner)


def create(cfg: Config, path: str | None) -> RunDirectory:
    """A new run directory for ``cfg`` at ``path`` (default: ``default_path``), which must not hold a run."""
    path = path or default_path(cfg)
    shared = build.is_job(cfg)  # the job's workers share one run directory (rank 0 writes it)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--run-dir {path} is a file, not a directory")
    if os.path.exists(path) and os.listdir(path) and not shared:
        raise UserError(f"run directory {path} already exists; continue it with --resume {path} or choose "
                        "another --run-dir")
    created = not shared and not os.path.exists(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {path}: {e.strerror}") from None
    return RunDirectory(path, cfg, None, created, claim(path) if _claims() else None)


def claim(run_dir: str):
    """Make this process the owner of ``run_dir``; returns the open lock file, to keep for the process's life.

    The lock (``flock``) dies with its process, so a run that crashed can be resumed at once; a second process
    on the same run directory gets one line naming the owner's PID.
    """
    path = os.path.join(run_dir, LOCK_FILE)
    try:
        handle = open(path, "a+")
    except OSError as e:
        raise UserError(f"cannot write in run directory {run_dir}: {e.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise UserError(f"run directory {run_dir} is in use by process {owner}, which is training it; wait for "
                        "it to end or stop it (Ctrl-C leaves a checkpoint) before resuming") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
