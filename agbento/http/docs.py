"""/docs.json and /schema.json describe the version being served, not the one served first.

BentoML writes its OpenAPI document once, from the types the service declared at import:
the `data` rows of the first version's schema. After a live swap to a version with other
features, this layer rewrites the rows' schema (and their examples) in those two documents
on their way out, from the version answering now.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agbento.models.store import ModelCard
from agbento.rows.response_models import LABELLED_ROWS_DESCRIPTION, ROWS_DESCRIPTION
from agbento.rows.schema import ExtraFieldsPolicy

DOC_PATHS = frozenset({"/docs.json", "/schema.json"})


@dataclass(frozen=True)
class RowsDoc:
    """The served version's rows as the documents show them (and with their label, as
    /feedback takes them)."""

    tag: str
    items: dict[str, Any]
    examples: list[Any]
    labelled_items: dict[str, Any]
    labelled_examples: list[Any]


def labelled_examples(card: ModelCard) -> list[dict[str, Any]]:
    """The card's example rows with a label each (a class of the model, or a value inside
    the training range), for /feedback's documentation."""
    label = card.schema.label
    if card.is_classification and label.classes:
        value: Any = label.classes[0]
    else:
        low, high = (card.metadata.get("label_range") or [0.0, 0.0])[:2]
        value = round((float(low) + float(high)) / 2, 3)
    return [{**row, label.name: value} for row in card.examples[:2]]


def rows_doc(card: ModelCard, extra_fields: ExtraFieldsPolicy) -> RowsDoc:
    """A version's rows as /docs.json shows them."""
    return RowsDoc(card.tag, card.schema.row_json_schema(extra_fields), card.examples[:2],
                   card.schema.labelled_row_json_schema(extra_fields), labelled_examples(card))


def rewrite_rows(document: Any, rows: RowsDoc) -> Any:
    """Every `data` parameter described as rows gets `rows`' schema and examples."""
    if isinstance(document, dict):
        found = document.get("data")
        described = found.get("description") if isinstance(found, dict) else None
        if described == ROWS_DESCRIPTION:
            document = {**document, "data": {**found, "items": rows.items,
                                             "examples": [rows.examples]}}
        elif described == LABELLED_ROWS_DESCRIPTION:
            document = {**document, "data": {**found, "items": rows.labelled_items,
                                             "examples": [rows.labelled_examples]}}
        return {key: rewrite_rows(value, rows) for key, value in document.items()}
    if isinstance(document, list):
        return [rewrite_rows(value, rows) for value in document]
    return document


class CurrentSchemaDocs:
    def __init__(self, app: ASGIApp, first_tag: str, current: Callable[[], RowsDoc]) -> None:
        self.app = app
        self.first_tag = first_tag
        self.current = current

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOC_PATHS:
            await self.app(scope, receive, send)
            return
        rows = self.current()
        if rows.tag == self.first_tag:  # what BentoML wrote is right: no work
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False) or start is None:
                return
            out = bytes(body)
            if start["status"] == 200:
                out = json.dumps(rewrite_rows(json.loads(out), rows)).encode()
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers,
                                             (b"content-length", str(len(out)).encode())]})
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, receive, hold)
