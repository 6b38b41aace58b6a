"""The process before the service: settings, thread counts, logging, the keys policy, and
the checks that make a start that cannot work fail in one line.

`service.py` imports this module first. Importing it reads the settings once and sets the
environment that numeric libraries read when *they* load (numpy's OpenBLAS and, in the model
worker, LightGBM's OpenMP), so nothing heavy is imported here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from agbento.core.errors import StartupError
from agbento.core.logs import configure_logging
from agbento.core.settings import Settings, get_settings
from agbento.ops.metrics_dir import private_metrics_dir
from agbento.ops.ports import ensure_port_free, serve_address
from agbento.ops.workers import service_of

log = logging.getLogger("agbento.service")

# A start the user must fix (a setting, the model, the port): the exit status.
STARTUP_EXIT = 2


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """A StartupError inside is one line on stderr and exit 2, not a traceback of 60 lines
    with the useful one last (bentoml serve imports service.py; SystemExit passes through)."""
    try:
        yield
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_EXIT) from None


def prepare_process(settings: Settings, argv: Sequence[str] = sys.argv) -> None:
    # OpenMP threads spin while idle and steal the CPU the API process needs; batches are
    # small, so one thread per process holding the model (a split model worker, or each
    # fused API worker) is the default (OMP_NUM_THREADS wins if set).
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.model_threads))
    configure_logging(settings.log_level)
    if service_of(list(argv)) is not None:  # a worker of bentoml serve
        private_metrics_dir()  # before any metric is created
    else:
        check_serve_port(argv)
    check_keys_policy(settings)


def check_keys_policy(settings: Settings) -> None:
    """Refuse to start without keys where they are required; warn loudly where they are not."""
    if settings.api_keys_file:
        return
    if settings.require_api_keys:
        raise StartupError("AGBENTO_REQUIRE_API_KEYS is set but AGBENTO_API_KEYS_FILE is not: "
                           "refusing to serve without keys (agbento keys create ...)")
    log.warning("NO API KEYS: every endpoint is open to anyone who can reach it. Fine on a "
                "laptop; set AGBENTO_API_KEYS_FILE anywhere else.")


def check_serve_port(argv: Sequence[str]) -> None:
    """In `bentoml serve`'s own process (it imports service.py before it binds): a port in
    use is one line now, not BentoML's traceback after the model has loaded."""
    if len(argv) >= 2 and argv[0].endswith("bentoml") and argv[1] == "serve":
        ensure_port_free(*serve_address(argv[2:]))


with fail_fast():
    settings = get_settings()
    prepare_process(settings)
