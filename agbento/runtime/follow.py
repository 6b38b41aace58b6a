"""Following a stage while serving: `AGBENTO_MODEL=NAME@STAGE` serves whatever is promoted.

Every worker that holds a model (a fused API worker, the split model worker) and every
split API worker runs one `StageFollower`: every `AGBENTO_MODEL_POLL_S` it stats the
stage registry's file (a promotion or a rollback renames a new file into place), and when
the stage names another version it hands that tag to `swap`, which loads, verifies and
warms the new version beside the old one and then swaps at once. A version that does not
load is said in one ERROR line, counted (`agbento_model_swaps_total{result="failed"}`:
the `AgbentoModelSwapFailed` alert) and not tried again until the stage changes or an
admin asks (`POST /admin/model/reload`); the old version keeps serving throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from agbento.models.stages import ModelReference, StageRegistry
from agbento.monitoring.metrics import MODEL_SWAPS

logger = logging.getLogger(__name__)

Result = Literal["swapped", "unchanged", "failed", "fixed"]


@dataclass(frozen=True)
class SwapOutcome:
    """What one check did: `swapped` to `tag`, `unchanged`, `failed` (still `tag`), or
    `fixed` (the server serves a fixed version, not a stage)."""

    result: Result
    tag: str
    previous: str | None = None
    error: str | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class StageFollower:
    def __init__(self, reference: str, served_tag: Callable[[], str],
                 swap: Callable[[str], Awaitable[None]], poll_s: float,
                 registry: StageRegistry | None = None) -> None:
        parsed = ModelReference.parse(reference)
        self.reference = reference
        self.name, self.stage = parsed.name, parsed.stage
        self.served_tag = served_tag
        self.swap = swap
        self.poll_s = poll_s
        self.registry = registry or StageRegistry.default()
        self._stamp = self.registry.stamp(self.name) if self.stage else None
        self._failed: set[str] = set()  # versions that did not load, until the stage moves
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def follows(self) -> bool:
        return self.stage is not None

    def start(self) -> None:
        """Poll in the running event loop (the serving loop: call from a startup hook)."""
        if self.follows and self.poll_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the poll goes on; the next check tries again
                logger.exception("checking %s for a new version failed", self.reference)

    async def check(self, force: bool = False) -> SwapOutcome:
        """Swap to the version the stage names now, if it is another. `force` (an admin's
        reload) looks even when the registry file did not change, and retries a version
        that failed before."""
        current = self.served_tag()
        if not self.follows:
            return SwapOutcome("fixed", current)
        stamp = self.registry.stamp(self.name)
        if stamp == self._stamp and not force:
            return SwapOutcome("unchanged", current)
        if stamp != self._stamp:
            self._failed.clear()  # the stage moved: whatever it names now gets its chance
        self._stamp = stamp
        entry = self.registry.current(self.name, self.stage or "")
        if entry is None or entry.tag == current or (entry.tag in self._failed and not force):
            return SwapOutcome("unchanged", current)
        return await self._swap_to(entry.tag, current)

    async def _swap_to(self, tag: str, current: str) -> SwapOutcome:
        async with self._lock:  # a poll and an admin's reload: one swap at a time
            if self.served_tag() != current:
                return SwapOutcome("unchanged", self.served_tag())
            started = time.perf_counter()
            try:
                await self.swap(tag)
            except Exception as exc:  # noqa: BLE001 - the old version keeps serving
                self._failed.add(tag)
                MODEL_SWAPS.labels(result="failed").inc()
                error = f"{type(exc).__name__}: {exc}"
                logger.error("model swap failed: %s (%s) did not load: %s; still serving %s",
                             tag, self.reference, error, current)
                return SwapOutcome("failed", current, error=error)
            seconds = round(time.perf_counter() - started, 3)
            MODEL_SWAPS.labels(result="ok").inc()
            logger.info("model swapped: %s -> %s (%s, loaded and warmed in %.1f s)",
                        current, tag, self.reference, seconds)
            return SwapOutcome("swapped", tag, previous=current, seconds=seconds)
