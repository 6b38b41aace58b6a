"""Shadow scoring: a candidate version scores a sample of live requests, off the request path.

`AGBENTO_SHADOW_MODEL=NAME:VERSION` (or `NAME@staging`) loads the candidate in every API
worker beside the served model. For a share `AGBENTO_SHADOW_SAMPLE` of scored requests the
served model's validated rows and answers are queued (`offer`: one random draw and an
append, nothing else on the request path); one thread of the candidate's own takes
everything queued, scores it in one model call and compares: label agreement for a
classifier, the difference of values for a regressor. Answers never change. The queue is
bounded in rows (`AGBENTO_SHADOW_QUEUE_ROWS`): beyond it a request is dropped and counted.
The thread scores at most every `BATCH_INTERVAL_S`, so what queues meanwhile is one call.
Disagreeing rows are written to the prediction log (`agbento_shadow` beside
`agbento_predictions`, AGBENTO_PREDICTION_LOG_DIR), as many as `AGBENTO_SHADOW_LOG_ROWS`
a minute.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agbento.core.settings import Settings
from agbento.monitoring.metrics import (
    SHADOW_DIFFERENCE,
    SHADOW_REQUESTS,
    SHADOW_ROWS,
)
from agbento.monitoring.prediction_log import write_rows
from agbento.rows.schema import FeatureSchema
from agbento.runtime.inference import Group, ScoredRequest, TabularRuntime

logger = logging.getLogger(__name__)

SHADOW_LOG = "agbento_shadow"


class ShadowIncompatible(ValueError):
    """The candidate needs features the served model's rows do not carry (or of another
    kind): it could score none of them."""


@dataclass
class _Offered:
    group: Group  # the served model's validated rows: value lists or its frame
    schema: FeatureSchema  # the served version's (value lists are in its order)
    scored: ScoredRequest  # the served answers (read in the shadow's thread)
    served_tag: str
    request_id: str


def offered_rows(batch: list[_Offered]) -> pd.DataFrame:
    """Every offered row, in order, as one table of the served columns. Consecutive value
    lists of one schema become one frame: a frame per single-row request (and a concat of
    hundreds) would cost the shadow's thread, holding the GIL, more than its model call."""
    parts: list[pd.DataFrame] = []
    pending: list[list[Any]] = []
    pending_schema: FeatureSchema | None = None

    def flush() -> None:
        if pending and pending_schema is not None:
            parts.append(pending_schema.to_frame(pending))
        pending.clear()

    for offered in batch:
        if isinstance(offered.group, pd.DataFrame):
            flush()
            parts.append(offered.group)
            continue
        if offered.schema is not pending_schema:
            flush()
            pending_schema = offered.schema
        pending.extend(offered.group)
    flush()
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


# The shadow's thread scores at most this often: what queues meanwhile is one model call
# (a call per single-row request would hold the GIL far longer than the rows need).
BATCH_INTERVAL_S = 0.5


