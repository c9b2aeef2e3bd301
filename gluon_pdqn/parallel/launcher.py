"""``gluon-pdqn launch``: start a parameter-server job (scheduler, servers, workers) and see it to its end.

ps-lite, behind MXNet's ``dist_sync``/``dist_async`` kvstores, reads its topology from ``DMLC_*`` variables.
The dmlc tracker inside the mxnet wheel does not run on Python 3.11, so this is the project's own launcher:

- every process gets its role, the scheduler's address and the job's size; the scheduler's port is chosen
  free (or given), and everything binds to loopback unless an interface is named (ps-lite has no
  authentication, and a server unpickles the optimizer it is sent: anyone who reaches its port runs code);
- each child's output lines are prefixed with its role and rank; on this machine, each server and worker
  is given its own port (``PORT``) in increasing order, because ps-lite ranks the nodes of one host by port:
  so ``[worker 1]`` is kvstore rank 1 (a remote node picks its own port, and its rank may differ from its label);
- the launcher watches every child: when one exits with an error or is killed, the deadline passes, or a
  worker reports no progress for ``--stall-timeout`` seconds (start-up included: lost messages leave ps-lite
  waiting forever), it ends the whole job (each child's process group) and exits non-zero naming the process
  and the last checkpoint of every worker; ps-lite itself would leave the survivors blocked in ``push`` or in
  its exit barrier forever. When a worker failed, the others are first asked to checkpoint, as on Ctrl-C
  (in dist_sync they cannot: they stop only together, with the failed worker; their last checkpoint stands).
  Workers report their progress and checkpoints on their output (``ProgressReports``: lines the launcher
  reads and does not show);
- Ctrl-C (or SIGTERM) is passed to the workers, which write a checkpoint (dist_sync workers first agree on
  the update at which they all stop); then the servers and the scheduler are ended, and the launcher says
  which workers wrote a checkpoint and which did not;
- a launcher killed outright takes its children with it (PR_SET_PDEATHSIG).

``--launcher local`` runs every process here. ``ssh`` runs servers and workers on the hosts of a hostfile
(round robin) through ``ssh host 'cd DIR && exec env DMLC_...=... python -m gluon_pdqn.parallel.remote --
COMMAND'``; ``mpi`` wraps each in Open MPI's ``mpirun -np 1 [--host HOST]`` (the same round robin when given a
hostfile), ``slurm`` in ``srun``; the scheduler stays on this machine. Those three need ``--interface``: the
scheduler must listen where the other machines reach it (ssh to this machine's own loopback names aside), and
a remote node listens on the interface of that name on its own host (``DMLC_INTERFACE``). ssh does not pass
signals on, killing ssh leaves the remote command running, and a link that goes down is noticed by neither
side for hours: so the launcher writes a heartbeat to every ssh's input each second and ssh gives up on a
host silent for 15 s, while the remote watcher (``parallel.remote``) ends its command (SIGTERM, on which a
worker writes its checkpoint, SIGKILL 30 s later) when that input closes or its heartbeats stop for 15 s.
Variables set here for ps-lite and MXNet (``PS_*``, ``MXNET_*``) reach every process.
"""
from __future__ import annotations

import ctypes
import math
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
from ..errors import JobPeerLost, UserError
from . import horovod, remote

LOOPBACK = "127.0.0.1"
EXIT_GRACE_SECONDS = 3.0  # once every worker has exited, how long the servers and scheduler may take to end


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
SERVER_PROGRAM = ("-m", "gluon_pdqn.parallel.server")  # the arguments of a server's or scheduler's python
SSH_ALIVE_SECONDS, SSH_ALIVE_COUNT = 5, 3  # ssh gives up on a host that has not answered for 15 s


