"""What /predict and /predict_proba do with a request, over whichever version is served.

`service.py` declares the endpoints (BentoML parses `data` and `on_error`); this answers
them: one `ServedModel` taken per request, rows accepted and scored by it, the answer placed
and rendered as JSON or as a table, any failure in our error shape. Every answer names the
tag that scored it, in the body and in `X-Agbento-Model`.
"""

from __future__ import annotations

from collections.abc import Callable
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
from agbento.rows.schema import OnError
from agbento.runtime.contract import AnswerShape, answer_media, render_table
from agbento.runtime.feedback import FeedbackScorer
from agbento.runtime.served import ServedModel


class PredictionEndpoints:
    """The prediction endpoints' work; `current` returns the version to answer with."""

    def __init__(self, current: Callable[[], ServedModel]) -> None:
        self.current = current

    async def respond(self, request: Request, data: Any, on_error: OnError,
                      shape: AnswerShape) -> Response:
        served = self.current()  # once: this request's version from here to its answer
        request_id = request_id_from(request.headers)
        # a large request comes decoded into columns by the intake (never one the cache
        # answers: see PredictionIntake); `data` is then empty
        table: RequestTable | None = getattr(request.state, STATE_KEY, None)
        total = table.total if table is not None else len(data) if isinstance(data, list) else 0
        request.state.rows = total
        request.state.model = served.tag
        media = answer_media(request.headers.get("accept"))
        contract = served.contract
        try:
            contract.require_shape(shape)
            rows, scored = await served.accept_and_score(data, on_error, request_id, table)
            placed = contract.place(rows, total, scored, on_error)
            if media is None:
                body = contract.render(placed, rows, request_id, shape)
            else:
                body = render_table(placed, total, contract.classes, media)
            served.observer.observe(rows.rows, scored)
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
        holdout's, counted for the live-quality alert (agbento/runtime/feedback.py)."""
        served = self.current()
        request_id = request_id_from(request.headers)
        table: RequestTable | None = getattr(request.state, STATE_KEY, None)
        request.state.rows = table.total if table is not None else (
            len(data) if isinstance(data, list) else 0)
        request.state.model = served.tag
        try:
            body = await FeedbackScorer(served).evaluate(data, on_error, request_id, table)
        except ApiError as error:
            response = error_response(error, request_id)
        except Exception as exc:  # noqa: BLE001 - ours, not the client's: our shape, logged
            report_internal_error(request_id, "POST", request.scope.get("path", "?"), exc)
            response = error_response(internal_error(), request_id)
        else:
            response = json_response(body, 200, request_id)
        response.headers[MODEL_HEADER] = served.tag
        return response