class ShadowScorer:
    def __init__(self, runtime: TabularRuntime, sample: float, queue_rows: int,
                 log_rows_per_minute: int, log_dir: str) -> None:
        self.runtime = runtime
        self.tag = runtime.card.tag
        self.schema = runtime.schema
        self.classification = runtime.classification
        self.sample = sample
        self.queue_rows = queue_rows
        self.log_rows_per_minute = log_rows_per_minute
        self.log_dir = log_dir
        self._queue: deque[_Offered] = deque()
        self._queued_rows = 0
        self._ready = threading.Condition()
        self._logged_minute = (0, 0)  # (minute, rows logged in it)
        self._thread = threading.Thread(target=self._run, name="agbento-shadow", daemon=True)
        self._thread.start()

    def check_compatible(self, served: FeatureSchema) -> None:
        """Raise unless every feature the candidate needs comes with the served rows."""
        kinds = {f.name: f.kind for f in served.features}
        missing = [f.name for f in self.schema.features
                   if not f.nullable and f.name not in kinds]
        other = [f.name for f in self.schema.features
                 if f.name in kinds and kinds[f.name] != f.kind]
        if missing or other:
            raise ShadowIncompatible(
                f"shadow model {self.tag} needs "
                + "; ".join(part for part in (
                    f"features the served model does not take: {', '.join(missing)}"
                    if missing else "",
                    f"features of another kind: {', '.join(other)}" if other else "") if part))

    def offer(self, served_schema: FeatureSchema, group: Group,
              scored: ScoredRequest | None, served_tag: str, request_id: str) -> None:
        """On the request path: sampled, queued (or dropped and counted); never raises."""
        if scored is None or not len(group) or random.random() >= self.sample:
            return
        try:
            rows = len(group)
            with self._ready:
                if self._queued_rows + rows > self.queue_rows:
                    SHADOW_REQUESTS.labels(shadow=self.tag, result="dropped").inc()
                    return
                self._queue.append(_Offered(group, served_schema, scored, served_tag,
                                            request_id))
                self._queued_rows += rows
                self._ready.notify()
        except Exception:  # noqa: BLE001 - the answer must not notice the shadow
            SHADOW_REQUESTS.labels(shadow=self.tag, result="error").inc()
            logger.exception("shadow: could not queue a request")

    def _take(self) -> list[_Offered]:
        with self._ready:
            while not self._queue:
                self._ready.wait()
            taken = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
            return taken

    def _run(self) -> None:
        while True:
            batch = self._take()
            started = time.monotonic()
            try:
                self._score(batch)
            except Exception as exc:  # noqa: BLE001 - count, say once per kind, go on
                SHADOW_REQUESTS.labels(shadow=self.tag, result="error").inc(len(batch))
                logger.warning("shadow model %s failed on %d request(s): %s: %s", self.tag,
                               len(batch), type(exc).__name__, str(exc)[:200])
            time.sleep(max(0.0, BATCH_INTERVAL_S - (time.monotonic() - started)))

    def _score(self, batch: list[_Offered]) -> None:
        frame = self.schema.to_frame(offered_rows(batch))
        labels, _ = self.runtime.predict_frame(frame)
        shadow = labels.tolist()
        served = [p for b in batch for p in b.scored.prediction_values]
        answered = [i for i, p in enumerate(served) if p is not None]
        SHADOW_REQUESTS.labels(shadow=self.tag, result="scored").inc(len(batch))
        if self.classification:
            agree = np.array([str(shadow[i]) == str(served[i]) for i in answered], dtype=bool)
            SHADOW_ROWS.labels(shadow=self.tag, agreement="agree").inc(int(agree.sum()))
            SHADOW_ROWS.labels(shadow=self.tag, agreement="disagree").inc(
                int((~agree).sum()))
            disagreeing = [i for i, same in zip(answered, agree, strict=True) if not same]
        else:
            difference = (np.asarray([shadow[i] for i in answered], dtype=np.float64)
                          - np.asarray([served[i] for i in answered], dtype=np.float64))
            for value in difference:
                SHADOW_DIFFERENCE.labels(shadow=self.tag).observe(float(value))
            scale = np.maximum(np.abs([served[i] for i in answered]), 1e-9)
            # "disagree": more than 10% away from the served value
            far = np.abs(difference) > 0.1 * scale
            SHADOW_ROWS.labels(shadow=self.tag, agreement="agree").inc(int((~far).sum()))
            SHADOW_ROWS.labels(shadow=self.tag, agreement="disagree").inc(int(far.sum()))
            disagreeing = [i for i, is_far in zip(answered, far, strict=True) if is_far]
        self._log(batch, frame, served, shadow, disagreeing)

    def _log(self, batch: list[_Offered], frame: pd.DataFrame, served: list[Any],
             shadow: list[Any], rows: list[int]) -> None:
        minute = int(time.time() // 60)
        at, logged = self._logged_minute
        room = self.log_rows_per_minute - (logged if at == minute else 0)
        rows = rows[:max(room, 0)]
        if not rows:
            return
        self._logged_minute = (minute, (logged if at == minute else 0) + len(rows))
        request_ids = [b.request_id for b in batch for _ in range(len(b.group))]
        tags = [b.served_tag for b in batch for _ in range(len(b.group))]
        write_rows(SHADOW_LOG, self.log_dir, self.schema, frame.iloc[rows], {
            "prediction": [served[i] for i in rows],
            "shadow_prediction": [shadow[i] for i in rows],
            "model": [tags[i] for i in rows],
            "shadow_model": [self.tag] * len(rows),
            "request_id": [request_ids[i] for i in rows],
        }, self.classification)


def open_shadow(settings: Settings) -> ShadowScorer | None:
    """The candidate AGBENTO_SHADOW_MODEL names (resolved once, at start), verified, loaded
    and warmed up, its thread started; None when none is set."""
    from agbento.models.stages import resolve_tag
    from agbento.models.store import find_card

    if not settings.shadow_model:
        return None
    card = find_card(resolve_tag(settings.shadow_model))
    runtime = TabularRuntime.ready_to_serve(card, settings.allow_version_mismatch)
    return ShadowScorer(runtime, settings.shadow_sample, settings.shadow_queue_rows,
                        settings.shadow_log_rows, settings.prediction_log_dir)
