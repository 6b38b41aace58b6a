"""The V2 / KServe V1 codecs in-process, with bodies built and read by tritonclient itself."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput, InferResult

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.settings import Settings
from agbento.http.routes import route_for
from agbento.protocols.v2 import (
    HEADER_LENGTH,
    ProtocolModel,
    decode_request,
    decode_v1_request,
    encode_response,
    error_message,
    prediction_datatype,
    proba_output_names,
    sanitize_label,
)
from agbento.rows.schema import FeatureSchema

SCHEMA = FeatureSchema.from_dict({
    "features": [
        {"name": "island", "kind": "categorical", "nullable": False,
         "categories": ["Biscoe", "Dream", "Torgersen"]},
        {"name": "bill_length_mm", "kind": "numeric", "nullable": True,
         "minimum": 32.1, "maximum": 59.6},
        {"name": "flipper_length_mm", "kind": "numeric", "nullable": False, "integer": True},
        {"name": "sex", "kind": "categorical", "nullable": True},
        {"name": "tagged", "kind": "boolean", "nullable": False},
    ],
    "label": {"name": "species", "problem_type": "multiclass",
              "classes": ["Adelie", "Chinstrap penguin", "Gentoo"]},
})
MODEL = ProtocolModel.from_schema(SCHEMA, "penguins", "v7")
MAX_ROWS = 100
COLUMNS: dict[str, list[Any]] = {
    "island": ["Biscoe", "Dream", "Torgersen"],
    "bill_length_mm": [45.1, float("nan"), 39.0],
    "flipper_length_mm": [215, 190, 181],
    "sex": ["female", "male", "é ünïcode"],
    "tagged": [True, False, True],
}
TRITON_TYPES = {"island": "BYTES", "bill_length_mm": "FP64", "flipper_length_mm": "INT64",
                "sex": "BYTES", "tagged": "BOOL"}


def triton_inputs(binary: bool, columns: dict[str, list[Any]] = COLUMNS) -> list[InferInput]:
    inputs = []
    for name, values in columns.items():
        datatype = TRITON_TYPES[name]
        array = np.array(values, dtype=object if datatype == "BYTES" else None)
        if datatype == "INT64":
            array = array.astype(np.int64)
        tensor = InferInput(name, [len(values), 1], datatype)
        tensor.set_data_from_numpy(array.reshape(-1, 1), binary_data=binary)
        inputs.append(tensor)
    return inputs


def body_of(inputs: list[InferInput], outputs: list[InferRequestedOutput] | None = None,
            request_id: str = "") -> tuple[bytes, str | None]:
    body, json_size = InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, request_id=request_id)
    return body, None if json_size is None else str(json_size)


def decode(body: bytes, header_length: str | None = None, model: ProtocolModel = MODEL):
    return decode_request(body, header_length, model, MAX_ROWS)


def json_body(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def rejected(body: bytes, header_length: str | None = None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode(body, header_length)
    return caught.value


# -- names and datatypes as KServe's AutoGluon server gives them ---------------------------

@pytest.mark.parametrize(("label", "name"), [
    ("Adelie", "Adelie"), ("Chinstrap penguin", "Chinstrap_penguin"), (" padded ", "padded"),
    ("a-b.c/d", "abcd"), ("1st", "_1st"), (3, "_3"), ("@@@", "class"), ("", "class"),
    ("naïve", "nave"), (True, "True"), (2.5, "_25"),
])
def test_sanitize_label_as_kserve(label: object, name: str) -> None:
    assert sanitize_label(label) == name


def test_repeated_names_get_a_counter_as_kserve() -> None:
    assert proba_output_names(["a b", "a_b", "a-b", "@", "#"]) == [
        "proba_a_b", "proba_a_b_2", "proba_ab", "proba_class", "proba_class_2"]


@pytest.mark.parametrize(("classes", "datatype"), [
    (None, "FP64"), (("a", "b"), "BYTES"), ((0, 1, 2), "INT64"), ((0.5, 1), "FP64"),
    (("1", "2"), "FP64"), ((True, False), "FP64"), ((1, "x"), "BYTES"),
])
def test_prediction_datatype_follows_the_label(classes: Any, datatype: str) -> None:
    assert prediction_datatype(classes) == datatype


def test_metadata_lists_every_feature_and_output() -> None:
    meta = MODEL.metadata()
    assert meta["name"] == "penguins" and meta["versions"] == ["v7"]
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("island", "BYTES"), ("bill_length_mm", "FP64"), ("flipper_length_mm", "INT64"),
        ("sex", "BYTES"), ("tagged", "BOOL")]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
        ("predictions", "BYTES"), ("proba_Adelie", "FP64"),
        ("proba_Chinstrap_penguin", "FP64"), ("proba_Gentoo", "FP64")]


def test_regression_has_only_fp64_predictions() -> None:
    schema = FeatureSchema.from_dict({**SCHEMA.to_dict(), "label": {
        "name": "mass", "problem_type": "regression", "classes": None}})
    model = ProtocolModel.from_schema(schema, "mass", "1")
    assert [(o.name, o.datatype) for o in model.outputs] == [("predictions", "FP64")]


# -- requests ---------------------------------------------------------------------------------

EXPECTED_RECORDS = [
    {"island": "Biscoe", "bill_length_mm": 45.1, "flipper_length_mm": 215, "sex": "female",
     "tagged": True},
    {"island": "Dream", "bill_length_mm": None, "flipper_length_mm": 190, "sex": "male",
     "tagged": False},
    {"island": "Torgersen", "bill_length_mm": 39.0, "flipper_length_mm": 181,
     "sex": "é ünïcode", "tagged": True},
]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_bodies_decode_to_rows(binary: bool) -> None:
    body, header_length = body_of(triton_inputs(binary), request_id="req-1")
    assert (header_length is not None) == binary
    request = decode(body, header_length)
    # a NaN is a missing value, whether binary or written into the JSON by tritonclient
    assert request.records == EXPECTED_RECORDS
    assert request.id == "req-1"
    # tritonclient asks for every output in binary when it names none
    assert [(o.spec.name, o.binary) for o in request.outputs] == [
        (spec.name, True) for spec in MODEL.outputs]


def test_json_null_is_a_missing_value_and_nested_data_is_flattened() -> None:
    request = decode(json_body([
        {"name": "island", "datatype": "BYTES", "shape": [2, 1], "data": [["Biscoe"], ["Dream"]]},
        {"name": "bill_length_mm", "datatype": "FP32", "shape": [2], "data": [None, 40]},
        {"name": "flipper_length_mm", "datatype": "INT32", "shape": [2], "data": [200, 201]},
        {"name": "tagged", "datatype": "BYTES", "shape": [2], "data": ["yes", "no"]},
    ]))
    assert request.records == [
        {"island": "Biscoe", "bill_length_mm": None, "flipper_length_mm": 200, "tagged": "yes"},
        {"island": "Dream", "bill_length_mm": 40, "flipper_length_mm": 201, "tagged": "no"}]


def test_pd_json_elements_are_decoded() -> None:
    """MLServer's PandasCodec sends a string column holding nulls as JSON-encoded elements."""
    request = decode(json_body([
        {"name": "island", "datatype": "BYTES", "shape": [2, 1], "data": ['"Biscoe"', '"Dream"'],
         "parameters": {"content_type": "pd_json"}},
        {"name": "sex", "datatype": "BYTES", "shape": [2, 1], "data": ['"male"', "null"],
         "parameters": {"content_type": "pd_json"}},
        {"name": "flipper_length_mm", "datatype": "INT64", "shape": [2, 1], "data": [1, 2]},
        {"name": "tagged", "datatype": "BOOL", "shape": [2, 1], "data": [True, False]},
    ]))
    assert [r["island"] for r in request.records] == ["Biscoe", "Dream"]
    assert [r["sex"] for r in request.records] == ["male", None]


