"""A `bentoml serve` worker's view of its fellow workers: the processes under its arbiter."""

from __future__ import annotations

import psutil

SERVICE_NAME_ARG = "--service-name"


def service_of(command: list[str]) -> str | None:
    """The BentoML service a worker's command line runs (`--service-name NAME`)."""
    try:
        return command[command.index(SERVICE_NAME_ARG) + 1]
    except (ValueError, IndexError):
        return None


def live_workers(arbiter: psutil.Process,
                 service: str | None = None) -> dict[int, psutil.Process]:
    """The arbiter's live worker processes by pid, of `service` or of every service (a
    reaped-late zombie is dead; one that ends meanwhile is left out)."""
    found = {}
    for child in arbiter.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and (
                    service is None or service_of(child.cmdline()) == service):
                found[child.pid] = child
        except psutil.Error:  # gone meanwhile
            continue
    return found
