"""What /predict, /predict_proba, /explain and /feedback do with a request, over whichever
version is served.

`service.py` declares the endpoints (BentoML parses `data` and `on_error`); this answers
them: one `ServedModel` taken per request, rows accepted and scored (or explained) by it, the
answer placed and rendered as JSON or as a table, any failure in our error shape. Every
answer names the tag that answered, in the body and in `X-Agbento-Model`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agbento.core.errors import ApiError
from agbento.core.wire import (
    MODEL_HEADER,
    REQUEST_ID_HEADER,
    error_response,
    json_response,
    request_id_from,
)
from agbento.http.guard import internal_error, report_internal_error
from agbento.rows.columns import STATE_KEY, RequestTable
from agbento.rows.explain_options import STATE_KEY as EXPLAIN_STATE_KEY
from agbento.rows.explain_options import ExplainOptions
from agbento.rows.schema import OnError
from agbento.runtime.contract import AnswerShape, answer_media, render_table
from agbento.runtime.feedback import FeedbackScorer
from agbento.runtime.served import ServedModel


@dataclass(frozen=True)
class Call:
    """One request as the endpoints' work sees it."""

    data: Any
    on_error: OnError
    request_id: str
    # a large request comes decoded into columns by the intake (never one the cache
    # answers: see PredictionIntake); `data` is then empty
    table: RequestTable | None
    total: int  # the request's rows
    media: str | None  # the table format the answer is asked in; None: JSON


# Answers a call with one version: the body's bytes (JSON, or `call.media`'s table).
Work = Callable[[ServedModel, Call], Awaitable[bytes]]


class PredictionEndpoints:
    """The prediction endpoints' work; `current` returns the version to answer with."""

    def __init__(self, current: Callable[[], ServedModel]) -> None:
        self.current = current

    async def respond(self, request: Request, data: Any, on_error: OnError,
                      shape: AnswerShape) -> Response:
        """/predict and /predict_proba."""
        async def predict(served: ServedModel, call: Call) -> bytes:
            contract = served.contract
            contract.require_shape(shape)
            rows, scored = await served.accept_and_score(call.data, call.on_error,
                                                         call.request_id, call.table)
            placed = contract.place(rows, call.total, scored, call.on_error)
            if call.media is None:
                body = contract.render(placed, rows, call.request_id, shape)
            else:
                body = render_table(placed, call.total, contract.classes, call.media)
            served.observer.observe(rows.rows, scored)
            return body

        return await self._answer(request, data, on_error, predict)

    async def explain(self, request: Request, data: Any, on_error: OnError) -> Response:
        """/explain: `top` and `class` come from the intake (the body or the query)."""
        options: ExplainOptions = getattr(request.state, EXPLAIN_STATE_KEY, ExplainOptions())

        async def explain(served: ServedModel, call: Call) -> bytes:
            contract = served.contract
            rows, explained = await served.accept_and_explain(
                call.data, call.on_error, call.request_id, call.table, options)
            placed = contract.place_explanations(rows, call.total, explained, call.on_error)
            if call.media is None:
                return contract.render_explanations(placed, rows, call.request_id, options.top)
            return contract.render_explanation_table(placed, call.total, call.media,
                                                     options.top)

        return await self._answer(request, data, on_error, explain)

    async def _answer(self, request: Request, data: Any, on_error: OnError,
                      work: Work, tables: bool = True) -> Response:
        served = self.current()  # once: this request's version from here to its answer
        request_id = request_id_from(request.headers)
        table: RequestTable | None = getattr(request.state, STATE_KEY, None)
        total = table.total if table is not None else len(data) if isinstance(data, list) else 0
        request.state.rows = total
        request.state.model = served.tag
        media = answer_media(request.headers.get("accept")) if tables else None
        try:
            body = await work(served, Call(data, on_error, request_id, table, total, media))
        except ApiError as error:
            response = error_response(error, request_id)
        except Exception as exc:  # noqa: BLE001 - ours, not the client's: our shape, logged
            report_internal_error(request_id, "POST", request.scope.get("path", "?"), exc)
            response = error_response(internal_error(), request_id)
        else:
            response = json_response(body, 200, request_id) if media is None else Response(
                body, 200, media_type=media, headers={REQUEST_ID_HEADER: request_id})
        response.headers[MODEL_HEADER] = served.tag
        return response

    async def feedback(self, request: Request, data: Any, on_error: OnError) -> Response:
        """Labelled rows scored by the served version: this batch's metrics beside the
        holdout's, counted for the live-quality alert (agbento/runtime/feedback.py); JSON
        whatever the Accept header asks."""
        async def measure(served: ServedModel, call: Call) -> bytes:
            body = await FeedbackScorer(served).evaluate(call.data, call.on_error,
                                                         call.request_id, call.table)
            return json.dumps(body, separators=(",", ":")).encode()

        return await self._answer(request, data, on_error, measure, tables=False)
