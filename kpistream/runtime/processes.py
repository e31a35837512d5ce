"""Child processes that die with their parent, free loopback ports, and the one-line error
of a user mistake."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: A fresh broker or redis-server listens within a second here; 20 s covers a loaded CI box.
START_TIMEOUT_S = 20.0


class UserError(Exception):
    """Something the user can fix; the message is one actionable line."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_port(host: str, port: int, what: str, setting: str) -> None:
    """One actionable line, before a server starts, when its port is taken (it left a
    traceback in its log before)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"port {port} on {host} is in use ({exc.strerror}), wanted by {what}; "
                f"stop what holds it or set {setting}"
            ) from None


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too: a cluster node needs
    both, and the bus port must exist (so the node's port is at most 55535)."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20_000, 45_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise UserError("no free port pair for a Redis Cluster node between 20000 and 55000")


class ProcessGroup:
    """One process group for the children of a stack, apart from the terminal's: Ctrl-C and
    a closing terminal signal ``kpistream up`` alone, which stops its children in order
    (collector and exporter, then the worker while broker and Redis still serve its last
    commit, then Redis and the broker); :meth:`kill` ends whatever is left of the group."""

    def __init__(self) -> None:
        self.pgid = 0  # 0 until the first child leads the group

    def joined(self, pid: int) -> None:
        """A child was started in the group (its own setpgid may race this one)."""
        if not self.pgid:
            self.pgid = pid
        with contextlib.suppress(OSError):  # it ran its setpgid first, or already exited
            os.setpgid(pid, self.pgid)

    @classmethod
    def of(cls, pgid: int) -> ProcessGroup:
        group = cls()
        group.pgid = pgid
        return group

    def kill(self) -> None:
        if self.pgid:
            with contextlib.suppress(OSError):  # nobody left: the usual case
                os.killpg(self.pgid, signal.SIGKILL)


def _die_with_parent(death_signal: int, pgid: int | None) -> Callable[[], None]:
    parent = os.getpid()

    def arm() -> None:  # runs in the child between fork and exec
        if pgid is not None:
            os.setpgid(0, pgid)
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, death_signal)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def spawn(
    args: Sequence[str],
    *,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
    death_signal: int = signal.SIGTERM,
    group: ProcessGroup | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child that receives ``death_signal`` when this process dies (and joins
    ``group``, when given).

    SIGTERM lets a child that keeps state (redis-server's AOF, a worker's commit) end
    cleanly; a child with nothing to lose takes SIGKILL and is gone at once.
    """
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    pgid = None if group is None else group.pgid
    preexec = _die_with_parent(death_signal, pgid) if sys.platform.startswith("linux") else None
    child = subprocess.Popen(
        list(args),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec,
        env=env,
    )
    if group is not None:
        group.joined(child.pid)
    return child


def stop(
    process: subprocess.Popen[bytes],
    *,
    timeout_s: float = 10.0,
    graceful: bool = True,
    name: str | None = None,
) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; with ``name``, a kill is said in a line
    (a child that needs one did not keep its own shutdown deadline)."""
    if process.poll() is None:
        if not graceful:
            process.kill()
            process.wait()
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            if name is not None:
                log.warning(
                    "kpistream: the %s did not stop within %g s of SIGTERM: killed", name, timeout_s
                )


def wait_port(port: int, process: subprocess.Popen[bytes], what: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(
                f"embedded {what} exited with code {process.returncode}; see {log_path}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    stop(process)
    raise UserError(f"embedded {what} did not listen on port {port} within {START_TIMEOUT_S}s")
