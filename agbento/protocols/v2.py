"""Open Inference Protocol (V2) and KServe V1 bodies: codecs in front of the prediction contract.

Nothing here scores or validates values: `decode_request` turns a V2 inference request (JSON,
or JSON plus binary tensor data) into the row objects that `/predict` takes, and
`encode_response` turns the contract's answer back into V2 output tensors. Validation,
the cache, batching and the model are the same as for `/predict`.

Tensors follow KServe's AutoGluon server, so clients written for it work unchanged:
- inputs: one tensor per feature, named after it, shape [N] or [N, 1];
- outputs: `predictions` (BYTES, INT64 or FP64, following the label's type; FP64 for
  regression) and, for classifiers, one FP64 tensor per class named `proba_<class>`, the
  class name sanitised as KServe's `_sanitize_label` / `_get_proba_output_names` do.

Binary tensor data extension: a request body may be a JSON header of
`Inference-Header-Content-Length` bytes followed by the raw tensors of the inputs that
carry `parameters.binary_data_size`, in input order; BYTES elements are each prefixed by
their length (4 bytes, little-endian). Outputs are sent the same way when asked for.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agbento import __version__
from agbento.core.errors import ApiError, ErrorCode
from agbento.http.intake import parse_json
from agbento.models.store import ModelCard
from agbento.rows.bounds import MAX_ROWS_VARIABLE, TableBounds, check_row_count
from agbento.rows.schema import Feature, FeatureSchema, is_classification

HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "autogluon-tabular"
EXTENSIONS = ("binary_tensor_data",)
PREDICTIONS = "predictions"
# MLServer's PandasCodec sends a string column holding nulls as BYTES whose elements are
# each one JSON value (content type "pd_json")
JSON_ELEMENTS = "pd_json"

# little-endian numpy dtypes of the fixed-size datatypes (BYTES is length-prefixed)
NUMPY_DTYPES: dict[str, str] = {
    "BOOL": "|b1",
    "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}
DATATYPES = frozenset({*NUMPY_DTYPES, "BYTES"})
INTEGERS = frozenset(d for d in NUMPY_DTYPES if "INT" in d)
NUMBERS = frozenset({*INTEGERS, "FP16", "FP32", "FP64"})
# What a tensor may be for each feature kind: the first is what metadata advertises. The
# schema then checks every value, as it does for /predict (so "yes" is a fine boolean).
ACCEPTED: dict[str, tuple[str, ...]] = {
    "numeric": ("FP64", *sorted(NUMBERS - {"FP64"})),
    "boolean": ("BOOL", "BYTES", *sorted(INTEGERS)),
    "categorical": ("BYTES", *sorted(INTEGERS)),
    "text": ("BYTES",),
    "datetime": ("BYTES",),
}
# Python types a JSON `data` element may have per datatype (None is a missing value)
JSON_ELEMENT_TYPES: dict[str, tuple[type, ...]] = {
    **{d: (int, type(None)) for d in INTEGERS},
    **{d: (int, float, type(None)) for d in ("FP16", "FP32", "FP64")},
    "BOOL": (bool, type(None)),
    "BYTES": (str, type(None)),
}


def sanitize_label(label: object) -> str:
    """A class as KServe's AutoGluon server names it (tabular_model.py `_sanitize_label`)."""
    normalized = str(label).strip().replace(" ", "_")
    normalized = re.sub(r"[^0-9A-Za-z_]", "", normalized)
    if not normalized:
        normalized = "class"
    if normalized[0].isdigit():
        normalized = f"_{normalized}"
    return normalized


def proba_output_names(labels: Sequence[object]) -> list[str]:
    """`proba_<class>` per class; a repeated name gets `_2`, `_3`, ... (as KServe does)."""
    names: list[str] = []
    used: set[str] = set()
    for label in labels:
        base = f"proba_{sanitize_label(label)}"
        candidate, index = base, 2
        while candidate in used:
            candidate = f"{base}_{index}"
            index += 1
        used.add(candidate)
        names.append(candidate)
    return names


