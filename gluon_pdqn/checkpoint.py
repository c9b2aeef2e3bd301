"""Checkpoint bundles: a directory written under a temporary name, marked complete last, then renamed.

A bundle ``checkpoints/ckpt-<env_steps>/`` holds ``state.json`` (format tag, config, counters, RNG states),
whatever files the writer adds (parameters in MXNet's array format, arrays in ``.npz``), and ``COMPLETE``,
written last: the size and SHA-256 of every other file of the bundle. Nothing in a bundle is unpickled on
loading, so a checkpoint from someone else cannot run code. Only bundles with the marker are ever loaded, and
``resolve`` verifies every file against it first (a copy cut short, a flipped bit, an emptied file is one line
naming the file); the newest ``keep`` are kept. Bundles written before the marker held checksums (its text
is ``ok``) still load, unverified.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import zipfile
from typing import Callable

import numpy as np

from .config import Config, from_dict
from .errors import StorageFault, UserError

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
    candidates = sorted(n for n in os.listdir(root) if n.startswith(PREFIX) and not n.endswith(".tmp"))
    for name in candidates:
        path = os.path.join(root, name)
        if not os.access(path, os.R_OK | os.X_OK):
            # Taking it for incomplete would quietly resume from an older one; say so instead.
            raise UserError(f"checkpoint {path} cannot be read (permission denied); restore its permissions or "
                            "move it out of checkpoints/")
    return [os.path.join(root, n) for n in candidates if os.path.exists(os.path.join(root, n, MARKER))]


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
    """Write the bundle ``final`` under a temporary name, mark it complete, then rename it into place.

    A write that fails (a full disk, a permission taken away) removes the partial bundle and raises
    StorageFault; the bundles already complete are untouched.
    """
    try:
        return _write_bundle(final, state, write_files)
    except OSError as e:
        shutil.rmtree(final + ".tmp", ignore_errors=True)
        root = os.path.dirname(os.path.dirname(final))
        newest = list_complete(root)
        kept = f"the newest complete checkpoint, {newest[-1]}, is intact" if newest else "no checkpoint was written"
        raise StorageFault(f"cannot write checkpoint {final}: {e.strerror or e}; {kept}. Free space (or restore "
                           f"write permission) and continue with gluon-pdqn train --resume {root}") from None


def _write_bundle(final: str, state: dict, write_files: Callable[[str], None]) -> str:
    os.makedirs(os.path.dirname(final), exist_ok=True)
    temporary = final + ".tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    write_files(temporary)
    with open(os.path.join(temporary, STATE_FILE), "w") as f:
        json.dump({"format": FORMAT, "version": VERSION, **state}, f)
    manifest = _fsync_and_digest(temporary)
    with open(os.path.join(temporary, MARKER), "w") as f:
        json.dump({"format": FORMAT, "files": manifest}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    if os.path.exists(final):
        shutil.rmtree(final)
    os.rename(temporary, final)
    return final


CHUNK = 1 << 22  # bytes read at a time while digesting


def _sha256(f) -> str:
    """The SHA-256 of an open binary file, read from where it stands to its end."""
    digest = hashlib.sha256()
    while chunk := f.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return _sha256(f)


def _fsync_and_digest(directory: str) -> dict[str, dict]:
    """Flush every file of a bundle to the disk; their sizes and SHA-256 digests by path within the bundle.

    The files were just written, so the digest reads them from the page cache, in the same pass as the flush.
    """
    manifest = {}
    for root, _, files in os.walk(directory):
        for name in sorted(files):
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                sha256 = _sha256(f)
                os.fsync(f.fileno())
            manifest[os.path.relpath(path, directory)] = {"size": os.path.getsize(path), "sha256": sha256}
    return manifest


_UNVERIFIED_NOTED: set = set()


def verify(bundle: str) -> None:
    """Check every file of ``bundle`` against its marker's sizes and digests; one line naming a damaged file.

    The line names the newest older complete bundle, if there is one, and how to resume from it. A bundle
    written before markers held checksums is not verified (said once per process).
    """
    try:
        with open(os.path.join(bundle, MARKER)) as f:
            text = f.read()
    except OSError as e:
        raise UserError(f"checkpoint {bundle} is corrupt: its {MARKER} marker cannot be read ({e.strerror})") from None
    if text.strip() == "ok":  # the marker of bundles written before checksums
        read_state(bundle)  # (a foreign directory is named as such first)
        if bundle not in _UNVERIFIED_NOTED:
            _UNVERIFIED_NOTED.add(bundle)
            print(f"note: checkpoint {bundle} was written before bundles carried checksums; its files are not "
                  "verified", file=sys.stderr)
        return
    try:
        marker = json.loads(text)
        files = marker["files"]
        assert marker.get("format") == FORMAT and isinstance(files, dict) and files
        expected = {name: (int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()}
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UserError(_damaged(bundle, f"its {MARKER} marker holds no checksums")) from None
    for name, (size, sha256) in sorted(expected.items()):
        path = os.path.join(bundle, name)
        if not os.path.isfile(path):
            raise UserError(_damaged(bundle, f"{name} is missing"))
        actual = os.path.getsize(path)
        if actual != size:
            raise UserError(_damaged(bundle, f"{name} has {actual:,} bytes, {size:,} when written"))
        if _digest(path) != sha256:
            raise UserError(_damaged(bundle, f"{name} differs from what was written (SHA-256)"))


def _damaged(bundle: str, what: str) -> str:
    run_dir = run_dir_of(bundle)
    name = os.path.basename(os.path.normpath(bundle))
    # Every numbered bundle is older than a damaged best one (it is rewritten at each better evaluation).
    older = [b for b in list_complete(run_dir) if name == BEST or os.path.basename(b) < name]
    hint = (f"the newest older complete checkpoint is {older[-1]}: resume from it with gluon-pdqn train --resume "
            f"{older[-1]}" if older else "no older complete checkpoint exists")
    return f"checkpoint {bundle} is corrupt: {what}; {hint}"


def is_bundle(path: str) -> bool:
    """Whether ``path`` is a checkpoint bundle (rather than a run directory)."""
    return os.path.isfile(os.path.join(path, STATE_FILE)) or os.path.exists(os.path.join(path, MARKER))


def resolve(path: str, which: str = "last") -> str:
    """The bundle ``path`` names: a bundle itself, or a run directory's newest complete bundle (``which="last"``)
    or its best one (``which="best"``)."""
    if not os.path.exists(path):
        raise UserError(f"no checkpoint or run directory at {path}")
    if is_bundle(path):
        if not os.path.exists(os.path.join(path, MARKER)):
            raise UserError(f"checkpoint {path} is incomplete (no {MARKER} marker): it was being written "
                            "when the run stopped")
        verify(path)
        return path
    if which == "best":
        best = os.path.join(checkpoint_dir(path), BEST)
        if not os.path.exists(os.path.join(best, MARKER)):
            raise UserError(f"{path} has no best checkpoint: it has not finished a greedy evaluation "
                            "(run.eval_every)")
        verify(best)
        return best
    bundles = list_complete(path)
    if not bundles:
        raise UserError(f"{path} holds no complete checkpoint")
    verify(bundles[-1])
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
    _check_structure(state, bundle)
    return state


COUNTERS = ("env_steps", "learner_steps", "episodes", "skipped_updates", "evaluations", "wall_seconds")


def _check_structure(state: dict, bundle: str) -> None:
    """Refuse a ``state.json`` that parses but lacks what loading needs, naming the first thing wrong."""
    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    checks = [
        (isinstance(state.get("config"), dict), "'config' must be a table of settings"),
        (isinstance(state.get("env_spec"), dict) and isinstance(state["env_spec"].get("id"), str)
         and isinstance(state["env_spec"].get("n_actions"), int), "'env_spec' must hold the env's id and n_actions"),
        (isinstance(state.get("counters"), dict) and set(state["counters"]) == set(COUNTERS)
         and all(number(v) for v in state["counters"].values()),
         f"'counters' must hold the numbers {', '.join(COUNTERS)}"),
        (isinstance(state.get("eval"), dict) and all(state["eval"].get(k) is None or number(state["eval"].get(k))
                                                     for k in ("best", "last")) and {"best", "last"} <= set(state["eval"]),
         "'eval' must hold the best and last evaluation (numbers or null)"),
        (state.get("replay") is None or isinstance(state["replay"], dict), "'replay' must be null or a table"),
        ("rng" not in state or isinstance(state["rng"], dict), "'rng' must be a table"),
    ]
    for ok, what in checks:
        if not ok:
            raise UserError(f"checkpoint {bundle} is corrupt: in {STATE_FILE}, {what}")


@contextlib.contextmanager
def reading(bundle: str, what: str):
    """Turn the errors of a file whose structure is wrong (a key missing, a string for a number) into one line
    naming the file."""
    try:
        yield
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise UserError(f"checkpoint {bundle} is corrupt: {what} does not hold what this gluon_pdqn wrote there "
                        f"({type(e).__name__}: {e})") from None


def load_arrays(bundle: str, name: str) -> dict[str, np.ndarray]:
    """Arrays of ``name`` (an .npz in the bundle), read without allowing pickled objects."""
    path = os.path.join(bundle, name)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"checkpoint {bundle} is corrupt: cannot read {name} ({e.__class__.__name__})") from None


def config_of(bundle: str) -> Config:
    """The configuration a checkpoint was trained with."""
    state = read_state(bundle)
    with reading(bundle, f"the 'config' of {STATE_FILE}"):
        return from_dict(state["config"])
