"""taskd under a service manager: readiness and stop notices, and the worker processes.

systemd's notify protocol (sd_notify(3)) needs no library: one datagram on $NOTIFY_SOCKET.

With TASKD_WORKERS > 1 the main process becomes a small supervisor. It forks the workers after
the port is bound and before any event loop or pool exists (each worker opens its own pool),
reports READY=1 once every worker says it serves, forwards SIGTERM, replaces a worker that
crashes, and exits 0 once all of them have drained. Workers never outlive it: however it dies,
SIGKILL included, the kernel sends each of them SIGTERM (PR_SET_PDEATHSIG), and they drain.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from taskd import server
from taskd.config import Settings
from taskd.metrics import forget_process

log = logging.getLogger("taskd")

# Past the drain deadline, how long workers get to close their pools before they are killed.
KILL_MARGIN = 5.0
# prctl(2): the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def notify(state: str) -> None:
    """Tell the service manager `state` (READY=1, STOPPING=1); nothing without one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as error:
        log.warning("cannot notify the service manager of %s: %s", state, error)


def stop_with_parent(parent: int) -> bool:
    """Have the kernel send this process SIGTERM when `parent` (the process that forked it)
    dies, however it dies (Linux; elsewhere only the check below). False when it has died
    already."""
    if sys.platform != "linux":
        return os.getppid() == parent
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    # A parent that died before the prctl took effect sent nothing: the worker is an orphan.
    return os.getppid() == parent


def run(
    settings: Settings,
    database_url: str,
    sockets: list[socket.socket],
    announce: Callable[[], None],
) -> int:
    """Serve until SIGTERM or SIGINT; the exit status."""

    def ready() -> None:
        announce()
        notify("READY=1")

    if settings.workers == 1:
        server.serve(
            settings,
            database_url,
            sockets,
            on_ready=ready,
            on_stopping=lambda: notify("STOPPING=1"),
        )
        return 0
    return Supervisor(settings, database_url, sockets, on_ready=ready).run()


@dataclass
class _Worker:
    index: int
    ready: bool = False


class Supervisor:
    """Forks, watches and stops the worker processes. Only ever blocks in `select()`: signals
    arrive as bytes on a wakeup pipe, readiness as pids on another."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        sockets: list[socket.socket],
        *,
        on_ready: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._database_url = database_url
        self._sockets = sockets
        self._on_ready = on_ready
        self._workers: dict[int, _Worker] = {}
        self._announced = False
        self._stopping = False
        self._kill_at: float | None = None
        self._failed = False
        self._pid = os.getpid()
        self._ready_reader, self._ready_writer = os.pipe()
        self._wakeup_reader, self._wakeup_writer = os.pipe()
        self._ready_lines = b""

    def run(self) -> int:
        os.set_blocking(self._wakeup_writer, False)
        for signum in (*server.STOP_SIGNALS, signal.SIGCHLD):
            # A Python handler is what makes the interpreter write to the wakeup fd.
            signal.signal(signum, lambda *_: None)
        signal.set_wakeup_fd(self._wakeup_writer)
        try:
            for index in range(self._settings.workers):
                self._spawn(index)
            while self._workers:
                self._wait()
        finally:
            signal.set_wakeup_fd(-1)
            pipes = (self._ready_reader, self._ready_writer)
            for fd in (*pipes, self._wakeup_reader, self._wakeup_writer):
                os.close(fd)
        return 1 if self._failed else 0

    def _wait(self) -> None:
        timeout = None
        if self._kill_at is not None:
            timeout = max(0.0, self._kill_at - time.monotonic())
        readable, _, _ = select.select([self._ready_reader, self._wakeup_reader], [], [], timeout)
        if self._ready_reader in readable:
            self._read_ready()
        if self._wakeup_reader in readable:
            for signum in os.read(self._wakeup_reader, 64):
                if signum == signal.SIGCHLD:
                    self._reap()
                elif not self._stopping:
                    self._stop()
        if self._kill_at is not None and time.monotonic() >= self._kill_at:
            self._kill_the_rest()

    def _spawn(self, index: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, server.STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._work(index)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, server.STOP_SIGNALS)
        self._workers[pid] = _Worker(index)

    def _work(self, index: int) -> NoReturn:
        """The worker process: serve, then leave without running the supervisor's exit hooks."""
        status = 1
        try:
            if not stop_with_parent(self._pid):
                os._exit(0)
            # Worker 0 accepts on the sockets bound before the fork; every other worker binds
            # sockets of its own to the same address (SO_REUSEPORT). With one accept queue for
            # all, whichever worker woke first took a whole burst of new connections (seen: 86
            # of 100 in one worker); with a queue each, the kernel spreads them evenly.
            sockets = self._sockets
            if index > 0:
                sockets = server.listen_beside(self._sockets)
                # Kept open here, the inherited sockets would outlive worker 0's drain and take
                # connections nobody accepts.
                for sock in self._sockets:
                    sock.close()
            signal.set_wakeup_fd(-1)
            for signum in (*server.STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            for fd in (self._ready_reader, self._wakeup_reader, self._wakeup_writer):
                os.close(fd)
            server.serve(
                self._settings,
                self._database_url,
                sockets,
                on_ready=self._report_ready,
                on_stopping=lambda: None,
            )
            status = 0
        except BaseException:
            log.exception("worker failed")
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(status)

    def _report_ready(self) -> None:
        """In a worker: tell the supervisor this worker serves (a pipe write is atomic). A
        supervisor that died during the start-up has left a SIGTERM, which stops the worker."""
        with contextlib.suppress(BrokenPipeError):
            os.write(self._ready_writer, f"{os.getpid()}\n".encode())

    def _read_ready(self) -> None:
        received = self._ready_lines + os.read(self._ready_reader, 4096)
        *lines, self._ready_lines = received.split(b"\n")
        for line in lines:
            pid = int(line)
            worker = self._workers.get(pid)
            if worker is not None:
                worker.ready = True
                log.info("worker %d (pid %d) serves", worker.index, pid)
        all_ready = len(self._workers) == self._settings.workers and all(
            worker.ready for worker in self._workers.values()
        )
        if all_ready and not self._announced and not self._stopping:
            self._announced = True
            self._on_ready()

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            forget_process(pid)
            status = os.waitstatus_to_exitcode(wait_status)
            if self._stopping:
                if status != 0:
                    log.error("worker %d (pid %d) stopped: status %d", worker.index, pid, status)
                    self._failed = True
            elif not worker.ready:
                log.error("worker %d (pid %d) failed to start; stopping", worker.index, pid)
                self._failed = True
                self._stop()
            else:
                log.error(
                    "worker %d (pid %d) exited with status %d; replacing it",
                    worker.index,
                    pid,
                    status,
                )
                self._spawn(worker.index)

    def _stop(self) -> None:
        self._stopping = True
        notify("STOPPING=1")
        log.info("stopping %d worker(s)", len(self._workers))
        # The port refuses new connections once the workers have closed their copies too.
        for sock in self._sockets:
            sock.close()
        for pid in self._workers:
            os.kill(pid, signal.SIGTERM)
        self._kill_at = time.monotonic() + self._settings.drain_timeout + KILL_MARGIN

    def _kill_the_rest(self) -> None:
        for pid, worker in self._workers.items():
            log.error("worker %d (pid %d) did not stop in time; killing it", worker.index, pid)
            os.kill(pid, signal.SIGKILL)
        self._failed = True
        self._kill_at = None
