"""404 and 405 in our error shape: the router's plain-text answers, rewritten.

Starlette (and BentoML's routes in it) answers a path nobody serves with `Not Found` and a
method a path does not take with `Method Not Allowed`, as text/plain. Clients of an API
whose every error is `{"error": {"code", "message", "details"}, "request_id"}` should not
need a second parser for these two, so this layer, innermost, rewrites them (the 405's
`Allow` header kept); the layers outside it (request log, V2's error shape) see JSON.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.wire import REQUEST_ID_HEADER, request_id_from


def unrouted_error(status: int, method: str, path: str) -> ApiError | None:
    """Our error for the router's own 404/405 (None for any other status)."""
    if status == 404:
        return ApiError(ErrorCode.NOT_FOUND, f"no endpoint at {path}")
    if status == 405:
        return ApiError(ErrorCode.METHOD_NOT_ALLOWED, f"{path} does not take {method}")
    return None


class UnroutedErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replacement: bytes | None = None

        async def reshape(message: Message) -> None:
            nonlocal replacement
            if message["type"] == "http.response.start":
                headers = Headers(raw=message.get("headers", []))
                error = unrouted_error(message["status"], scope["method"], scope["path"])
                if error is not None and headers.get("content-type", "").startswith(
                        "text/plain"):
                    request_id = request_id_from(Headers(scope=scope))
                    replacement = json.dumps(error.body(request_id),
                                             separators=(",", ":")).encode()
                    kept = [(k, v) for k, v in message.get("headers", [])
                            if k.lower() not in (b"content-type", b"content-length")]
                    message = {**message, "headers": [
                        *kept, (b"content-type", b"application/json"),
                        (b"content-length", str(len(replacement)).encode()),
                        (REQUEST_ID_HEADER.lower().encode(), request_id.encode())]}
            elif message["type"] == "http.response.body" and replacement is not None:
                if message.get("more_body", False):
                    return  # the plain text, dropped; our body goes with its last part
                message = {"type": "http.response.body", "body": replacement}
            await send(message)

        await self.app(scope, receive, reshape)
