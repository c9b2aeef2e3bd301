"""What ``gluon-pdqn launch --launcher ssh`` runs on a remote host: a program, watched over ssh's input.

ssh does not pass signals to the remote command, killing ssh leaves the command running, and when the network
between the hosts fails, neither side notices for as long as TCP keeps a silent connection (hours, unless
sshd is configured otherwise). So the launcher writes a heartbeat byte to each ssh's input every
``HEARTBEAT_SECONDS``, and this watcher, which ssh runs around the program, ends the program (SIGTERM, on which a
worker writes its checkpoint; SIGKILL ``--grace`` seconds later, for a process blocked in MXNet waiting on a
server that is gone) when

- ssh's input ends: the launcher is stopping the job, or it died (if the launcher wrote ``!`` first, at once
  with SIGKILL: a server, or a worker still joining the job, has nothing to save);
- no heartbeat arrived for ``--silence`` seconds: the launcher's host or the link to it is gone.

The watcher exits with the program's exit code (128 + N when the program was killed by signal N, as a shell
reports it). Run as ``python -m gluon_pdqn.parallel.remote [--grace S] [--silence S] -- PROGRAM ARGS...``;
it imports nothing heavy (not MXNet), so it starts in a fraction of a second.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

HEARTBEAT_SECONDS = 1.0  # how often the launcher writes a heartbeat byte to each ssh
SILENCE_SECONDS = 15.0  # heartbeats missed for this long: the launcher is unreachable
GRACE_SECONDS = 30  # from SIGTERM to SIGKILL
KILL_NOW = b"!"  # sent by the launcher before it closes the input: SIGKILL at once (nothing to save)


def signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the process group led by ``pid`` (started with ``start_new_session``), if it is there."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def die_with_parent(parent_pid: int, libc) -> None:
    """In a child before it runs its program: SIGKILL when its parent's thread dies (PR_SET_PDEATHSIG).

    A parent killed by SIGKILL (or by the out-of-memory killer) can do nothing itself: without this its
    children live on as orphans. ``libc`` is ``ctypes.CDLL(None)``, loaded before the fork.
    """
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


def watch(program: list[str], grace: float, silence: float) -> int:
    """Run ``program`` until it exits, or until the launcher is gone; return its exit code."""
    libc, watcher = ctypes.CDLL(None), os.getpid()
    child = subprocess.Popen(program, stdin=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=lambda: die_with_parent(watcher, libc))  # a SIGKILLed watcher leaves no orphan
    last_heard = [time.monotonic()]
    input_closed, kill_now = threading.Event(), threading.Event()

    def listen() -> None:
        while data := sys.stdin.buffer.read1(64):
            last_heard[0] = time.monotonic()
            if KILL_NOW in data:
                kill_now.set()
        input_closed.set()

    threading.Thread(target=listen, daemon=True).start()
    # The watcher itself ends the program on SIGTERM or SIGHUP too (sshd sends SIGHUP when the session ends).
    ending = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, lambda *_: ending.set())
    stopping = False
    while child.poll() is None and not stopping:
        stopping = input_closed.is_set() or ending.is_set()  # the launcher ends the job (or died)
        if not stopping and time.monotonic() - last_heard[0] > silence:
            print(f"remote watcher on {os.uname().nodename}: no heartbeat from the launcher for {silence:g} s; "
                  f"ending process {child.pid}", file=sys.stderr, flush=True)
            stopping = True
        time.sleep(0.2)
    if child.poll() is None:
        signal_group(child.pid, signal.SIGKILL if kill_now.is_set() else signal.SIGTERM)
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            signal_group(child.pid, signal.SIGKILL)
            child.wait()
    signal_group(child.pid, signal.SIGKILL)  # whatever the program started goes with it
    code = child.returncode
    return 128 - code if code < 0 else code  # as a shell reports a process killed by a signal


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gluon_pdqn.parallel.remote", description=__doc__.split("\n")[0])
    parser.add_argument("--grace", type=float, default=GRACE_SECONDS)
    parser.add_argument("--silence", type=float, default=SILENCE_SECONDS)
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        parser.error("no program to run")
    code = watch(program, args.grace, args.silence)
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: the thread that reads ssh's input may be blocked in that read


if __name__ == "__main__":
    main()
