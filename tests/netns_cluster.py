"""Several hosts on one machine: network namespaces on a private bridge, each with a real OpenSSH server.

A ``NamespaceCluster`` of N hosts is N network namespaces ``<tag>h0`` ... with an interface ``cl0`` each,
addressed ``198.18.0.10``, ``198.18.0.11``, ... (198.18.0.0/15 is reserved for network tests, RFC 2544), joined
by a bridge that lives in a namespace of its own: nothing is added to the machine's own network, and no
traffic leaves the namespaces made here. Each host runs ``sshd`` on its address with host keys and a client
key made on the fly; ``ssh_config`` is the client configuration that reaches them (``ssh -F``). The
namespaces share the machine's file system, so the checkout and its ``.venv`` are at the same path on every
host, as a shared home directory makes them on a real cluster.

Needs root, ``ip netns`` and ``sshd`` (Debian's ``openssh-server``; ``ensure_sshd`` installs it with apt if it
is missing and apt can; ``ensure_mpirun`` does the same for Open MPI's ``openmpi-bin``). ``unavailable()`` says why a cluster cannot be built here, or None. Everything is torn
down on ``close`` (every process in the namespaces is killed, then the namespaces are deleted), and namespaces
left behind by a process that died before its ``close`` are removed by the next cluster built.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from gluon_pdqn.parallel.launcher import SERVER_PROGRAM

SUBNET = "198.18.0"
FIRST_HOST = 10  # host i has address 198.18.0.(10 + i)
INTERFACE = "cl0"
PREFIX = "pdqn"  # namespaces are named pdqn<pid>h<i> and pdqn<pid>sw
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


def _installed(program: str, package: str) -> str | None:
    """The path of ``program``, installing Debian's ``package`` with apt if needed; None if not possible."""
    def find():
        return shutil.which(program) or next((f"{d}/{program}" for d in ("/usr/sbin", "/usr/bin")
                                              if os.path.exists(f"{d}/{program}")), None)

    if find() or not shutil.which("apt-get"):
        return find()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(command, env=env, capture_output=True, stdin=subprocess.DEVNULL).returncode != 0:
            return None
    return find()


def ensure_sshd() -> str | None:
    """The path of sshd (Debian's openssh-server, installed with apt if missing), or None."""
    return _installed("sshd", "openssh-server")


def ensure_mpirun() -> str | None:
    """The path of Open MPI's mpirun (Debian's openmpi-bin, installed with apt if missing), or None."""
    return _installed("mpirun", "openmpi-bin")