def prediction_datatype(classes: Sequence[object] | None) -> str:
    """KServe's rule (`_determine_prediction_datatype`): INT64 when every class is an
    integer, FP64 when every class reads as a number, BYTES otherwise; FP64 for regression."""
    if classes is None:
        return "FP64"
    labels = list(classes)
    if not labels:
        return "BYTES"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in labels):
        return "INT64"
    if all(_reads_as_number(c) for c in labels):
        return "FP64"
    return "BYTES"


def _reads_as_number(value: object) -> bool:
    if isinstance(value, (bool, int, float)):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class OutputSpec:
    name: str
    datatype: str
    # the class whose probability this is (None for `predictions`)
    label: object | None = None


@dataclass(frozen=True)
class ProtocolModel:
    """The served model as V2 describes it: name, version, input and output tensors."""

    name: str
    version: str
    schema: FeatureSchema
    classification: bool
    outputs: tuple[OutputSpec, ...]

    @classmethod
    def of(cls, card: ModelCard, name: str = "") -> ProtocolModel:
        tag_name, _, version = card.tag.partition(":")
        return cls.from_schema(card.schema, name or tag_name, version)

    @classmethod
    def from_schema(cls, schema: FeatureSchema, name: str, version: str) -> ProtocolModel:
        classification = is_classification(schema.label.problem_type)
        classes = schema.label.classes if classification else None
        outputs = [OutputSpec(PREDICTIONS, prediction_datatype(classes))]
        if classes is not None:
            outputs += [OutputSpec(output, "FP64", label)
                        for output, label in zip(proba_output_names(classes), classes,
                                                 strict=True)]
        return cls(name, version, schema, classification, tuple(outputs))

    @property
    def features(self) -> tuple[Feature, ...]:
        return self.schema.features

    def input_datatype(self, feature: Feature) -> str:
        if feature.kind == "numeric" and feature.integer and not feature.nullable:
            return "INT64"
        return ACCEPTED[feature.kind][0]

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": PLATFORM,
            "inputs": [{"name": f.name, "datatype": self.input_datatype(f), "shape": [-1]}
                       for f in self.features],
            "outputs": [{"name": o.name, "datatype": o.datatype, "shape": [-1]}
                        for o in self.outputs],
        }

    def check_target(self, name: str, version: str | None) -> None:
        """404 for any model or version but ours (the spec's answer to an unknown model)."""
        if name != self.name:
            raise ApiError(ErrorCode.MODEL_NOT_FOUND,
                           f"model {name!r} is not served here; this server serves "
                           f"{self.name!r}")
        if version is not None and version != self.version:
            raise ApiError(ErrorCode.MODEL_NOT_FOUND,
                           f"model {name!r} has no version {version!r}; the served version "
                           f"is {self.version!r}")


def server_metadata() -> dict[str, Any]:
    return {"name": "agbento", "version": __version__, "extensions": list(EXTENSIONS)}


@dataclass
class RequestedOutput:
    spec: OutputSpec
    binary: bool


@dataclass
class InferenceRequest:
    """A decoded V2 request: the rows for the contract, and how to answer."""

    id: str | None
    records: list[dict[str, Any]]
    outputs: list[RequestedOutput] = field(default_factory=list)


def _bad(message: str) -> ApiError:
    return ApiError(ErrorCode.BAD_REQUEST, message)


def _tensor_error(name: str, message: str, row: int | None = None) -> ApiError:
    where = f"input {name!r}" + (f", row {row}" if row is not None else "")
    return ApiError(ErrorCode.INVALID_TENSOR, f"{where}: {message}")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of a body, per Inference-Header-Content-Length."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise _bad(f"{HEADER_LENGTH} {header_length!r} is not a length within the "
                   f"{len(body)}-byte body")
    length = int(header_length)
    return body[:length], body[length:]


def _bounds(model: ProtocolModel, max_rows: int, body: bytes) -> TableBounds:
    """The JSON bounds of the prediction intake (names, numbers, values), for this body."""
    return TableBounds.for_service(max_rows, len(body) or 1, None, model.schema.names)


