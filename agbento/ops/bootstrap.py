"""The process before the service: settings, thread counts, logging, the keys policy.

`service.py` imports this module first. Importing it reads the settings once and sets the
environment that numeric libraries read when *they* load (numpy's OpenBLAS and, in the model
worker, LightGBM's OpenMP), so nothing heavy is imported here.
"""

from __future__ import annotations

import logging
import os

from agbento.core.logs import configure_logging
from agbento.core.settings import Settings, get_settings

log = logging.getLogger("agbento.service")


def prepare_process(settings: Settings) -> None:
    # OpenMP threads spin while idle and steal the CPU the API process needs; batches are
    # small, so one thread per process holding the model (a split model worker, or each
    # fused API worker) is the default (OMP_NUM_THREADS wins if set).
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.model_threads))
    configure_logging(settings.log_level)
    check_keys_policy(settings)


def check_keys_policy(settings: Settings) -> None:
    """Refuse to start without keys where they are required; warn loudly where they are not."""
    if settings.api_keys_file:
        return
    if settings.require_api_keys:
        raise SystemExit("AGBENTO_REQUIRE_API_KEYS is set but AGBENTO_API_KEYS_FILE is not: "
                         "refusing to serve without keys (python -m agbento.keys create ...)")
    log.warning("NO API KEYS: every endpoint is open to anyone who can reach it. Fine on a "
                "laptop; set AGBENTO_API_KEYS_FILE anywhere else.")


settings = get_settings()
prepare_process(settings)
