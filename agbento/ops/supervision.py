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
agbento/ops/shutdown.py). Once the last has drained, circus's rule above ends the server with
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

from agbento.ops.shutdown import STOPPING
from agbento.ops.workers import live_workers, service_of

logger = logging.getLogger("agbento.ops.supervision")
CHECK_INTERVAL_S = 1.0


class SupervisionWatch:
    """Checks, every `interval_s`, that this worker's arbiter lives and, when nobody replaces
    dead workers (`siblings`), that as many workers of the service live (this one included)
    as it should have: `workers`, or when that is unknown the most this watch has seen.
    Otherwise sends SIGTERM, once, to every sibling it knows and then to this process, and
    stops watching: they stop together. One at a time did not do: with the arbiter
    SIGKILLed, once the first orphan had stopped the other spun at about 50% CPU and its
    watch thread never ran again (seen 4 times in 4; a SIGTERM still stopped it). Not pinned
    down; the listening socket they share, which the first shut on its way out
    (agbento/ops/shutdown.py), is the suspect.

    Started once the worker has loaded its model: by then the arbiter has spawned every
    sibling (it spawns them all at once), so with `workers` known one that died loading its
    own model counts too."""

    def __init__(self, arbiter_pid: int, service: str, siblings: bool,
                 workers: int | None = None, interval_s: float = CHECK_INTERVAL_S) -> None:
        self.arbiter = psutil.Process(arbiter_pid)
        self.service, self.siblings, self.workers = service, siblings, workers
        self.interval_s = interval_s
        self.most_seen = 0
        self.known: dict[int, psutil.Process] = {}  # the live siblings at the last check
        self._stop = threading.Event()

    def problem(self) -> str | None:
        """Why this worker should stop, or None."""
        if os.getppid() != self.arbiter.pid:
            return f"its server process (pid {self.arbiter.pid}) is gone"
        self.known = live_workers(self.arbiter, self.service)
        if not self.siblings:
            return None
        alive = len(self.known)
        self.most_seen = max(self.most_seen, alive)
        expected = self.workers or self.most_seen
        if alive < expected:
            return (f"{expected - alive} of the {expected} workers of service "
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
                logger.error("process %d stops with its siblings: %s; the server exits once "
                             "every worker has drained, for its supervisor to restart it",
                             os.getpid(), problem)
                self.stop_all()
                return

    def stop_all(self) -> None:
        """SIGTERM (the drain path, agbento/ops/shutdown.py) to the siblings, then to us."""
        for pid, sibling in self.known.items():
            if pid != os.getpid():
                try:
                    sibling.send_signal(signal.SIGTERM)  # psutil: never a reused pid
                except psutil.Error:  # gone already
                    pass
        os.kill(os.getpid(), signal.SIGTERM)

    def start(self) -> SupervisionWatch:
        # now, not a check later: the arbiter may be gone by then, and its workers with it
        self.known = live_workers(self.arbiter, self.service)
        threading.Thread(target=self.run, name="agbento-supervision", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


def configured_workers(service: str) -> int | None:
    """The worker count BentoML's arbiter started `service` with: the `@bentoml.service`
    value unless a BentoML config file overrides it, read where the arbiter reads it (the
    worker loads the same configuration). None when it is not a plain number ("cpu_count")
    or cannot be read (a BentoML internal: the watch then counts the most workers seen)."""
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        workers = BentoMLContainer.config.services[service].get().get("workers")
    except Exception:  # noqa: BLE001 - an internal API that may move: fall back
        return None
    return workers if isinstance(workers, int) and not isinstance(workers, bool) else None


def watch_supervision() -> SupervisionWatch | None:
    """Start the watch in a `bentoml serve` worker (anything else: nothing to watch)."""
    from bentoml.serving import running_inside_container

    service = service_of(psutil.Process().cmdline())
    if service is None:
        return None
    siblings, workers = running_inside_container(), configured_workers(service)
    if siblings:
        logger.info("in a container: process %d stops if fewer than %s workers of service %s "
                    "live (BentoML does not replace them here)", os.getpid(),
                    workers or "the most seen", service)
    return SupervisionWatch(os.getppid(), service, siblings, workers).start()