def unavailable() -> str | None:
    """Why a cluster cannot be built on this machine, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not shutil.which("ip"):
        return "needs iproute2's ip"
    probe = f"{PREFIX}probe{os.getpid()}"
    if _run("ip", "netns", "add", probe, check=False).returncode != 0:
        return "cannot create network namespaces (ip netns add failed)"
    _run("ip", "netns", "del", probe, check=False)
    if not shutil.which("ssh") or not shutil.which("ssh-keygen") or not ensure_sshd():
        return "needs OpenSSH (ssh, ssh-keygen, sshd) and could not install openssh-server"
    return None


def namespace_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def processes_in_namespace(name: str) -> list[int]:
    """Every process whose network namespace is ``name``."""
    try:
        inode = namespace_inode(name)
    except FileNotFoundError:
        return []
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == inode and int(pid) != os.getpid():
                found.append(int(pid))
        except OSError:
            pass
    return found


def remove_stale_namespaces() -> None:
    """Delete the namespaces of clusters whose process is gone (one killed before it could clean up)."""
    listing = _run("ip", "netns", "list", check=False).stdout.split()
    for name in listing:
        if not name.startswith(PREFIX) or name.startswith(f"{PREFIX}probe"):
            continue
        digits = name[len(PREFIX):].split("h")[0].split("sw")[0]
        if digits.isdigit() and not os.path.exists(f"/proc/{digits}"):
            for pid in processes_in_namespace(name):
                _kill(pid)
            _run("ip", "netns", "del", name, check=False)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class NamespaceCluster:
    """``hosts`` namespace hosts with sshd; a context manager that tears everything down on exit."""

    def __init__(self, hosts: int = 3):
        self.size = hosts
        self.tag = f"{PREFIX}{os.getpid()}"
        self.names = [f"{self.tag}h{i}" for i in range(hosts)]
        self.addresses = [f"{SUBNET}.{FIRST_HOST + i}" for i in range(hosts)]
        self.switch = f"{self.tag}sw"
        self.directory = tempfile.mkdtemp(prefix="netns-cluster-")
        self.ssh_config = os.path.join(self.directory, "ssh_config")
        self._sshd: list[subprocess.Popen] = []

    # --- building and tearing down ---------------------------------------------------------------

    def __enter__(self) -> NamespaceCluster:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def build(self) -> None:
        remove_stale_namespaces()
        _run("ip", "netns", "add", self.switch)
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i, (name, address) in enumerate(zip(self.names, self.addresses)):
            _run("ip", "netns", "add", name)
            outside, inside = f"{self.tag}p{i}"[-15:], f"{self.tag}q{i}"[-15:]
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            _run("ip", "link", "set", outside, "netns", self.switch)
            _run("ip", "link", "set", inside, "netns", name)
            _run("ip", "-n", self.switch, "link", "set", outside, "master", "br0", "up")
            _run("ip", "-n", name, "link", "set", inside, "name", INTERFACE)
            _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", INTERFACE)
            _run("ip", "-n", name, "link", "set", INTERFACE, "up")
            _run("ip", "-n", name, "link", "set", "lo", "up")
        self._start_ssh()

    def _start_ssh(self) -> None:
        d = self.directory
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/client_key")
        shutil.copy(f"{d}/client_key.pub", f"{d}/authorized_keys")
        known_hosts = []
        for i, address in enumerate(self.addresses):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/host_key{i}")
            with open(f"{d}/host_key{i}.pub") as f:
                known_hosts.append(f"{address} {' '.join(f.read().split()[:2])}\n")
            with open(f"{d}/sshd_config{i}", "w") as f:
                f.write(f"ListenAddress {address}\nPort 22\nHostKey {d}/host_key{i}\nPidFile {d}/sshd{i}.pid\n"
                        f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
                        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                        "LogLevel ERROR\nMaxStartups 100\nMaxSessions 100\n")
            self._sshd.append(subprocess.Popen(
                ["ip", "netns", "exec", self.names[i], ensure_sshd(), "-D", "-e", "-f", f"{d}/sshd_config{i}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(f"{d}/sshd{i}.log", "w")))
        with open(f"{d}/known_hosts", "w") as f:
            f.writelines(known_hosts)
        with open(self.ssh_config, "w") as f:
            f.write(f"Host {SUBNET}.*\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  User root\n"
                    f"  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n  BatchMode yes\n"
                    "  ConnectTimeout 5\n  LogLevel ERROR\n")
        deadline = time.monotonic() + 30
        for address in self.addresses[1:]:
            while self.ssh(0, address, "true", check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {address} did not answer within 30 s; see {d}/sshd*.log")
                time.sleep(0.2)

    def close(self) -> None:
        """Kill every process in the namespaces, then delete them (their interfaces go with them)."""
        for name in [*self.names, self.switch]:
            for _ in range(3):  # a process may start another while it is being killed
                pids = processes_in_namespace(name)
                if not pids:
                    break
                for pid in pids:
                    _kill(pid)
                time.sleep(0.1)
        for process in self._sshd:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for name in [*self.names, self.switch]:
            _run("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- using the hosts -------------------------------------------------------------------------

    def command(self, host: int, *command: str) -> list[str]:
        """``command`` as run on host ``host`` (in its namespace)."""
        return ["ip", "netns", "exec", self.names[host], *command]

    def ssh(self, from_host: int, address: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(*self.command(from_host, "ssh", "-F", self.ssh_config, address, *command), check=check)

    def hostfile(self, hosts: list[int]) -> str:
        """A hostfile naming ``hosts`` by address."""
        path = os.path.join(self.directory, "hosts-" + "-".join(map(str, hosts)))
        with open(path, "w") as f:
            f.writelines(f"{self.addresses[h]}\n" for h in hosts)
        return path

    def processes(self, host: int) -> dict[int, str]:
        """The processes on ``host`` other than sshd's (the daemon and its sessions), by pid: command lines."""
        found = {}
        for pid in processes_in_namespace(self.names[host]):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    arguments = f.read().rstrip(b"\0").split(b"\0")
            except OSError:
                continue
            # sshd itself (ip netns exec becomes sshd), and its per-connection processes ("sshd: root@notty"),
            # which outlive a connection whose link went down until TCP gives up on it.
            if os.path.basename(arguments[0]) == b"sshd" or arguments[0].startswith(b"sshd:"):
                continue
            found[pid] = b" ".join(arguments).decode(errors="replace")
        return found

    def kvstore_server(self, host: int) -> int | None:
        """The pid of a kvstore server (``python -m gluon_pdqn.parallel.server``) on ``host``, not the remote watcher
        around it (whose command line ends the same)."""
        for pid in processes_in_namespace(self.names[host]):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[1:3] == [a.encode() for a in SERVER_PROGRAM]:
                        return pid
            except OSError:
                pass
        return None

    def launch(self, run_dir: str, *train_args: str, launch_args=(), env=None, launcher: str = "ssh"):
        """``gluon-pdqn launch --launcher ssh`` (or mpi) on host 0 over hosts 1 and 2 (the server and worker 1 on
        host 1, worker 0 on host 2), for ``train --mode dist --quiet --run-dir RUN_DIR TRAIN_ARGS``; the running
        launcher, its output and errors in one pipe."""
        command = self.command(0, sys.executable, "-m", "gluon_pdqn.cli", "launch", "--launcher", launcher,
                               "-H", self.hostfile([1, 2]), "--interface", INTERFACE, "--ssh-config", self.ssh_config,
                               *launch_args, "--", "train", "--mode", "dist", "--quiet", "--run-dir", str(run_dir),
                               *train_args)
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, start_new_session=True)

    def listening(self, host: int) -> list[tuple[str, str]]:
        """(``address:port``, program name) of every TCP socket listening on ``host``."""
        out = _run(*self.command(host, "ss", "-Hltnp")).stdout
        sockets = []
        for line in filter(str.strip, out.splitlines()):
            fields = line.split()
            program = fields[5].split('"')[1] if len(fields) > 5 and '"' in fields[5] else "?"
            sockets.append((fields[3], program))
        return sockets

    def connections(self, host: int) -> list[tuple[str, str]]:
        """(local ``address:port``, program name) of every established TCP connection on ``host``."""
        out = _run(*self.command(host, "ss", "-Htnp", "state", "established")).stdout
        found = []
        for line in filter(str.strip, out.splitlines()):
            fields = line.split()
            program = fields[-1].split('"')[1] if '"' in fields[-1] else "?"
            found.append((fields[2], program))
        return found

    def set_link(self, host: int, up: bool) -> None:
        _run("ip", "-n", self.names[host], "link", "set", INTERFACE, "up" if up else "down")
