"""``gluon-pdqn launch``: start a parameter-server job (scheduler, servers, workers) and see it to its end.

ps-lite, behind MXNet's ``dist_sync``/``dist_async`` kvstores, reads its topology from ``DMLC_*`` variables.
The dmlc tracker inside the mxnet wheel does not run on Python 3.11, so this is the project's own launcher:

- every process gets its role, the scheduler's address and the job's size; the scheduler's port is chosen
  free (or given), and everything binds to loopback unless an interface is named (ps-lite has no
  authentication, and a server unpickles the optimizer it is sent: anyone who reaches its port runs code);
- each child's output lines are prefixed with its role and rank; on this machine, each server and worker
  is given its own port (``PORT``) in increasing order, because ps-lite ranks the nodes of one host by port:
  so ``[worker 1]`` is kvstore rank 1 (a remote node picks its own port, and its rank may differ from its label);
- the launcher watches every child: when one exits with an error or is killed, or the deadline passes, it
  ends the whole job (each child's process group) and exits non-zero naming the process; ps-lite itself
  would leave the survivors blocked in ``push`` or in its exit barrier forever;
- Ctrl-C (or SIGTERM) is passed to the workers, which write a checkpoint; then the servers and the scheduler
  are ended.

``--launcher local`` runs every process here. ``ssh`` runs servers and workers on the hosts of a hostfile
(round robin) through ``ssh host 'cd DIR && env DMLC_...=... COMMAND'``; ``slurm`` and ``mpi`` wrap each
process in ``srun``/``mpirun -np 1`` (the scheduler stays on this machine). Those three need ``--interface``:
the scheduler must listen where the other machines reach it (ssh to this machine's own loopback names aside).
ssh does not pass signals to the remote command and killing ssh leaves it running, so over ssh the command
is watched by its remote shell: it is ended (SIGTERM, on which workers write a checkpoint) when ssh's input
closes, which the launcher does when it stops the job, and the operating system does if the launcher dies.
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from .. import OMP_THREADS_SET_BY_USER, physical_cores
from ..errors import UserError

LOOPBACK = "127.0.0.1"
EXIT_GRACE_SECONDS = 3.0  # once every worker has exited, how long the servers and scheduler may take to end


@dataclass
class Child:
    role: str  # scheduler, server or worker
    rank: int
    process: subprocess.Popen

    @property
    def name(self) -> str:
        return self.role if self.role == "scheduler" else f"{self.role} {self.rank}"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` different TCP ports nothing listens on now, in increasing order."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:  # all bound at once, so the kernel cannot hand out one port twice
            s.bind((host, 0))
        return sorted(s.getsockname()[1] for s in sockets)
    finally:
        for s in sockets:
            s.close()


def check_port_free(host: str, port: int) -> None:
    """Raise UserError if ``port`` on ``host`` is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            raise UserError(f"port {port} on {host} is in use; give another --port or leave it out to pick a "
                            "free one") from None


