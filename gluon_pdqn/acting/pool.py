"""The one pool of actors: threads of the learner's process or spawned processes, each with its own pipe.

Apex actors and mode async's actors both run here, so spawning, the wait for messages, telling a dead actor
from a failed environment, and closing are written once:

    actor -> learner   (kind, ...)                       whatever the collector's actors send
    actor -> learner   ("error", text, environment_fault, traceback)   the actor failed and has ended

An actor's failure reaches the learner as ``EnvironmentFault`` (the user's environment failed: its
traceback goes to the run's ``environment-error.log``) or ``ActorLost`` (the actor itself died or failed);
an actor process that ends without a word (SIGKILL, the OOM killer) is ``ActorLost`` too.

Processes are spawned, not forked: the learner's process holds MXNet's engine threads, which a fork would
copy in an unusable state. A process dies with the learner's process (``PR_SET_PDEATHSIG``): a learner killed
by SIGKILL leaves no orphan actor behind.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
import traceback
from multiprocessing import connection

from ..errors import EnvironmentFault
from ..parallel.remote import die_with_parent
from .protocol import ActorLost

POLL_SECONDS = 0.5  # longest wait for a message before the loop checks signals and that every actor lives
BACKENDS = ("thread", "process")


def _actor_body(target, index: int, conn, args: tuple) -> None:
    """Run ``target(index, conn, *args)``; report how it failed, if it did, as the pool's error message."""
    try:
        target(index, conn, *args)
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass  # the learner has gone or is stopping: nothing left to tell it
    except BaseException as error:  # reported, so the learner can end the run with one clear line
        fault = isinstance(error, EnvironmentFault)
        text = f"{error} (actor {index})" if fault else f"actor {index} failed: {type(error).__name__}: {error}"
        try:
            conn.send(("error", text, fault, traceback.format_exc()))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


def _process_main(target, index: int, conn, args: tuple, parent_pid: int) -> None:
    """The body of an actor process: it dies with the learner's process and leaves Ctrl-C to the learner."""
    die_with_parent(parent_pid, ctypes.CDLL(None))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle: it stops the actors
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per actor: actors and learner share the cores
    _actor_body(target, index, conn, args)


def total_mib(memory: list) -> float:
    """The actors' resident memory together (``ActorPool.resident_mib``); NaN for threads, whose is the learner's."""
    return float(sum(memory)) if memory and all(isinstance(m, float) for m in memory) else float("nan")


class ActorPool:
    """``count`` actors running ``target(index, conn, *args_of(index))``; ``connections[i]`` talks to actor i.

    Args:
        name: what an actor is called in messages (``apex actor``, ``async actor``).
        target: the actor's loop, a module-level function (a spawned process imports it).
        args_of: the arguments of actor i after its index and pipe.
        count: number of actors.
        backend: ``thread`` or ``process``.
        duplex: whether the learner answers its actors over the pipes (mode async) or only listens (apex).
    """

    def __init__(self, name: str, target, args_of, count: int, backend: str = "process", duplex: bool = False):
        if backend not in BACKENDS:
            raise ValueError(f"unknown actor backend {backend!r}")
        self.name, self.backend = name, backend
        context = multiprocessing.get_context("spawn")
        self.connections, self._workers = [], []
        try:
            for i in range(count):
                ours, theirs = context.Pipe(duplex=duplex)
                if backend == "thread":
                    worker = threading.Thread(target=_actor_body, args=(target, i, theirs, args_of(i)),
                                              name=f"{name}-{i}", daemon=True)
                else:
                    worker = context.Process(target=_process_main, args=(target, i, theirs, args_of(i), os.getpid()),
                                             name=f"{name.replace(' ', '-')}-{i}", daemon=True)
                self.connections.append(ours)
                self._workers.append(worker)
                worker.start()
                if backend == "process":
                    theirs.close()  # the child holds its own end; ours must close for EOF to reach us when it dies
        except BaseException:
            self.close()
            raise
        self._index_of = {conn: i for i, conn in enumerate(self.connections)}

    @property
    def pids(self) -> list[int]:
        """Process ids of the actor processes (none for threads)."""
        return [w.pid for w in self._workers if isinstance(w, multiprocessing.process.BaseProcess)]

    def resident_mib(self) -> list[float | str]:
        """Each actor's resident memory in MiB ("" for threads: theirs is the learner's process's)."""
        from .. import metrics

        return [metrics.resident_mib(w.pid) if isinstance(w, multiprocessing.process.BaseProcess) else ""
                for w in self._workers]

    def receive(self, timeout: float = POLL_SECONDS) -> list[tuple[int, tuple]]:
        """Every message that has arrived, as (actor, message) in order, waiting up to ``timeout`` for one.

        Raises EnvironmentFault or ActorLost for an actor that failed, and ActorLost for one that died.
        """
        ready = connection.wait(self.connections, timeout=timeout)
        if not ready:
            self.check_alive()
        messages = []
        for conn in ready:
            index = self._index_of[conn]
            try:
                while conn.poll():
                    message = conn.recv()
                    if message[0] == "error":
                        raise self._failure(message)
                    messages.append((index, message))
            except (EOFError, OSError):
                raise ActorLost(self._died(index)) from None
        return messages

    def send(self, index: int, message: tuple) -> None:
        """Send actor ``index`` a message (duplex pools); ActorLost if it died in the meantime."""
        try:
            self.connections[index].send(message)
        except OSError:
            raise ActorLost(self._died(index)) from None

    def check_alive(self) -> None:
        """ActorLost for the first actor that is no longer running."""
        for i, worker in enumerate(self._workers):
            if not worker.is_alive():
                raise ActorLost(self._died(i))

    @staticmethod
    def _failure(message: tuple) -> Exception:
        _, text, environment_fault, remote_traceback = message
        if not environment_fault:
            return ActorLost(text)
        fault = EnvironmentFault(text)
        fault.remote_traceback = remote_traceback  # (written to the run's environment-error.log)
        return fault

    def _died(self, index: int) -> str:
        code = getattr(self._workers[index], "exitcode", None)
        return f"{self.name} {index} ended unexpectedly" + (f" (exit code {code})" if code is not None else "")

    def close(self, timeout: float = 10.0, stop_reply: tuple | None = None) -> None:
        """End every actor: drain the pipes (so none blocks in a send; actors waiting for an answer get
        ``stop_reply``), close them, join, and kill the processes that are left after ``timeout``.

        The collector has told its actors to stop before (a flag in shared memory, or ``stop_reply``).
        """
        deadline = time.monotonic() + timeout
        open_connections = list(self.connections)
        while open_connections and any(w.is_alive() for w in self._workers if w.ident is not None) \
                and time.monotonic() < deadline:
            for conn in connection.wait(open_connections, timeout=0.05):
                try:
                    while conn.poll():
                        if conn.recv()[0] == "act" and stop_reply is not None:
                            conn.send(stop_reply)
                except (EOFError, OSError):
                    open_connections.remove(conn)
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass
        for worker in self._workers:
            if worker.ident is None:
                continue  # never started
            worker.join(max(0.0, deadline - time.monotonic()))
            if isinstance(worker, multiprocessing.process.BaseProcess) and worker.is_alive():
                worker.kill()
                worker.join(timeout)

