"""Our log lines: one handler on the `agbento` logger, beside BentoML's own."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str) -> None:
    """Idempotent: BentoML imports the service module in more than one process."""
    root = logging.getLogger("agbento")
    root.setLevel(level)
    if not any(getattr(h, "agbento", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.agbento = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.propagate = False
