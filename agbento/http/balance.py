"""Connection age: spread long-lived keep-alive connections over the API workers.

The workers share one listening socket, and a burst of new connections goes to whichever
worker accepts first (uvloop accepts until the queue is empty): a client that opens its
keep-alive connections at once may put them all on one worker for their whole life while
the other idles (seen in the benchmark: fused bulk runs at 120% server CPU of 200%, at about
half the throughput). Like gRPC's MAX_CONNECTION_AGE, a connection older than the bound gets
`Connection: close` on its next response (so no request is lost: the client knows before it
sends another); the client opens a new one, which the kernel hands to a worker waiting in
accept(), the less busy one. It costs one TCP handshake per connection per bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Connections remembered before the ones past their age are forgotten (closed ones stay
# until then: nothing tells a middleware that a connection closed).
PRUNE_ABOVE = 4096


class ConnectionAge:
    """ASGI middleware: `Connection: close` on the first response of a connection that is
    `max_age_s` old or more (per API worker; 0 turns it off)."""

    def __init__(self, app: ASGIApp, max_age_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.max_age_s = max_age_s
        self.clock = clock
        self.opened: dict[Any, float] = {}  # (client, server) address pair -> first seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or self.max_age_s <= 0 or client is None:
            await self.app(scope, receive, send)
            return
        connection = (tuple(client), tuple(scope.get("server") or ()))
        now = self.clock()
        opened = self.opened.setdefault(connection, now)
        if now - opened < self.max_age_s:
            if len(self.opened) > PRUNE_ABOVE:
                self._forget_older_than(now - self.max_age_s)
            await self.app(scope, receive, send)
            return
        del self.opened[connection]

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)

    def _forget_older_than(self, moment: float) -> None:
        self.opened = {c: t for c, t in self.opened.items() if t >= moment}