def interface_address(interface: str) -> str:
    """The IPv4 address of a network interface (``eth0``), for binding to it instead of loopback."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", interface[:15].encode()))  # SIOCGIFADDR
        except OSError:
            raise UserError(f"no network interface named {interface!r} with an IPv4 address") from None
    return socket.inet_ntoa(packed[20:24])


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
REMOTE_GRACE_SECONDS = 30  # from SIGTERM to SIGKILL for a command run over ssh


def remote_command(directory: str, env: dict[str, str], program: list[str],
                   grace: int = REMOTE_GRACE_SECONDS) -> str:
    """The shell command ssh runs: ``program`` in ``directory`` with ``env``, ended when ssh's input closes.

    The program runs in the background; a watcher reads the input ssh forwards and sends SIGTERM when it
    ends, and SIGKILL ``grace`` seconds later if the program is still there. The shell exits with the
    program's code.
    """
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # A background command reads /dev/null unless told otherwise: the watcher reads ssh's input through fd 3.
    # A process blocked in MXNet (waiting for a server that is gone) cannot run its SIGTERM handler: hence
    # the SIGKILL.
    return (f"cd {shlex.quote(directory)} && exec 3<&0 && {{ env {exports} {shlex.join(program)} & pid=$!; "
            "{ cat <&3 >/dev/null 2>&1; kill -TERM $pid 2>/dev/null; i=0; "
            f"while kill -0 $pid 2>/dev/null && [ $i -lt {grace} ]; do sleep 1; i=$((i+1)); done; "
            "kill -KILL $pid 2>/dev/null; } & watcher=$!; "
            "wait $pid; code=$?; kill $watcher 2>/dev/null; exit $code; }")


def role_environment(role: str, scheduler_host: str, port: int, servers: int, workers: int,
                     node_host: str) -> dict[str, str]:
    """The ``DMLC_*`` variables ps-lite reads for one process."""
    return {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": scheduler_host, "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_SERVER": str(servers), "DMLC_NUM_WORKER": str(workers), "DMLC_NODE_HOST": node_host,
            "PYTHONUNBUFFERED": "1"}


def _prefix_output(child: Child, stream, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(f"[{child.name}] {line}")
        out.flush()
    stream.close()


class Job:
    """A running parameter-server job.

    Args:
        workers, servers: how many of each.
        worker_command: the argument list each worker runs (``gluon-pdqn train --mode dist ...``).
        launcher: ``local``, ``ssh``, ``slurm`` or ``mpi``.
        hosts: the hostfile's hosts (ssh), used round robin for servers and workers.
        interface: bind to this interface's address instead of loopback.
        port: the scheduler's port (0: a free one).
        deadline: seconds after which the job is ended as failed (0: none).
        environment: more variables for every server and worker (carried over ssh and mpirun too).
        remote_grace: ssh only, seconds from SIGTERM to SIGKILL for a remote command when the job ends.
    """

    def __init__(self, workers: int, servers: int, worker_command: list[str], launcher: str = "local",
                 hosts: list[str] | None = None, interface: str | None = None, port: int = 0,
                 deadline: float = 0.0, out=None, environment: dict[str, str] | None = None,
                 remote_grace: int = REMOTE_GRACE_SECONDS):
        if workers < 1 or servers < 1:
            raise UserError("a job needs at least one worker and one server")
        if launcher not in ("local", "ssh", "slurm", "mpi"):
            raise UserError(f"unknown launcher {launcher!r}; use local, ssh, slurm or mpi")
        if launcher == "ssh" and not hosts:
            raise UserError("--launcher ssh needs -H HOSTFILE with one host per line")
        only_here = launcher == "ssh" and all(h in LOOPBACK_NAMES for h in hosts)
        if launcher != "local" and not interface and not only_here:
            raise UserError(f"--launcher {launcher} starts processes on other machines, which cannot reach a "
                            "scheduler on loopback: give --interface IF, the private network they share")
        self.workers, self.servers, self.launcher = workers, servers, launcher
        self.worker_command, self.hosts, self.deadline = worker_command, hosts or [], deadline
        self.environment, self.remote_grace = dict(environment or {}), remote_grace
        self.out = out or sys.stdout
        self.host = interface_address(interface) if interface else LOOPBACK
        if port:
            check_port_free(self.host, port)
        ports = free_ports(1 + servers + workers, self.host)
        self.port = port or ports.pop()
        # Local nodes listen on increasing ports in launch order, which makes ps-lite's ranks the launch order.
        # Should one be taken meanwhile, ps-lite binds another at random: only the labels would then differ.
        self._node_ports = ports[:servers + workers]
        self.children: list[Child] = []
        self._threads: list[threading.Thread] = []

    def _command(self, role: str, index: int, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """Argument list and environment of one process, wrapped for the launcher."""
        program = ([sys.executable, "-c", "import mxnet"] if role != "worker" else self.worker_command)
        full_env = {**os.environ, **env}
        if self.launcher == "local" or role == "scheduler":
            return program, full_env
        if self.launcher == "ssh":
            remote = remote_command(os.getcwd(), env, program, self.remote_grace)
            return ["ssh", "-o", "BatchMode=yes", self._ssh_host(role, index), remote], dict(os.environ)
        if self.launcher == "slurm":
            return ["srun", "--ntasks=1", "--nodes=1", "--export=ALL", *program], full_env
        return ["mpirun", "-np", "1", *sum((["-x", k] for k in env), []), *program], full_env

    def _local_processes(self) -> int:
        """Servers and workers that run on this machine."""
        if self.launcher == "local":
            return self.servers + self.workers
        if self.launcher == "ssh":
            return sum(self._ssh_host(role, i) in LOOPBACK_NAMES for role, count in
                       (("server", self.servers), ("worker", self.workers)) for i in range(count))
        return 1

    def _ssh_host(self, role: str, index: int) -> str:
        """Servers, then workers, round robin over the hostfile."""
        return self.hosts[(index if role == "server" else self.servers + index) % len(self.hosts)]

    def _start(self, role: str, rank: int) -> None:
        here = (self.launcher == "local" or role == "scheduler"
                or (self.launcher == "ssh" and self._ssh_host(role, rank) in LOOPBACK_NAMES))
        node_host = self.host if here else ""
        env = role_environment(role, self.host, self.port, self.servers, self.workers, node_host)
        if role != "scheduler":
            env.update(self.environment)
        if not node_host:
            del env["DMLC_NODE_HOST"]  # a remote process binds to its own machine's address
        elif role != "scheduler":
            env["PORT"] = str(self._node_ports[rank if role == "server" else self.servers + rank])
            if not OMP_THREADS_SET_BY_USER:
                # The processes here share this machine's cores: each gets its share of OpenMP threads.
                env["OMP_NUM_THREADS"] = str(max(1, physical_cores() // self._local_processes()))
        command, full_env = self._command(role, rank, env)
        try:
            # Over ssh the input stays open for as long as the process should run (see remote_command).
            stdin = subprocess.PIPE if self.launcher == "ssh" and role != "scheduler" else subprocess.DEVNULL
            process = subprocess.Popen(command, env=full_env, stdin=stdin, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, start_new_session=True)
        except FileNotFoundError:
            self.stop()
            raise UserError(f"cannot start {role}: {command[0]} not found") from None
        child = Child(role, rank, process)
        self.children.append(child)
        thread = threading.Thread(target=_prefix_output, args=(child, process.stdout, self.out), daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> None:
        """Start the scheduler, then the servers, then the workers."""
        if self.host != LOOPBACK:
            self.out.write(f"warning: the job listens on {self.host}:{self.port}; ps-lite has no authentication "
                           "and its servers unpickle what they are sent: run it on a private network only\n")
        self._start("scheduler", 0)
        for rank in range(self.servers):
            self._start("server", rank)
        for rank in range(self.workers):
            self._start("worker", rank)

    def wait(self) -> int:
        """Watch the job until it ends; return 0, or raise JobFailed naming the process that failed."""
        started = time.monotonic()
        interrupted: list[int] = []

        def on_signal(signum, _frame):
            interrupted.append(signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            workers_done_at = None
            while True:
                if interrupted:
                    return self._interrupt(interrupted[0])
                for child in self.children:
                    code = child.process.poll()
                    if code not in (None, 0):
                        how = (f"was killed by {signal.Signals(-code).name}" if code < 0
                               else f"exited with code {code}")
                        self.stop()
                        raise JobFailed(f"{child.name} {how}; the job was stopped")
                workers = [c for c in self.children if c.role == "worker"]
                if all(c.process.poll() == 0 for c in workers):
                    workers_done_at = workers_done_at or time.monotonic()
                    if all(c.process.poll() is not None for c in self.children):
                        return 0
                    if time.monotonic() - workers_done_at > EXIT_GRACE_SECONDS:
                        self.stop()
                        return 0
                if self.deadline and time.monotonic() - started > self.deadline:
                    self.stop()
                    raise JobFailed(f"the job passed its deadline of {self.deadline:g} s and was stopped")
                time.sleep(0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            for thread in self._threads:
                thread.join(timeout=2)

    def _interrupt(self, signum: int) -> int:
        """Pass the signal to the workers (they checkpoint), give them time, then end everything.

        The servers keep running meanwhile: a worker waiting on them could not act on the signal.
        """
        for child in self.children:
            if child.role == "worker" and child.process.poll() is None:
                if child.process.stdin is not None:  # over ssh: the remote shell sends SIGTERM
                    child.process.stdin.close()
                else:
                    _signal_group(child.process, signal.SIGINT)
        limit = time.monotonic() + 60
        while time.monotonic() < limit and any(c.process.poll() is None for c in self.children
                                               if c.role == "worker"):
            time.sleep(0.2)
        self.stop()
        return 128 + signum

    def stop(self) -> None:
        """End every child's process group: SIGTERM, then SIGKILL what is left after a few seconds.

        Children over ssh first have their input closed, which ends their remote command.
        """
        for child in self.children:
            if child.process.stdin is not None:
                child.process.stdin.close()
        for child in self.children:
            if child.process.poll() is None:
                _signal_group(child.process, signal.SIGTERM)
        limit = time.monotonic() + 5
        for child in self.children:
            try:
                child.process.wait(max(0.0, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
        for child in self.children:  # the whole group: processes a child started die with it
            _signal_group(child.process, signal.SIGKILL)


class JobFailed(Exception):
    """A process of the job failed; the job has been stopped."""

    exit_code = 1


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
