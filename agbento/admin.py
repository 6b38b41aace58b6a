"""The admin token: what guards operator endpoints until API keys with permissions exist."""

from __future__ import annotations

import hmac
from typing import Any

from agbento.errors import ApiError


def require_admin(headers: Any, token: str) -> None:
    """Raise unless the request carries `Authorization: Bearer <AGBENTO_ADMIN_TOKEN>`.

    With no token configured, admin endpoints do not exist (404): safe by default.
    """
    if not token:
        raise ApiError(404, "admin_disabled", "admin endpoints are off; set AGBENTO_ADMIN_TOKEN")
    given = headers.get("authorization", "")
    scheme, _, secret = given.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <admin token>")
    if not hmac.compare_digest(secret.encode(), token.encode()):
        raise ApiError(403, "forbidden", "the admin token is not valid")
