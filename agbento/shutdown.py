"""A bound on how long a worker may take to stop after SIGTERM.

On SIGTERM BentoML's arbiter stops its workers one at a time and blocks until each has
exited. In the container a worker was seen never to finish uvicorn's shutdown (about one
in three smoke tests; never on a laptop; the cause is inside BentoML/uvicorn and was not
found), and the arbiter then waited on it forever. So each worker arms a timer when
SIGTERM arrives: past the bound (above the request timeout, so no in-flight request is cut
by default) it exits with status 0 instead of waiting for the orchestrator's SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

logger = logging.getLogger("agbento.shutdown")


def exit_after(seconds: float) -> threading.Timer:
    """Exit the process in `seconds` unless it has ended by then (a daemon timer)."""

    def force() -> None:
        logger.warning("still stopping %.0f s after SIGTERM: exiting", seconds)
        os._exit(0)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
    return timer


def bound_after_sigterm(seconds: float) -> None:
    """Chain onto the current SIGTERM handler (uvicorn's): arm `exit_after`, then delegate.

    Call from the main thread once the server runs (a service's __init__ does).
    """
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        exit_after(seconds)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