def test_requested_outputs_choose_names_and_encoding() -> None:
    outputs = [InferRequestedOutput("proba_Gentoo", binary_data=True),
               InferRequestedOutput("predictions", binary_data=False)]
    body, header_length = body_of(triton_inputs(False), outputs)
    request = decode(body, header_length)
    assert [(o.spec.name, o.binary) for o in request.outputs] == [
        ("proba_Gentoo", True), ("predictions", False)]


def inputs_json(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    tensors = {
        "island": {"name": "island", "datatype": "BYTES", "shape": [2], "data": ["Biscoe"] * 2},
        "flipper_length_mm": {"name": "flipper_length_mm", "datatype": "INT64", "shape": [2],
                              "data": [200, 210]},
        "tagged": {"name": "tagged", "datatype": "BOOL", "shape": [2], "data": [True, True]},
    }
    for name, change in overrides.items():
        tensors[name] = {**tensors.get(name, {"name": name}), **change}
    return [t for t in tensors.values() if t.get("datatype") != "absent"]


BAD_REQUESTS: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("wrong datatype", json_body(inputs_json(island={"datatype": "FP64", "data": [1.0, 2.0]})),
     ("input 'island'", "FP64", "BYTES")),
    ("wrong shape", json_body(inputs_json(island={"shape": [1, 2]})),
     ("input 'island'", "[N, 1]")),
    ("3-d shape", json_body(inputs_json(island={"shape": [2, 1, 1]})), ("input 'island'",)),
    ("count mismatch", json_body(inputs_json(island={"shape": [3], "data": ["a"] * 3})),
     ("input 'flipper_length_mm'", "'island' has 3")),
    ("data shorter than shape", json_body(inputs_json(island={"data": ["Biscoe"]})),
     ("input 'island'", "1 values")),
    ("string in a number tensor",
     json_body(inputs_json(flipper_length_mm={"data": [200, "wide"]})),
     ("input 'flipper_length_mm', row 1", "'wide'", "INT64")),
    ("float in an int tensor", json_body(inputs_json(flipper_length_mm={"data": [200, 1.5]})),
     ("input 'flipper_length_mm', row 1",)),
    ("bool in a number tensor",
     json_body(inputs_json(flipper_length_mm={"datatype": "FP64", "data": [True, 1.0]})),
     ("input 'flipper_length_mm', row 0", "boolean")),
    ("missing input", json_body(inputs_json(island={"datatype": "absent"})),
     ("'island'", "missing")),
    ("duplicate input", json_body([*inputs_json(), inputs_json()[0]]),
     ("input 'island'", "twice")),
    ("unknown datatype", json_body(inputs_json(island={"datatype": "STRING"})),
     ("input 'island'", "STRING")),
    ("no data", json_body([{"name": "island", "datatype": "BYTES", "shape": [2]},
                           *inputs_json()[1:]]), ("input 'island'", "neither")),
    ("unknown output", json_body(inputs_json(), outputs=[{"name": "proba_Emperor"}]),
     ("proba_Emperor", "proba_Gentoo")),
    ("no inputs", json_body([]), ("island",)),
    ("not json", b"{inputs", ("not valid JSON",)),
    ("classification extension",
     json_body(inputs_json(), outputs=[{"name": "predictions",
                                        "parameters": {"classification": 2}}]),
     ("classification",)),
]