def remote_command(directory: str, env: dict[str, str], program: list[str],
                   grace: float = remote.GRACE_SECONDS) -> str:
    """The shell command ssh runs: ``program`` in ``directory`` with ``env``, under the watcher of
    ``parallel.remote`` (which ends it when ssh's input ends or its heartbeats stop)."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    watcher = [sys.executable, "-m", "gluon_pdqn.parallel.remote", "--grace", f"{grace:g}", "--"]
    # A missing checkout exits 127, as a missing program does (see Job._describe_exit).
    missing = shlex.quote(f"no directory {directory} on this host")
    return (f"{{ cd {shlex.quote(directory)} 2>/dev/null || {{ echo {missing} >&2; exit 127; }}; }} && "
            f"exec env {exports} {shlex.join(watcher + program)}")


def role_environment(role: str, scheduler_host: str, port: int, servers: int, workers: int,
                     node_host: str) -> dict[str, str]:
    """The ``DMLC_*`` variables ps-lite reads for one process."""
    return {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": scheduler_host, "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_SERVER": str(servers), "DMLC_NUM_WORKER": str(workers), "DMLC_NODE_HOST": node_host,
            "PYTHONUNBUFFERED": "1"}


def is_launched_worker() -> bool:
    """Whether this process is a worker of a job (a parameter-server worker, or a Horovod rank): its job's run
    directory is shared, and it leaves with ``os._exit`` (see ``cli.main``)."""
    return os.environ.get("DMLC_ROLE") == "worker" or horovod.is_rank()


REPORT_MARK = "@gluon-pdqn"  # a worker's output line that reports to the launcher (not shown to the user)
REPORTS_VARIABLE = "GLUON_PDQN_REPORTS"  # set for the workers of a launched job: they report progress
REPORT_SECONDS = 5.0  # how often a worker reports its progress
STALL_SECONDS = 300.0  # a worker that reports no progress for this long ends the job (launch --stall-timeout)
INTERRUPT_GRACE_SECONDS = 60.0  # after Ctrl-C, how long the workers have to write their checkpoints
# After a worker failed and the others were asked to save their work, how long each has to report that its loop
# stopped: one blocked in ps-lite (a dist_sync round that waits for the failed worker's push) never does.
SAVE_NOTICE_SECONDS = 5.0


@dataclass
class Child:
    role: str  # scheduler, server or worker
    rank: int
    process: subprocess.Popen
    progress: tuple | None = None  # the last progress a worker reported: (env steps, updates, eval steps)
    progressed_at: float = 0.0  # when it last changed (the start, until it first does)
    checkpoint: int | None = None  # env steps of the last checkpoint a worker reported
    saving: bool = False  # a worker reported that its loop has stopped (its last checkpoint follows)
    saved: bool = False  # a worker reported that its last checkpoint is on disk
    error: str | None = None  # the one-line error it printed last ("error: ..."), if any
    last_line: str | None = None  # the last line it printed (a native crash's own words, before the signal)
    output: threading.Thread | None = None  # the thread that prints its output
    ended_at: float = math.inf  # when its process ended (time.monotonic()), seen by its output thread

    @property
    def name(self) -> str:
        return self.role if self.role == "scheduler" else f"{self.role} {self.rank}"

    def take_report(self, fields: list[str]) -> None:
        """A report line's fields: ``progress ENV_STEPS UPDATES EVAL_STEPS``, ``checkpoint ENV_STEPS PATH``,
        ``saving`` or ``saved ENV_STEPS PATH``."""
        if fields == ["saving"]:
            self.saving = True
        elif fields[:1] == ["saved"] and len(fields) >= 2:
            self.saving = self.saved = True
            self.checkpoint = int(fields[1])
        elif fields[:1] == ["progress"] and len(fields) == 4:
            progress = tuple(int(f) for f in fields[1:])
            if progress != self.progress:
                self.progress, self.progressed_at = progress, time.monotonic()
        elif fields[:1] == ["checkpoint"] and len(fields) >= 2:
            self.checkpoint = int(fields[1])


# Signals a process sends itself when it crashes below Python (not those another process sends to end it).
CRASH_SIGNALS = {signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL}
# Signals another process sends to end one (a user, the out-of-memory killer): never a reaction to a peer's end.
ENDING_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _prefix_output(child: Child, stream, out) -> None:
    for line in iter(stream.readline, ""):
        if line.startswith(REPORT_MARK):
            try:
                child.take_report(line.split()[1:])
            except ValueError:
                out.write(f"[{child.name}] {line}")  # not a report after all
            continue
        if line.startswith("error: "):
            child.error = line[len("error: "):].strip()
        if line.strip():
            child.last_line = line.strip()
        out.write(f"[{child.name}] {line}")
        out.flush()
    stream.close()
    child.process.wait()
    child.ended_at = time.monotonic()


class Job:
    """A running parameter-server job (``HorovodJob``: a Horovod job, started and watched the same way).

    Args:
        workers, servers: how many of each.
        worker_command: the argument list each worker runs (``gluon-pdqn train --mode dist ...``).
        launcher: ``local``, ``ssh``, ``slurm`` or ``mpi``.
        hosts: the hostfile's hosts (ssh, mpi), used round robin for servers and workers.
        interface: bind to this interface's address instead of loopback; remote processes bind to the
            interface of that name on their own host (``DMLC_INTERFACE``).
        port: the scheduler's port (0: a free one).
        deadline: seconds after which the job is ended as failed (0: none).
        stall_timeout: seconds a worker may go without reporting progress (env steps, updates, evaluation
            steps) before the job is ended as failed, its start-up included (0: no limit).
        environment: more variables for every server and worker (carried over ssh and mpirun too).
        remote_grace: ssh only, seconds from SIGTERM to SIGKILL for a remote command when the job ends.
        ssh_config: ssh and mpi, an ssh client configuration file (``ssh -F``).
    """

    def __init__(self, workers: int, servers: int, worker_command: list[str], launcher: str = "local",
                 hosts: list[str] | None = None, interface: str | None = None, port: int = 0,
                 deadline: float = 0.0, out=None, environment: dict[str, str] | None = None,
                 remote_grace: float = remote.GRACE_SECONDS, stall_timeout: float = STALL_SECONDS,
                 ssh_config: str | None = None):
        if workers < 1 or servers < self.SERVERS_NEEDED:
            raise UserError("a job needs at least one worker and one server")
        if launcher not in ("local", "ssh", "slurm", "mpi"):
            raise UserError(f"unknown launcher {launcher!r}; use local, ssh, slurm or mpi")
        if launcher == "ssh" and not hosts:
            raise UserError("--launcher ssh needs -H HOSTFILE with one host per line")
        if ssh_config and not os.path.isfile(ssh_config):
            raise UserError(f"--ssh-config {ssh_config} is not a file")
        only_here = launcher == "ssh" and all(h in LOOPBACK_NAMES for h in hosts)
        if launcher != "local" and not interface and not only_here:
            raise UserError(f"--launcher {launcher} starts processes on other machines, which cannot reach a "
                            "scheduler on loopback: give --interface IF, the private network they share")
        if hosts is not None and launcher in ("local", "slurm"):
            raise UserError(f"--launcher {launcher} takes no hostfile (-H is for ssh and mpi)")
        self.workers, self.servers, self.launcher = workers, servers, launcher
        self.worker_command, self.hosts, self.deadline = worker_command, hosts or [], deadline
        self.stall_timeout, self.ssh_config, self.interface = stall_timeout, ssh_config, interface
        self.environment, self.remote_grace = {**(environment or {}), REPORTS_VARIABLE: "1"}, remote_grace
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
        self._stopped = threading.Event()
        self._libc = ctypes.CDLL(None)  # loaded here: a child between fork and exec must not

    SERVERS_NEEDED = 1
    EXPOSED = "ps-lite has no authentication and its servers unpickle what they are sent"  # off loopback

    def _command(self, role: str, index: int, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """Argument list and environment of one process, wrapped for the launcher."""
        program = [sys.executable, *SERVER_PROGRAM] if role != "worker" else self.worker_command
        if self.launcher == "local" or role == "scheduler":
            return program, {**os.environ, **env}
        if self.interface and "DMLC_NODE_HOST" not in env:
            env = {**env, "DMLC_INTERFACE": self.interface}  # a remote node listens there, not elsewhere
        if self.launcher == "ssh":
            return [*self._ssh(), self._host_of(role, index),
                    remote_command(os.getcwd(), env, program, self.remote_grace)], dict(os.environ)
        full_env = {**os.environ, **env}
        if self.launcher == "slurm":
            return ["srun", "--ntasks=1", "--nodes=1", "--export=ALL", *program], full_env
        return [*self._mpirun(role, index), *sum((["-x", k] for k in env), []), *program], full_env

    def _mpirun(self, role: str, index: int) -> list[str]:
        """Open MPI's mpirun for one process: on its host of the hostfile (if any), over the interface."""
        command = ["mpirun", "-np", "1"]
        if self.hosts:
            command += ["--host", self._host_of(role, index)]
        if os.geteuid() == 0:
            command.append("--allow-run-as-root")  # Open MPI refuses root without it (containers run as root)
        if self.interface:  # Open MPI's own traffic too
            command += ["--mca", "oob_tcp_if_include", self.interface, "--mca", "btl_tcp_if_include", self.interface]
        if self.ssh_config:
            command += ["--mca", "plm_rsh_agent", shlex.join(self._ssh())]
        return command

    def _ssh(self) -> list[str]:
        """The ssh client and its options: no prompts, and a host that stops answering is given up on."""
        return ["ssh", "-o", "BatchMode=yes", "-o", f"ServerAliveInterval={SSH_ALIVE_SECONDS}",
                "-o", f"ServerAliveCountMax={SSH_ALIVE_COUNT}", *(["-F", self.ssh_config] if self.ssh_config else [])]

    def _local_processes(self) -> int:
        """Servers and workers that run on this machine."""
        if self.launcher == "local":
            return self.servers + self.workers
        if self.launcher == "ssh":
            return sum(self._host_of(role, i) in LOOPBACK_NAMES for role, count in
                       (("server", self.servers), ("worker", self.workers)) for i in range(count))
        return 1

    def _host_of(self, role: str, index: int) -> str:
        """Servers, then workers, round robin over the hostfile (ssh and mpi)."""
        return self.hosts[(index if role == "server" else self.servers + index) % len(self.hosts)]

    def _here(self, role: str, rank: int) -> bool:
        """Whether a process runs on this machine."""
        return (self.launcher == "local" or role == "scheduler"
                or (self.launcher == "ssh" and self._host_of(role, rank) in LOOPBACK_NAMES))

    def _role_environment(self, role: str, rank: int, node_host: str) -> dict[str, str]:
        """The variables that place one process in the job: ps-lite's ``DMLC_*``."""
        env = role_environment(role, self.host, self.port, self.servers, self.workers, node_host)
        if not node_host:
            del env["DMLC_NODE_HOST"]  # a remote process binds to its own machine's address
        return env

    def _start(self, role: str, rank: int) -> None:
        node_host = self.host if self._here(role, rank) else ""
        env = self._role_environment(role, rank, node_host)
        if role != "scheduler":
            env.update(self.environment)
            if node_host:
                env["PORT"] = str(self._node_ports[rank if role == "server" else self.servers + rank])
                if not OMP_THREADS_SET_BY_USER:
                    # The processes here share this machine's cores: each gets its share of OpenMP threads.
                    env["OMP_NUM_THREADS"] = str(max(1, physical_cores() // self._local_processes()))
        command, full_env = self._command(role, rank, env)
        launcher_pid = os.getpid()
        try:
            # Over ssh the input stays open for as long as the process should run (see parallel.remote).
            stdin = subprocess.PIPE if self.launcher == "ssh" and role != "scheduler" else subprocess.DEVNULL
            # A launcher killed outright takes its children along; over ssh the child is the ssh client, whose
            # death ends the remote program (see parallel.remote).
            process = subprocess.Popen(command, env=full_env, stdin=stdin, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                       preexec_fn=lambda: remote.die_with_parent(launcher_pid, self._libc))
        except FileNotFoundError:
            self.stop()
            raise UserError(f"cannot start {role}: {command[0]} not found") from None
        child = Child(role, rank, process, progressed_at=time.monotonic())
        self.children.append(child)
        thread = child.output = threading.Thread(target=_prefix_output, args=(child, process.stdout, self.out),
                                                 daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> None:
        """Start the scheduler, then the servers, then the workers (and, over ssh, their heartbeats)."""
        if self.host != LOOPBACK:
            self.out.write(f"warning: the job listens on {self.host}:{self.port}; {self.EXPOSED}: run it on a "
                           "private network only\n")
        self._start_coordination()
        for rank in range(self.workers):
            self._start("worker", rank)
        if self.launcher == "ssh":
            threading.Thread(target=self._send_heartbeats, daemon=True).start()

    def _start_coordination(self) -> None:
        """Start what the workers meet through: ps-lite's scheduler and the servers."""
        self._start("scheduler", 0)
        for rank in range(self.servers):
            self._start("server", rank)

    def _send_heartbeats(self) -> None:
        """Tell every remote watcher, through its ssh, that the launcher is alive (see parallel.remote)."""
        while not self._stopped.wait(remote.HEARTBEAT_SECONDS):
            for child in self.children:
                if child.process.stdin is not None and not child.process.stdin.closed:
                    try:
                        child.process.stdin.write("\n")
                        child.process.stdin.flush()
                    except (OSError, ValueError):  # ssh has exited, or the job is being stopped
                        pass

    def checkpoints(self) -> str:
        """The last checkpoint each worker reported, in words."""
        return ", ".join(f"{c.name} at {c.checkpoint:,} env steps" if c.checkpoint is not None
                         else f"{c.name} none" for c in self.children if c.role == "worker")

    def _fail(self, what: str) -> JobFailed:
        self.stop()
        return JobFailed(f"{what}; the job was stopped; last checkpoints: {self.checkpoints()}")

    def _stalled(self) -> str | None:
        """A worker that has reported no progress for ``stall_timeout`` seconds, in words, or None."""
        if not self.stall_timeout:
            return None
        now = time.monotonic()
        for child in self.children:
            if child.role != "worker" or now - child.progressed_at <= self.stall_timeout:
                continue
            if child.progress is None:
                return (f"{child.name} reported no progress within {self.stall_timeout:g} s of its start (stuck "
                        "joining the job? a scheduler it cannot reach, or lost messages)")
            return (f"{child.name} made no progress for {self.stall_timeout:g} s (at {child.progress[0]:,} env "
                    f"steps, {child.progress[1]:,} updates)")
        return None

    def wait(self) -> int:
        """Watch the job until it ends; return 0, or 128 + N after signal N, or raise JobFailed naming the
        process that failed (or stalled)."""
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
                if any(c.process.poll() not in (None, 0) for c in self.children):
                    time.sleep(0.2)  # the others that fail with it, or because of it
                    child = self._first_failed()
                    failure = self._failure(child)
                    if child.role == "worker":  # the servers still run: the others can save their work
                        self._save_survivors(give_up=lambda: bool(interrupted))
                    raise self._fail(failure)
                workers = [c for c in self.children if c.role == "worker"]
                if all(c.process.poll() == 0 for c in workers):
                    workers_done_at = workers_done_at or time.monotonic()
                    if all(c.process.poll() is not None for c in self.children):
                        self._stopped.set()
                        return 0
                    if time.monotonic() - workers_done_at > EXIT_GRACE_SECONDS:
                        self.stop()
                        return 0
                elif (stalled := self._stalled()) is not None:
                    raise self._fail(stalled)
                if self.deadline and time.monotonic() - started > self.deadline:
                    raise self._fail(f"the job passed its deadline of {self.deadline:g} s")
                time.sleep(0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            for thread in self._threads:
                thread.join(timeout=2)

    def _first_failed(self) -> Child:
        """Of the children that failed, the one that failed first, not one that only saw it fail and ended too.

        A process that saw another end says so (``JobPeerLost``), or it may crash instead (a Horovod rank died
        of SIGABRT once as its killed peer's connection closed): so one ended by a signal from outside (SIGKILL
        from the user or the out-of-memory killer) comes first, then one that did not name a lost peer, then the
        one that ended earliest.
        """
        failed = [c for c in self.children if c.process.poll() not in (None, 0)]
        for child in failed:
            if child.output is not None:
                child.output.join(timeout=2)  # its last lines and the time it ended are still being read
        return min(failed, key=lambda c: (self._signal_of(c, c.process.returncode) not in ENDING_SIGNALS,
                                          JobPeerLost.WORDS in (c.error or ""), c.ended_at))

    def _signal_of(self, child: Child, code: int) -> signal.Signals | None:
        """The signal that ended ``child``, if one did: a local process's own (a negative exit code), or a
        remote one's, reported by the remote watcher as a shell does (128 + N)."""
        if code < 0:
            return signal.Signals(-code)
        if (self.launcher == "ssh" and child.process.stdin is not None and code > 128
                and code - 128 in signal.valid_signals()):
            return signal.Signals(code - 128)
        return None

    def _failure(self, child: Child) -> str:
        """One line on a child that failed: what it is, where it ran, how it ended, and its own error line (a
        worker's names what failed inside it, an apex actor for instance). Its output has been read to the end
        (``_first_failed``)."""
        code = child.process.returncode
        how, where = self._describe_exit(child, code), ""
        if self.launcher in ("ssh", "mpi") and child.role != "scheduler":
            host = self._host_of(child.role, child.rank)
            where = "" if host in how else f" on {host}"
        if child.error:
            return f"{child.name}{where} {how}: {child.error}"
        if self._signal_of(child, code) in CRASH_SIGNALS and child.last_line:
            # A crash below Python (an abort in a C++ library, a segmentation fault) prints its reason last.
            return f"{child.name}{where} {how}; its last line: {child.last_line}"
        return f"{child.name}{where} {how}"

    def _describe_exit(self, child: Child, code: int) -> str:
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        if self.launcher == "ssh" and child.process.stdin is not None:
            host = self._host_of(child.role, child.rank)
            if code == 255:
                return f"lost its ssh connection to {host} (ssh exit code 255)"
            if code == 127:
                return (f"could not start on {host}: the checkout {os.getcwd()} or {sys.executable} is missing "
                        "there (every host needs both at the same path)")
            if (ended_by := self._signal_of(child, code)) is not None:  # the remote watcher's report
                return f"was killed by {ended_by.name} on {host}"
        return f"exited with code {code}"

    def _interrupt(self, signum: int) -> int:
        """Pass the signal to the workers (they checkpoint), give them time, then end everything; say which
        workers wrote a checkpoint on the signal and which did not.

        The servers keep running meanwhile: a worker waiting on them could not act on the signal.
        """
        workers = [c for c in self.children if c.role == "worker" and c.process.poll() is None]
        before = {c.rank: c.checkpoint for c in workers}
        for child in workers:
            _ask_to_save(child)
        limit = time.monotonic() + INTERRUPT_GRACE_SECONDS
        while time.monotonic() < limit and any(c.process.poll() is None for c in workers):
            time.sleep(0.2)
        outcome = []
        for child in workers:
            wrote = child.checkpoint is not None and child.checkpoint != before[child.rank]
            if child.process.poll() is None:
                outcome.append(f"{child.name} did not end within {INTERRUPT_GRACE_SECONDS:g} s and was killed")
            elif not _has_work_to_save(child):
                outcome.append(f"{child.name} was still joining the job (nothing to save)")
            elif wrote:
                outcome.append(f"{child.name} wrote a checkpoint at {child.checkpoint:,} env steps")
            else:
                outcome.append(f"{child.name} ended without a new checkpoint")
        self.stop()
        self.out.write(f"job interrupted by {signal.Signals(signum).name}: {'; '.join(outcome)}; last checkpoints: "
                       f"{self.checkpoints()}\n")
        self.out.flush()
        return 128 + signum

    def _save_survivors(self, give_up) -> None:
        """After a worker failed: ask the others to checkpoint their work, as on Ctrl-C, and wait for those
        whose loop stops. One that has not reported within ``SAVE_NOTICE_SECONDS`` that its loop stopped is
        blocked in ps-lite, or will be (in dist_sync the workers stop only together, in a round that waits for
        the failed worker's push): its last checkpoint stands. ``give_up()``: the launcher itself was
        interrupted."""
        survivors = [c for c in self.children if c.role == "worker" and c.process.poll() is None
                     and _has_work_to_save(c)]
        for child in survivors:
            _ask_to_save(child)
        start = time.monotonic()

        def saving(child: Child) -> bool:
            if child.process.poll() is not None or child.saved:
                return False  # ended, or saved (it may then wait in the job's exit barrier)
            return child.saving or time.monotonic() - start < SAVE_NOTICE_SECONDS

        while (any(saving(c) for c in survivors) and time.monotonic() - start < INTERRUPT_GRACE_SECONDS
               and not give_up()):
            time.sleep(0.1)

    def stop(self) -> None:
        """End every child's process group: SIGTERM, then SIGKILL what is left after a few seconds.

        Children over ssh first have their input closed, which ends their remote command: a worker that has
        joined the job gets SIGTERM (it writes a checkpoint), anything else SIGKILL at once.
        """
        self._stopped.set()
        for child in self.children:
            if child.process.stdin is not None:
                _end_remote(child)
        for child in self.children:
            if child.process.poll() is None:
                remote.signal_group(child.process.pid, signal.SIGTERM)
        limit = time.monotonic() + 5
        for child in self.children:
            try:
                child.process.wait(max(0.0, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                remote.signal_group(child.process.pid, signal.SIGKILL)
                child.process.wait()
        for child in self.children:  # the whole group: processes a child started die with it
            remote.signal_group(child.process.pid, signal.SIGKILL)


def _ask_to_save(child: Child) -> None:
    """Signal a worker to checkpoint and end: over ssh by closing its input (the remote watcher sends SIGTERM);
    here with SIGINT, or SIGKILL for one still joining the job (blocked in ps-lite, where SIGINT waits forever)."""
    if child.process.stdin is not None:
        _end_remote(child)
    else:
        remote.signal_group(child.process.pid, signal.SIGINT if _has_work_to_save(child) else signal.SIGKILL)


def _has_work_to_save(child: Child) -> bool:
    """A worker that has joined the job: it reports its progress from then on. (One still joining may be
    blocked in ps-lite for good; a server or the scheduler has nothing to save.)"""
    return child.role == "worker" and child.progress is not None


def _end_remote(child: Child) -> None:
    """Close the input of a child's ssh: its remote watcher ends the program, with SIGKILL at once if it has
    nothing to save."""
    if child.process.stdin.closed:
        return
    try:
        if not _has_work_to_save(child):
            child.process.stdin.write(remote.KILL_NOW.decode())
        child.process.stdin.close()
    except OSError:  # ssh has exited
        pass


class JobFailed(Exception):
    """A process of the job failed; the job has been stopped."""

    exit_code = 1


class ProgressReports:
    """On a worker of a launched job: report the run's progress and its checkpoints to the launcher.

    A thread writes ``@gluon-pdqn progress ENV_STEPS UPDATES EVAL_STEPS`` every ``REPORT_SECONDS`` (and once
    more on ``close``), and each checkpoint is reported as it is written, ``@gluon-pdqn checkpoint ENV_STEPS
    PATH``. When the session ends it writes ``saving`` once the loop has stopped and ``saved ENV_STEPS PATH``
    once the last checkpoint is on disk (also when it is a periodic one the loop just wrote). The launcher
    reads them from the worker's output (over ssh too) to end a job that makes no progress, to know which
    workers can still save their work when another failed, and to say which checkpoints exist when a job
    ends. The thread only reads the run's state: a main thread blocked in MXNet, waiting on a server that is
    gone, shows as progress that stopped.
    """

    def __init__(self, training, out=None):
        self.training, self.out = training, out or sys.stdout
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._saving_reported = self._saved_reported = False
        if training.newest_checkpoint is not None:  # resumed from it
            self._checkpoint_written(*training.newest_checkpoint)
        training.checkpoint_listeners.append(self._checkpoint_written)
        self._thread = threading.Thread(target=self._run, name="progress-reports", daemon=True)
        self._thread.start()

    @staticmethod
    def wanted() -> bool:
        """Whether this process is a worker of a job started by ``gluon-pdqn launch``."""
        return os.environ.get(REPORTS_VARIABLE) == "1" and is_launched_worker()

    def _write(self, line: str) -> None:
        with self._lock:
            self.out.write(f"{REPORT_MARK} {line}\n")
            self.out.flush()

    def _checkpoint_written(self, env_steps: int, path: str) -> None:
        self._write(f"checkpoint {env_steps} {path}")

    def _report_progress(self) -> None:
        self._write("progress " + " ".join(str(n) for n in self.training.progress()))

    def _report_ending(self) -> None:
        """``saving`` once the loop has stopped, ``saved ENV_STEPS PATH`` once its last checkpoint is written."""
        if self.training.ending and not self._saving_reported:
            self._write("saving")
            self._saving_reported = True
        if self.training.final_checkpoint is not None and not self._saved_reported:
            self._write("saved {} {}".format(*self.training.final_checkpoint))
            self._saved_reported = True

    def _run(self) -> None:
        self._report_progress()
        reported_at = time.monotonic()
        while not self._closed.wait(0.2):
            self._report_ending()
            if time.monotonic() - reported_at >= REPORT_SECONDS:
                self._report_progress()
                reported_at = time.monotonic()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._report_ending()
        self._report_progress()


class HorovodJob(Job):
    """A running Horovod job: its ranks (labelled ``worker R``, rank R), started and watched as a parameter-server
    job's workers are, and Horovod's rendezvous server in this process (``parallel.horovod.Rendezvous``), on the
    job's address only. There are no servers: the ranks exchange gradients with each other (Gloo's TCP pairs,
    bound to the interface ``HOROVOD_GLOO_IFACE`` names: loopback unless ``interface`` is given).

    Args: as ``Job``'s, without ``servers``; ``launcher`` is ``local`` or ``ssh``.
    """

    SERVERS_NEEDED = 0
    EXPOSED = "Horovod's rendezvous and Gloo have no authentication"

    def __init__(self, workers: int, worker_command: list[str], launcher: str = "local", **options):
        if launcher not in ("local", "ssh"):
            raise UserError(f"a Horovod job starts its ranks with --launcher local or ssh, not {launcher} (mpi "
                            "and slurm start parameter-server jobs)")
        super().__init__(workers, 0, worker_command, launcher=launcher, **options)
        self.rendezvous: horovod.Rendezvous | None = None
        hosts = [self._host_of("worker", rank) if self.launcher == "ssh" else "localhost"
                 for rank in range(workers)]
        self._slots = horovod.slots(hosts)

    @property
    def gloo_interface(self) -> str:
        """The interface the ranks' Gloo sockets bind to (on each rank's own host)."""
        return self.interface or "lo"

    def _start_coordination(self) -> None:
        """Start Horovod's rendezvous, on the job's address and port."""
        self.rendezvous = horovod.Rendezvous(self.host, self.port, self._slots)

    def _role_environment(self, role: str, rank: int, node_host: str) -> dict[str, str]:
        return {**horovod.rank_environment(self._slots[rank], self.host, self.port, self.gloo_interface),
                "PYTHONUNBUFFERED": "1"}

    def stop(self) -> None:
        super().stop()
        if self.rendezvous is not None:
            self.rendezvous.stop()
            self.rendezvous = None
