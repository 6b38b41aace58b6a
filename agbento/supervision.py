"""A worker that notices it lost its supervision: a dead sibling nobody replaces, or no arbiter.

`bentoml serve` runs each service's workers under one circus watcher. Outside a container the
watcher starts a new worker when one dies. Inside one (BentoML 1.4.39:
`bentoml.serving.running_inside_container()`, true when BENTOML_CONTAINERIZED is set, as
BentoML's images do) respawn is off: the orchestrator is meant to restart what dies. But the
orchestrator sees the container, not its workers: with one of N workers dead the container
serves on N-1 for good, healthy by every probe (a probe always reaches a live worker). Only
the last worker's death ends it: circus then stops the server ("No active process found for
watcher", exit status 1) and the orchestrator restarts the container.

So in a container each worker watches its siblings (the processes of its own service under
the same arbiter): when fewer live than the service's worker count, it stops itself as an
orchestrator stops it (SIGTERM: refuse new connections, drain the requests it holds;
agbento/shutdown.py). Once the last has drained, circus's rule above ends the server with
status 1 and the container is restarted whole: a short gap instead of a silent, permanent
loss of capacity.

Anywhere, a worker whose arbiter is gone (SIGKILLed: the workers run in sessions of their own,
so nothing else stops them) stops too, rather than serve the inherited socket unsupervised.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import psutil

from agbento.shutdown import STOPPING

logger = logging.getLogger("agbento.supervision")
SERVICE_NAME_ARG = "--service-name"
CHECK_INTERVAL_S = 1.0


def service_of(command: list[str]) -> str | None:
    """The BentoML service a worker's command line runs (`--service-name NAME`)."""
    try:
        return command[command.index(SERVICE_NAME_ARG) + 1]
    except (ValueError, IndexError):
        return None


def live_siblings(arbiter: psutil.Process, service: str) -> set[int]:
    """The arbiter's live worker processes of `service` (a reaped-late zombie is dead)."""
    found = set()
    for child in arbiter.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and service_of(child.cmdline()) == service:
                found.add(child.pid)
        except psutil.Error:  # gone meanwhile
            continue
    return found


class SupervisionWatch:
    """Checks, every `interval_s`, that this worker's arbiter lives and, unless the arbiter
    replaces dead workers (`workers` None), that `workers` workers of the service (this one
    included) live; otherwise sends this process SIGTERM, once, and stops watching.

    Started once the worker has loaded its model: by then the arbiter has spawned every
    sibling (it spawns them all at once), so one that died loading its own is counted too."""

    def __init__(self, arbiter_pid: int, service: str, workers: int | None,
                 interval_s: float = CHECK_INTERVAL_S) -> None:
        self.arbiter = psutil.Process(arbiter_pid)
        self.service, self.workers, self.interval_s = service, workers, interval_s
        self._stop = threading.Event()

    def problem(self) -> str | None:
        """Why this worker should stop, or None."""
        if os.getppid() != self.arbiter.pid:
            return f"its server process (pid {self.arbiter.pid}) is gone"
        if self.workers is None:
            return None
        alive = len(live_siblings(self.arbiter, self.service))
        if alive < self.workers:
            return (f"{self.workers - alive} of the {self.workers} workers of service "
                    f"{self.service} died, and BentoML does not replace workers inside a "
                    "container (BENTOML_CONTAINERIZED)")
        return None

    def run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if STOPPING.is_set():
                return  # stopping anyway: siblings leave too
            try:
                problem = self.problem()
            except psutil.Error as exc:
                problem = f"its server process cannot be read ({exc})"
            if problem is not None:
                logger.error("process %d stops: %s; the server exits once every worker has "
                             "drained, for its supervisor to restart it", os.getpid(), problem)
                os.kill(os.getpid(), signal.SIGTERM)  # the drain path (agbento/shutdown.py)
                return

    def start(self) -> SupervisionWatch:
        threading.Thread(target=self.run, name="agbento-supervision", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


def watch_supervision(workers: int) -> SupervisionWatch | None:
    """Start the watch in a `bentoml serve` worker of a service of `workers` workers
    (anything else: nothing to watch)."""
    from bentoml.serving import running_inside_container

    service = service_of(psutil.Process().cmdline())
    if service is None:
        return None
    return SupervisionWatch(os.getppid(), service,
                            workers if running_inside_container() else None).start()
