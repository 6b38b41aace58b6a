"""The one error shape every endpoint answers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# How many row/field problems one error response lists; the message says how many in all.
MAX_ERROR_DETAILS = 100


@dataclass
class ApiError(Exception):
    """An answer that is not a prediction: status, machine code, human message, details."""

    status: int
    code: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    retry_after_s: int | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details[:MAX_ERROR_DETAILS],
            },
            "request_id": request_id,
        }