def decode_request(body: bytes, header_length: str | None, model: ProtocolModel,
                   max_rows: int) -> InferenceRequest:
    """A V2 inference request -> row objects, or ApiError 400 naming input (and row)."""
    header, binary = split_body(body, header_length)
    bounds = _bounds(model, max_rows, header)
    # tritonclient writes a float NaN (pandas' missing value) into JSON data as NaN
    document = parse_json(header, bounds, nan_is_null=True)
    if not isinstance(document, dict):
        raise _bad("the body must be a JSON object with `inputs`")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("`inputs` must be a non-empty list of tensors, one per feature: "
                   f"{', '.join(model.schema.names)}")
    # one tensor per feature: the fields-per-row bound /predict applies (413 too_many_columns)
    bounds.check_field_count(len(inputs), "`inputs`")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("`id` must be a string")
    parameters = _parameters(document, "the request")
    if "classification" in parameters:
        raise _bad("the classification extension is not supported: ask for the "
                   "proba_<class> outputs instead")
    columns = _decode_inputs(inputs, binary, model, max_rows)
    names = list(columns)
    records = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(),
                                                                         strict=True)]
    if not records:
        raise ApiError(ErrorCode.EMPTY_DATA, "the request has no rows (tensors of length 0)")
    outputs = _requested_outputs(document.get("outputs"), model,
                                 bool(parameters.get("binary_data_output", False)))
    return InferenceRequest(request_id, records, outputs)


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = holder.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _bad(f"`parameters` of {what} must be an object")
    return parameters


def _decode_inputs(inputs: list[Any], binary: bytes, model: ProtocolModel,
                   max_rows: int) -> dict[str, list[Any]]:
    features = {f.name: f for f in model.features}
    columns: dict[str, list[Any]] = {}
    offset = 0
    rows: int | None = None
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise _bad(f"inputs[{index}] must be an object with a string `name`")
        name = tensor["name"]
        if name in columns:
            raise _tensor_error(name, "sent twice")
        datatype, count = _check_header(tensor, max_rows)
        if rows is not None and count != rows:
            raise _tensor_error(name, f"has {count} rows but {next(iter(columns))!r} has "
                                f"{rows}: every input carries one value per row")
        rows = count
        feature = features.get(name)
        if feature is not None and datatype not in ACCEPTED[feature.kind]:
            raise _tensor_error(name, f"datatype {datatype} does not fit this {feature.kind} "
                                f"feature; send {model.input_datatype(feature)} (accepted: "
                                f"{', '.join(ACCEPTED[feature.kind])})")
        parameters = _parameters(tensor, f"input {name!r}")
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _tensor_error(name, "binary_data_size must be a non-negative integer")
            if "data" in tensor:
                raise _tensor_error(name, "has both `data` and binary_data_size")
            if offset + size > len(binary):
                raise _tensor_error(name, f"binary_data_size {size} runs past the end of the "
                                    f"binary data ({len(binary) - offset} bytes left)")
            values = _from_binary(name, datatype, binary[offset:offset + size], count)
            offset += size
        else:
            if "data" not in tensor:
                raise _tensor_error(name, "has neither `data` nor binary_data_size")
            values = _from_json(name, datatype, tensor["data"], count)
        if parameters.get("content_type") == JSON_ELEMENTS and datatype == "BYTES":
            values = _json_elements(name, values)
        columns[name] = values
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} byte(s) of binary data follow the last tensor "
                   "that declared binary_data_size")
    missing = [f.name for f in model.features if f.name not in columns and not f.nullable]
    if missing:
        raise ApiError(
            ErrorCode.MISSING_INPUTS,
            f"missing input(s) {', '.join(map(repr, missing))}: send one tensor per feature "
            f"(GET /v2/models/{model.name} lists them)")
    return columns


def _check_header(tensor: dict[str, Any], max_rows: int) -> tuple[str, int]:
    name = tensor["name"]
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise _tensor_error(name, f"unknown datatype {datatype!r}; use one of "
                            f"{', '.join(sorted(DATATYPES))}")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                       for d in shape)):
        raise _tensor_error(name, f"shape {shape!r} must be a list of non-negative integers")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise _tensor_error(name, f"shape {shape} must be [N] or [N, 1]: one value per row")
    if shape[0] > max_rows:
        check_row_count(shape[0], max_rows)
    return datatype, shape[0]


