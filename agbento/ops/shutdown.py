"""What a worker does on SIGTERM: stop listening at once, and bound its own stop.

Why an API worker stayed in uvicorn's shutdown (seen in the container, 2 in 3 smoke tests;
reproduced on a plain `bentoml serve` and diagnosed with py-spy and an asyncio task dump):
uvicorn's graceful shutdown waits for every request task, and the pending tasks were
`/readyz` probes sent while the model worker was still starting. BentoML 1.4.39's /readyz
asks the model through `RemoteProxy.is_ready(5)`, which catches only
`aiohttp.ServerTimeoutError`, while a total timeout raises a plain `TimeoutError`; the
exception leaves the app *inside* BentoML's `TimeoutMiddleware` (server/http/traffic.py),
which completes a request only when the app sends something or its timer (the request
timeout, 60 s) fires. So every probe that met a slow model start held the worker's shutdown
for up to the request timeout (and its client waited as long, to get a bare 500). Fixed in
service.py: the API's `__is_ready__` asks the model itself and answers False on any error,
and BentoML's own runner probe is off. The minimal reproduction for upstream is in
tests/test_shutdown.py (SIGSTOP the dependency, GET /readyz, SIGTERM).

(The image smoke test's other stop that never ended was not the service's: its container
saw the host's /proc, so BentoML's supervisor never signalled some workers and waited for
them; deploy/image.sh now gives the container its own /proc.)

Each worker still arms a timer when SIGTERM arrives, as a safety net for any other request
that never completes: past the bound (above the request timeout, so no in-flight request is
cut by default) it exits with status 0 instead of waiting for the orchestrator's SIGKILL.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
from typing import Any

import psutil

from agbento.ops.workers import live_workers, service_of

logger = logging.getLogger("agbento.ops.shutdown")
# How long after the exit timer the kernel's alarm ends a worker that could not run it.
ALARM_AFTER_TIMER_S = 5
# Set once SIGTERM arrived: this worker is stopping (agbento/ops/supervision.py stops watching).
STOPPING = threading.Event()


def exit_after(seconds: float) -> threading.Timer:
    """Exit the process in `seconds` unless it has ended by then (a daemon timer)."""

    def force() -> None:
        logger.warning("still stopping %.0f s after SIGTERM: exiting", seconds)
        os._exit(0)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
    return timer


def stop_listening() -> int:
    """Shut down every listening socket this process holds; return how many.

    A worker's listening socket is the arbiter's, inherited: when uvicorn closes its copy
    on SIGTERM the socket still listens, and new connections wait in a backlog that no one
    accepts from again, to be reset when the arbiter exits (after the drain). Shutting it
    down (one socket, shared by every process holding it) refuses them at once instead.

    Only when the whole server stops (`shut_when_all_stop`): a worker stopped alone must
    leave the socket to the others.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except FileNotFoundError:  # not Linux: leave the sockets to uvicorn
        return 0
    stopped = 0
    for fd in fds:
        try:
            copy = os.dup(fd)
        except OSError:  # closed meanwhile
            continue
        try:
            sock = socket.socket(fileno=copy)
        except OSError:  # not a socket
            os.close(copy)
            continue
        with sock:
            try:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    sock.shutdown(socket.SHUT_RD)
                    stopped += 1
            except OSError:
                pass
    return stopped


# /proc/<pid>/comm of a worker that got SIGTERM: how its siblings tell (15 characters at most).
STOPPING_COMM = "agbento-stop"
# How long after its SIGTERM a worker looks whether its siblings got one too: the arbiter
# signals them all within milliseconds when the server stops.
SIBLINGS_AFTER_S = 0.2


def mark_stopping() -> None:
    """Name this process STOPPING_COMM, for its siblings (`siblings_serving`) to see."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(STOPPING_COMM)
    except OSError:  # not Linux: siblings then count it as serving, and nothing is shut
        pass


def siblings_serving() -> list[int]:
    """The other live workers under this worker's arbiter that have not got SIGTERM.

    Every worker of a `bentoml serve` (both services' in split) holds every listening
    socket, so all of them count. Outside `bentoml serve` (no arbiter to ask): none."""
    try:
        me = psutil.Process()
        if service_of(me.cmdline()) is None:  # not a `bentoml serve` worker
            return []
        workers = live_workers(me.parent())
    except psutil.Error:
        return []
    return [pid for pid in workers if pid != me.pid and still_serving(pid)]


def still_serving(pid: int) -> bool:
    """Process `pid` is alive and not marked STOPPING_COMM."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip() != STOPPING_COMM
    except OSError:  # gone meanwhile
        return False


def shut_when_all_stop() -> None:
    """Shut the shared listening sockets if every sibling is stopping too, else leave them.

    A worker stopped alone (an operator's kill, a supervisor replacing it) used to shut
    them anyway: the port refused every connection, and the others, still serving, met
    accept() errors (EINVAL), on which uvloop closes a server for good, until BentoML
    started a new worker (in a container: never). Now the last of a stopping server's
    workers shuts them, and a lone worker leaves them to its siblings."""
    serving = siblings_serving()
    if serving:
        logger.info("process %d stops alone: listening sockets left to workers %s",
                    os.getpid(), serving)
        return
    try:
        stopped = stop_listening()
    except Exception:  # noqa: BLE001 - refusing new connections is a nicety; draining is not
        logger.exception("could not shut the listening sockets")
        return
    logger.info("process %d: every worker is stopping: listening sockets shut: %d",
                os.getpid(), stopped)


def bound_after_sigterm(seconds: float) -> None:
    """Chain onto the current SIGTERM handler (uvicorn's): arm `exit_after`, stop listening
    if the whole server stops (`shut_when_all_stop`), then delegate (uvicorn drains the
    connections it has).

    Call from the main thread once the server runs (a service's __init__ does).
    """
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        exit_after(seconds)  # first: the bound must not depend on anything below
        STOPPING.set()
        # The kernel's bound behind it: SIGALRM (default action: terminate) ends the process
        # even where no Python thread can run any more (in the interpreter's own shutdown,
        # daemon threads are frozen).
        if signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None):
            signal.alarm(math.ceil(seconds) + ALARM_AFTER_TIMER_S)
        mark_stopping()
        if siblings_serving():  # the first signalled of a stopping server, or stopped alone
            later = threading.Timer(SIBLINGS_AFTER_S, shut_when_all_stop)
            later.daemon = True
            later.start()
        else:
            shut_when_all_stop()
        logger.info("SIGTERM: draining process %d (exit within %.0f s)", os.getpid(), seconds)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
