"""ConnectionAge: a keep-alive connection past its age is closed after its next answer."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from agbento.http.balance import PRUNE_ABOVE, ConnectionAge


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"connection", b"keep-alive")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def answer(app: ConnectionAge, client: tuple[str, int], kind: str = "http") -> list[Any]:
    """The response headers of one request from `client` (None for a non-HTTP scope)."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": kind, "client": client, "server": ("127.0.0.1", 3000), "headers": []}
    asyncio.run(app(scope, receive, send))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    return list(starts[0]["headers"]) if starts else []


def closes(headers: list[Any]) -> bool:
    return (b"connection", b"close") in headers


def test_a_connection_is_closed_after_its_first_answer_past_the_age() -> None:
    clock = Clock()
    app = ConnectionAge(ok, max_age_s=2, clock=clock)
    client = ("127.0.0.1", 50000)
    assert not closes(answer(app, client))
    clock.now += 1.9
    assert not closes(answer(app, client))
    clock.now += 0.2
    headers = answer(app, client)
    assert closes(headers)
    assert [v for k, v in headers if k == b"connection"] == [b"close"]  # not keep-alive too
    # the client's next connection (here, the same address) starts young
    assert not closes(answer(app, client))


def test_each_connection_has_its_own_age() -> None:
    clock = Clock()
    app = ConnectionAge(ok, max_age_s=2, clock=clock)
    old, young = ("127.0.0.1", 50000), ("127.0.0.1", 50001)
    answer(app, old)
    clock.now += 1.5
    answer(app, young)
    clock.now += 1.0
    assert closes(answer(app, old))
    assert not closes(answer(app, young))


def test_off_at_zero() -> None:
    clock = Clock()
    app = ConnectionAge(ok, max_age_s=0, clock=clock)
    answer(app, ("127.0.0.1", 50000))
    clock.now += 3600
    assert not closes(answer(app, ("127.0.0.1", 50000)))
    assert app.opened == {}


def test_connections_that_went_away_are_forgotten() -> None:
    clock = Clock()
    app = ConnectionAge(ok, max_age_s=2, clock=clock)
    for port in range(PRUNE_ABOVE + 1):
        answer(app, ("127.0.0.1", port))
    clock.now += 5
    answer(app, ("10.0.0.1", 1))  # a young one arrives: the old entries go
    assert len(app.opened) == 1
