"""What an /explain request asks besides its rows: `top` and the explained `class`.

A JSON body carries them beside `data` (`{"data": [...], "top": 3, "class": "Gentoo"}`);
any body may carry them in the query (`/explain?top=3&class=Gentoo`, the only way for CSV,
Parquet and Arrow bodies), and the query wins, as it does for `on_error`. The intake reads
and checks them before BentoML parses the body, and hands them to the endpoint on the
request's state; whether the class is one of the model's is the contract's to say (it
knows the model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agbento.core.errors import ApiError, ErrorCode

# The request state's key for a request's options.
STATE_KEY = "explain_options"
# The body's (and the query's) names for them.
TOP, CLASS = "top", "class"
KEYS = frozenset({TOP, CLASS})
# Longest class name a request may send (a longer one is no class of any model we serve).
MAX_CLASS_CHARS = 256


@dataclass(frozen=True)
class ExplainOptions:
    """`top`: answer each row's k largest contributions (by magnitude) and their rest as
    `others`; None: every feature. `explained_class`: the class whose probability is
    explained for every row; None: each row's predicted class."""

    top: int | None = None
    explained_class: str | None = None

    @classmethod
    def read(cls, body: Mapping[str, Any], query: Mapping[str, list[str]]) -> ExplainOptions:
        """From a JSON body's `top`/`class` and the query's (which win); 400 when either is
        not what it must be."""
        given = {key: body[key] for key in KEYS if key in body}
        given.update({key: query[key][-1] for key in KEYS if query.get(key)})
        return cls(top=_top(given.get(TOP)), explained_class=_class(given.get(CLASS)))


def _top(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        shown = value if not isinstance(value, str) else repr(value[:40])
        raise ApiError(ErrorCode.BAD_REQUEST,
                       f"`top` must be a whole number of at least 1 (got {shown})")
    return value


def _class(value: Any) -> str | None:
    """A class name as the model's classes are compared: their text (`str(label)`), so a
    numeric or boolean label may be sent as a JSON number or boolean too."""
    if value is None:
        return None
    if isinstance(value, bool | int | str):  # not a float: 1.0 names no class
        text = str(value)
        if 0 < len(text) <= MAX_CLASS_CHARS:
            return text
    raise ApiError(ErrorCode.BAD_REQUEST,
                   "`class` must be one of the model's classes, as a string (or the number "
                   f"or boolean the label is), of 1 to {MAX_CLASS_CHARS} characters")
