"""Checkpoint bundles: a directory written under a temporary name, marked complete last, then renamed.

A bundle ``checkpoints/ckpt-<env_steps>/`` holds ``state.json`` (format tag, config, counters, RNG states),
whatever files the writer adds (parameters in MXNet's array format, arrays in ``.npz``), and ``COMPLETE``.
Nothing in a bundle is unpickled on loading, so a checkpoint from someone else cannot run code. Only
bundles with the marker are ever loaded; the newest ``keep`` are kept.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Callable

import numpy as np

from .config import Config, from_dict
from .errors import UserError

FORMAT = "gluon_pdqn.checkpoint"
VERSION = 1
MARKER = "COMPLETE"
STATE_FILE = "state.json"
PREFIX = "ckpt-"
BEST = "best"  # the bundle of the best greedy evaluation (``save_best``)


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def list_complete(run_dir: str) -> list[str]:
    """Complete bundles of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not os.path.isdir(root):
        return []
    names = sorted(n for n in os.listdir(root) if n.startswith(PREFIX) and not n.endswith(".tmp")
                   and os.path.exists(os.path.join(root, n, MARKER)))
    return [os.path.join(root, n) for n in names]


def save(run_dir: str, env_steps: int, state: dict, write_files: Callable[[str], None], keep: int) -> str:
    """Write a bundle for ``env_steps``: ``write_files(directory)`` adds the arrays, then state and marker.

    Returns the bundle's path. Older complete bundles beyond the newest ``keep`` are removed afterwards.
    """
    final = _write(os.path.join(checkpoint_dir(run_dir), f"{PREFIX}{env_steps:012d}"), state, write_files)
    for old in list_complete(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_best(run_dir: str, state: dict, write_files: Callable[[str], None]) -> str:
    """Write (or replace) ``checkpoints/best``, the bundle of the best greedy evaluation so far.

    ``state["eval"]["best"]`` is the evaluation's mean return. The bundle is never rotated away; until the new
    one is complete the previous best stays in place.
    """
    return _write(os.path.join(checkpoint_dir(run_dir), BEST), state, write_files)


def best_return(run_dir: str, state: dict) -> float | None:
    """The best evaluation a run has seen: ``state``'s, or that of its ``best`` bundle if higher.

    A run resumed from a checkpoint older than its best bundle must not let a worse evaluation replace it.
    """
    best = state["eval"]["best"]
    path = os.path.join(checkpoint_dir(run_dir), BEST)
    if os.path.exists(os.path.join(path, MARKER)):
        kept = read_state(path)["eval"]["best"]
        if kept is not None and (best is None or kept > best):
            best = kept
    return best


def _write(final: str, state: dict, write_files: Callable[[str], None]) -> str:
    """Write the bundle ``final`` under a temporary name, mark it complete, then rename it into place."""
    os.makedirs(os.path.dirname(final), exist_ok=True)
    temporary = final + ".tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    write_files(temporary)
    with open(os.path.join(temporary, STATE_FILE), "w") as f:
        json.dump({"format": FORMAT, "version": VERSION, **state}, f)
    _fsync_dir_files(temporary)
    with open(os.path.join(temporary, MARKER), "w") as f:
        f.write("ok\n")
    if os.path.exists(final):
        shutil.rmtree(final)
    os.rename(temporary, final)
    return final


def _fsync_dir_files(directory: str) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())


def resolve(path: str, which: str = "last") -> str:
    """The bundle ``path`` names: a bundle itself, or a run directory's newest complete bundle (``which="last"``)
    or its best one (``which="best"``)."""
    if not os.path.exists(path):
        raise UserError(f"no checkpoint or run directory at {path}")
    if os.path.isfile(os.path.join(path, STATE_FILE)) or os.path.exists(os.path.join(path, MARKER)):
        if not os.path.exists(os.path.join(path, MARKER)):
            raise UserError(f"checkpoint {path} is incomplete (no {MARKER} marker): it was being written "
                            "when the run stopped")
        return path
    if which == "best":
        best = os.path.join(checkpoint_dir(path), BEST)
        if not os.path.exists(os.path.join(best, MARKER)):
            raise UserError(f"{path} has no best checkpoint: it has not finished a greedy evaluation "
                            "(run.eval_every)")
        return best
    bundles = list_complete(path)
    if not bundles:
        raise UserError(f"{path} holds no complete checkpoint")
    return bundles[-1]


def run_dir_of(bundle: str) -> str:
    """The run directory a bundle belongs to (``<run>/checkpoints/ckpt-N``)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(bundle)))


def read_state(bundle: str) -> dict:
    """The bundle's ``state.json``, checked to be a gluon_pdqn checkpoint of a version this code reads."""
    try:
        with open(os.path.join(bundle, STATE_FILE)) as f:
            state = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"checkpoint {bundle} is corrupt: {STATE_FILE} is not readable JSON") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{bundle} is not a gluon_pdqn checkpoint")
    if state.get("version") != VERSION:
        raise UserError(f"checkpoint {bundle} has format version {state.get('version')}; this gluon_pdqn reads "
                        f"version {VERSION}")
    return state


def load_arrays(bundle: str, name: str) -> dict[str, np.ndarray]:
    """Arrays of ``name`` (an .npz in the bundle), read without allowing pickled objects."""
    path = os.path.join(bundle, name)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"checkpoint {bundle} is corrupt: cannot read {name} ({e.__class__.__name__})") from None


def config_of(bundle: str) -> Config:
    """The configuration a checkpoint was trained with."""
    return from_dict(read_state(bundle)["config"])
