"""Our log lines: JSON, one object per line, on the `agbento` logger beside BentoML's own."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "pid", "msg", ...fields}; fields come from
    `extra={"fields": {...}}`. `pid` tells a service's workers apart."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """Idempotent: BentoML imports the service module in more than one process."""
    root = logging.getLogger("agbento")
    root.setLevel(level)
    if not any(getattr(h, "agbento", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler.agbento = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.propagate = False