def _from_json(name: str, datatype: str, data: Any, count: int) -> list[Any]:
    if not isinstance(data, list):
        raise _tensor_error(name, "`data` must be a list")
    if data and isinstance(data[0], list):  # row-major nested form [[v], [v], ...]
        if not all(isinstance(row, list) and len(row) == 1 for row in data):
            raise _tensor_error(name, "nested `data` must hold one value per row")
        data = [row[0] for row in data]
    if len(data) != count:
        raise _tensor_error(name, f"`data` has {len(data)} values but the shape says {count}")
    allowed = JSON_ELEMENT_TYPES[datatype]
    found = {type(value) for value in data}
    if not found.issubset(allowed) or (bool in found and bool not in allowed):
        row, value = next((i, v) for i, v in enumerate(data)
                          if type(v) not in allowed or (isinstance(v, bool)
                                                        and bool not in allowed))
        raise _tensor_error(name, f"{_json_kind(value)} is not a {datatype} value", row)
    return data


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"a JSON {type(value).__name__}"


def _from_binary(name: str, datatype: str, raw: bytes, count: int) -> list[Any]:
    if datatype == "BYTES":
        return _unpack_bytes(name, raw, count)
    dtype = np.dtype(NUMPY_DTYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise _tensor_error(name, f"{len(raw)} bytes of binary data, but {count} {datatype} "
                            f"values take {count * dtype.itemsize}")
    array = np.frombuffer(raw, dtype=dtype)
    values = array.tolist()
    if dtype.kind == "f" and np.isnan(array).any():  # NaN is how a float tensor says missing
        values = [None if v != v else v for v in values]
    return values


def _unpack_bytes(name: str, raw: bytes, count: int) -> list[str]:
    values: list[str] = []
    offset = 0
    for row in range(count):
        if offset + 4 > len(raw):
            raise _tensor_error(name, "binary BYTES data ends before this element", row)
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _tensor_error(name, f"element of {length} bytes runs past the end of the "
                                "binary data", row)
        try:
            values.append(raw[offset:offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise _tensor_error(name, "element is not UTF-8 text", row) from None
        offset += length
    if offset != len(raw):
        raise _tensor_error(name, f"{len(raw) - offset} byte(s) left after {count} elements")
    return values


def _json_elements(name: str, values: list[Any]) -> list[Any]:
    decoded = []
    for row, value in enumerate(values):
        if value is None:
            decoded.append(None)
            continue
        try:
            decoded.append(json.loads(value))
        except ValueError:
            raise _tensor_error(name, f"content type {JSON_ELEMENTS} but the element is not "
                                "JSON", row) from None
    return decoded


def _requested_outputs(requested: Any, model: ProtocolModel,
                       binary_default: bool) -> list[RequestedOutput]:
    if requested is None:
        return [RequestedOutput(spec, binary_default) for spec in model.outputs]
    if not isinstance(requested, list):
        raise _bad("`outputs` must be a list of {\"name\": ...} objects")
    by_name = {spec.name: spec for spec in model.outputs}
    chosen = []
    for index, output in enumerate(requested):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise _bad(f"outputs[{index}] must be an object with a string `name`")
        spec = by_name.get(output["name"])
        if spec is None:
            raise _bad(f"unknown output {output['name']!r}; this model has "
                       f"{', '.join(by_name)}")
        parameters = _parameters(output, f"output {spec.name!r}")
        if "classification" in parameters:
            raise _bad("the classification extension is not supported: ask for the "
                       "proba_<class> outputs instead")
        chosen.append(RequestedOutput(spec, bool(parameters.get("binary_data",
                                                                binary_default))))
    return chosen


@dataclass
class EncodedResponse:
    body: bytes
    headers: dict[str, str]
    media_type: str


def encode_response(model: ProtocolModel, request: InferenceRequest, request_id: str,
                    predictions: list[Any],
                    probabilities: Mapping[str, Sequence[Any]] | None) -> EncodedResponse:
    """Output tensors for the rows' predictions (and per `str(class)` its probabilities)."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    count = len(predictions)
    for wanted in request.outputs:
        spec = wanted.spec
        if spec.label is None:
            values = _prediction_values(predictions, spec.datatype)
        else:
            key = str(spec.label)
            values = list(probabilities[key]) if probabilities is not None else []
        tensor: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype,
                                  "shape": [count]}
        if wanted.binary:
            blob = _pack(values, spec.datatype)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = values
        outputs.append(tensor)
    header = json.dumps({"model_name": model.name, "model_version": model.version,
                         "id": request.id if request.id is not None else request_id,
                         "outputs": outputs}, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return EncodedResponse(header, {}, "application/json")
    return EncodedResponse(header + b"".join(blobs), {HEADER_LENGTH: str(len(header))},
                           "application/octet-stream")


def _prediction_values(predictions: list[Any], datatype: str) -> list[Any]:
    if datatype == "BYTES":
        return [p if isinstance(p, str) else str(p) for p in predictions]
    if datatype == "INT64":
        return [int(p) for p in predictions]
    return [float(p) for p in predictions]


def _pack(values: list[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        encoded = [v.encode("utf-8") for v in values]
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    return np.asarray(values, dtype=NUMPY_DTYPES[datatype]).tobytes()


# -- KServe V1 ------------------------------------------------------------------------------

def decode_v1_request(body: bytes, model: ProtocolModel, max_rows: int,
                      rows_variable: str = MAX_ROWS_VARIABLE) -> list[Any]:
    """`{"instances": [...]}`: row objects, or value lists in feature order; at most
    `max_rows` of them (`rows_variable` sets it: `:predict`'s, or `:explain`'s)."""
    bounds = _bounds(model, max_rows, body)
    document = parse_json(body, bounds)
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        raise _bad('the body must be {"instances": [rows]}: row objects or lists of values '
                   f"in feature order ({', '.join(model.schema.names)})")
    instances = document["instances"]
    if not instances:
        raise ApiError(ErrorCode.EMPTY_DATA, "`instances` has no rows")
    if len(instances) > max_rows:
        check_row_count(len(instances), max_rows, rows_variable)
    for i, row in enumerate(instances):  # the fields-per-row bound of /predict's rows
        if isinstance(row, (dict, list)):
            bounds.check_field_count(len(row), f"instance {i}")
    names = model.schema.names
    problems = [{"row": i, "field": None,
                 "problem": f"a list instance needs {len(names)} values in feature order "
                            f"({', '.join(names)}), got {len(row)}"}
                for i, row in enumerate(instances)
                if isinstance(row, list) and len(row) != len(names)]
    if problems:
        raise ApiError(ErrorCode.BAD_REQUEST, f"{len(problems)} instance(s) have the wrong length",
                       problems)
    return [dict(zip(names, row, strict=True)) if isinstance(row, list) else row
            for row in instances]


def encode_v1_response(predictions: list[Any]) -> bytes:
    return json.dumps({"predictions": predictions}, separators=(",", ":")).encode()


def encode_v1_explanations(explanations: list[dict[str, Any] | None]) -> bytes:
    """KServe V1's explain answer: `{"explanations": [...]}`, /explain's per-row objects."""
    import orjson

    return orjson.dumps({"explanations": explanations})


# -- errors ---------------------------------------------------------------------------------

# How many row/field problems the one-line V2 error message spells out.
MAX_PROBLEMS_IN_MESSAGE = 10


def error_message(body: bytes, noun: str = "input") -> str:
    """Our error body `{"error": {"code", "message", "details"}}` as the single message V2
    and V1 clients show, naming row and input for each problem; other bodies as text."""
    try:
        document = json.loads(body)
        error = document["error"]
        if isinstance(error, str):
            return error
        message = str(error["message"])
        details = error.get("details") or []
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip()[:1000] or "request failed"
    problems = [_problem_text(d, noun) for d in details[:MAX_PROBLEMS_IN_MESSAGE]
                if isinstance(d, dict) and "problem" in d]
    if not problems:
        return message
    more = len(details) - MAX_PROBLEMS_IN_MESSAGE
    tail = f"; and {more} more" if more > 0 else ""
    return f"{message}: {'; '.join(problems)}{tail}"


def _problem_text(detail: dict[str, Any], noun: str) -> str:
    where = []
    if detail.get("row") is not None:
        where.append(f"row {detail['row']}")
    if detail.get("field") is not None:
        where.append(f"{noun} {detail['field']!r}")
    prefix = ", ".join(where)
    return f"{prefix}: {detail['problem']}" if prefix else str(detail["problem"])
