"""The version an API worker answers with, and the swap to the next one.

`LiveModel.current` is read once per request (PredictionEndpoints, the protocols), so a
request is validated and scored by one version however a swap falls. `swap(tag)` opens the
new version beside the old (`open_version`: in fused the predictor is loaded, verified and
warmed up off the event loop), replaces `current` in one assignment, then closes the old
version once the requests that took it have answered (or `drain_s` has passed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agbento.monitoring.metrics import MODEL_INFO
from agbento.runtime.served import ServedModel

logger = logging.getLogger(__name__)


class LiveModel:
    def __init__(self, served: ServedModel,
                 open_version: Callable[[str], Awaitable[ServedModel]], drain_s: float) -> None:
        self.current = served
        self.open_version = open_version
        self.drain_s = drain_s
        self._closing: set[asyncio.Task[Any]] = set()
        MODEL_INFO.labels(tag=served.tag, problem_type=served.card.problem_type).set(1)

    def tag(self) -> str:
        return self.current.tag

    async def swap(self, tag: str) -> None:
        """Serve `tag` from now on (raises, serving the old one still, if it cannot open)."""
        new = await self.open_version(tag)
        old, self.current = self.current, new
        MODEL_INFO.labels(tag=new.tag, problem_type=new.card.problem_type).set(1)
        MODEL_INFO.labels(tag=old.tag, problem_type=old.card.problem_type).set(0)
        task = asyncio.get_running_loop().create_task(self._retire(old))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _retire(self, old: ServedModel) -> None:
        """Close the old version once nothing uses it: its batcher, its model's memory."""
        deadline = time.monotonic() + self.drain_s
        while old.active and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if old.active:
            logger.warning("closing %s with %d request(s) still on it after %.0f s",
                           old.tag, old.active, self.drain_s)
        await old.close()

    async def close(self) -> None:
        await self.current.close()
        for task in list(self._closing):
            await task
