"""The one error shape every endpoint answers with, and the catalogue of its codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StartupError(Exception):
    """A setting, a model or a port the user must fix before a server can start: said in
    one line (what, the value, what is allowed or how to get one), exit 2."""


# How many row/field problems one error response lists; the message says how many in all.
MAX_ERROR_DETAILS = 100


class ErrorCode(StrEnum):
    """Every error code an answer may carry, with its HTTP status: defined here only."""

    status: int

    def __new__(cls, code: str, status: int) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        return member

    # Requests that cannot be read
    INVALID_JSON = "invalid_json", 400
    INVALID_CSV = "invalid_csv", 400
    INVALID_PARQUET = "invalid_parquet", 400
    INVALID_ARROW = "invalid_arrow", 400
    BAD_REQUEST = "bad_request", 400
    NOT_FOUND = "not_found", 404
    METHOD_NOT_ALLOWED = "method_not_allowed", 405
    EMPTY_DATA = "empty_data", 400
    FIELD_NAME_TOO_LONG = "field_name_too_long", 400
    NUMBER_TOO_LONG = "number_too_long", 400
    LINE_TOO_LONG = "line_too_long", 400
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415
    # Limits
    BODY_TOO_LARGE = "body_too_large", 413
    TOO_MANY_ROWS = "too_many_rows", 413
    TOO_MANY_VALUES = "too_many_values", 413
    TOO_MANY_COLUMNS = "too_many_columns", 413
    DECODED_TOO_LARGE = "decoded_too_large", 413
    # Open Inference Protocol V2 / KServe V1
    INVALID_TENSOR = "invalid_tensor", 400
    MISSING_INPUTS = "missing_inputs", 400
    MODEL_NOT_FOUND = "model_not_found", 404
    # Rows the model cannot take
    INVALID_ROWS = "invalid_rows", 422
    MODEL_REJECTED_ROWS = "model_rejected_rows", 422
    NOT_A_CLASSIFIER = "not_a_classifier", 400
    UNKNOWN_CLASS = "unknown_class", 422
    # Who may call
    UNAUTHORIZED = "unauthorized", 401
    FORBIDDEN = "forbidden", 403
    RATE_LIMITED = "rate_limited", 429
    # Our side
    OVERLOADED = "overloaded", 503
    MODEL_UNAVAILABLE = "model_unavailable", 503
    MODEL_ERROR = "model_error", 503
    # The served model cannot be explained (no method applies to it; the message says why).
    EXPLANATIONS_UNAVAILABLE = "explanations_unavailable", 501
    INTERNAL_ERROR = "internal_error", 500


@dataclass
class ApiError(Exception):
    """An answer that is not a prediction: code (and so status), message, details."""

    code: ErrorCode
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    retry_after_s: int | None = None

    @property
    def status(self) -> int:
        return self.code.status

    def __str__(self) -> str:
        return f"{self.status} {self.code.value}: {self.message}"

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code.value,
                "message": self.message,
                "details": self.details[:MAX_ERROR_DETAILS],
            },
            "request_id": request_id,
        }


# Seconds a client is told to wait (Retry-After) when we refuse load.
RETRY_AFTER_S = 1


def overloaded(message: str) -> ApiError:
    """503 `overloaded` with Retry-After: the answer to more load than we take."""
    return ApiError(ErrorCode.OVERLOADED, message, retry_after_s=RETRY_AFTER_S)