@pytest.mark.parametrize(("case", "body", "named"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_are_400_naming_input_and_row(case: str, body: bytes,
                                                   named: tuple[str, ...]) -> None:
    error = rejected(body)
    assert error.status == 400
    message = error_message(json.dumps(error.body("r")).encode())
    for text in named:
        assert text in message, (case, message)


def test_too_many_rows_is_413_before_decoding() -> None:
    body = json_body(inputs_json(island={"shape": [MAX_ROWS + 1], "data": []}))
    error = rejected(body)
    assert error.status == 413 and error.code == "too_many_rows"


def binary_request(island: bytes, header_extra: int = 0) -> tuple[bytes, str]:
    header = json.dumps({"inputs": [
        {"name": "island", "datatype": "BYTES", "shape": [1],
         "parameters": {"binary_data_size": len(island) + header_extra}},
        {"name": "flipper_length_mm", "datatype": "INT64", "shape": [1], "data": [200]},
        {"name": "tagged", "datatype": "BOOL", "shape": [1], "data": [True]},
    ]}).encode()
    return header + island, str(len(header))


@pytest.mark.parametrize(("case", "island", "extra", "named"), [
    ("not utf-8", b"\x02\x00\x00\x00\xff\xfe", 0, ("input 'island', row 0", "UTF-8")),
    ("element past the end", b"\x09\x00\x00\x00Biscoe", 0, ("input 'island', row 0",)),
    ("size past the end", b"\x06\x00\x00\x00Biscoe", 3, ("input 'island'", "past the end")),
    ("bytes left over", b"\x06\x00\x00\x00Biscoe!!", 0, ("input 'island'", "left")),
])
def test_bad_binary_data_is_400(case: str, island: bytes, extra: int,
                                named: tuple[str, ...]) -> None:
    body, header_length = binary_request(island, extra)
    message = str(rejected(body, header_length))
    for text in named:
        assert text in message, (case, message)


def test_binary_numbers_of_the_wrong_size_and_a_bad_header_length() -> None:
    header = json.dumps({"inputs": [
        {"name": "island", "datatype": "BYTES", "shape": [1], "data": ["Biscoe"]},
        {"name": "flipper_length_mm", "datatype": "INT64", "shape": [1],
         "parameters": {"binary_data_size": 4}},
        {"name": "tagged", "datatype": "BOOL", "shape": [1], "data": [True]},
    ]}).encode()
    body = header + b"\x00" * 4
    assert "8" in str(rejected(body, str(len(header))))
    assert HEADER_LENGTH in str(rejected(body, str(len(body) + 1)))
    assert HEADER_LENGTH in str(rejected(body, "ten"))


# -- responses ----------------------------------------------------------------------------------

PREDICTIONS = ["Gentoo", "Adelie"]
PROBABILITIES = [{"Adelie": 0.1, "Chinstrap penguin": 0.2, "Gentoo": 0.7},
                 {"Adelie": 0.8, "Chinstrap penguin": 0.15, "Gentoo": 0.05}]


@pytest.mark.parametrize("binary", [True, False])
def test_responses_read_back_with_tritonclient(binary: bool) -> None:
    body, header_length = body_of(triton_inputs(False), [
        InferRequestedOutput(name, binary_data=binary)
        for name in ("predictions", "proba_Chinstrap_penguin", "proba_Gentoo")])
    request = decode(body, header_length)
    encoded = encode_response(MODEL, request, "rid", PREDICTIONS, {
        key: [row[key] for row in PROBABILITIES] for key in PROBABILITIES[0]})
    assert (HEADER_LENGTH in encoded.headers) == binary
    result = InferResult.from_response_body(encoded.body, header_length=encoded.headers.get(
        HEADER_LENGTH))
    assert [p.decode() if isinstance(p, bytes) else p
            for p in result.as_numpy("predictions")] == PREDICTIONS
    assert result.as_numpy("proba_Chinstrap_penguin").tolist() == [0.2, 0.15]
    assert result.as_numpy("proba_Gentoo").tolist() == [0.7, 0.05]
    assert result.as_numpy("proba_Adelie") is None  # not asked for
    assert result.get_response()["id"] == "rid"  # no id in the request: ours


def test_int_labels_are_int64_and_the_request_id_is_echoed() -> None:
    schema = FeatureSchema.from_dict({**SCHEMA.to_dict(), "label": {
        "name": "rings", "problem_type": "multiclass", "classes": [3, 5]}})
    model = ProtocolModel.from_schema(schema, "rings", "1")
    request = decode(json_body(inputs_json(), id="abc"), model=model)
    encoded = encode_response(model, request, "rid", [5, 3],
                              {"3": [0.1, 0.6], "5": [0.9, 0.4]})
    document = json.loads(encoded.body)
    assert document["id"] == "abc"
    assert document["outputs"] == [
        {"name": "predictions", "datatype": "INT64", "shape": [2], "data": [5, 3]},
        {"name": "proba__3", "datatype": "FP64", "shape": [2], "data": [0.1, 0.6]},
        {"name": "proba__5", "datatype": "FP64", "shape": [2], "data": [0.9, 0.4]}]


# -- KServe V1 and the error message ----------------------------------------------------------

def test_v1_instances_as_objects_or_lists_in_feature_order() -> None:
    row = ["Biscoe", 45.1, 215, None, True]
    records = decode_v1_request(json.dumps({"instances": [row, EXPECTED_RECORDS[0]]}).encode(),
                                MODEL, MAX_ROWS)
    assert records[0] == dict(zip(SCHEMA.names, row, strict=True))
    assert records[1] == EXPECTED_RECORDS[0]


@pytest.mark.parametrize(("body", "status", "text"), [
    (b'{"instances": [["Biscoe", 45.1]]}', 400, "row 0"),
    (b'{"data": []}', 400, "instances"),
    (b'{"instances": []}', 400, "no rows"),
    (json.dumps({"instances": [{}] * (MAX_ROWS + 1)}).encode(), 413, "limit"),
])
def test_bad_v1_requests(body: bytes, status: int, text: str) -> None:
    with pytest.raises(ApiError) as caught:
        decode_v1_request(body, MODEL, MAX_ROWS)
    assert caught.value.status == status
    assert text in error_message(json.dumps(caught.value.body("r")).encode(), "field")


def test_error_message_spells_out_row_and_field_details() -> None:
    error = ApiError(ErrorCode.INVALID_ROWS, "2 problem(s) in 2 of 3 row(s)", [
        {"row": 0, "field": "island", "problem": "expected a string, got number"},
        {"row": 2, "field": "bill_length_mm", "problem": "number must be finite"}])
    message = error_message(json.dumps(error.body("r")).encode())
    assert message == ("2 problem(s) in 2 of 3 row(s): row 0, input 'island': expected a "
                       "string, got number; row 2, input 'bill_length_mm': number must be finite")
    assert error_message(b'{"error": "already plain"}') == "already plain"
    assert error_message(b"Gateway Timeout") == "Gateway Timeout"


@pytest.mark.parametrize(("path", "permission"), [
    ("/v2", None), ("/v2/health/live", None), ("/v2/health/ready", None),
    ("/v2/models/m/ready", None), ("/v2/models/m/versions/1/ready", None),
    ("/v1/models/m", None),
    ("/v2/models/m", "model_info"), ("/v2/models/m/versions/1", "model_info"),
    ("/v2/models/m/infer", "predict"), ("/v2/models/m/versions/1/infer", "predict"),
    ("/v1/models/m:predict", "predict"), ("/v2/repository/index", "model_info"),
    ("/v1/models/m:explain", "explain"),
    ("/v1/other", "model_info"),
])
def test_protocol_paths_need_the_permissions_of_their_kind(path: str,
                                                           permission: str | None) -> None:
    assert route_for(path).needs(metrics_auth=False) == permission


def test_the_served_model_name_is_a_setting() -> None:
    assert Settings.from_env({}).served_model_name == ""
    settings = Settings.from_env({"AGBENTO_SERVED_MODEL_NAME": " penguins "})
    assert settings.served_model_name == "penguins"
