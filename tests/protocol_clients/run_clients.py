"""Runs inside the protocol-clients venv: KServe's SDK and MLServer's PandasCodec call a server.

    python run_clients.py kserve|mlserver < job.json > answers.json

The job names the server, key, model, rows and each feature's V2 datatype; the answer holds
the client's predictions and class probabilities as it decoded them (and for KServe's SDK
the errors it raised for a request without a key and for a wrong datatype). One client per
process: both register the V2 gRPC messages in protobuf's default pool, and clash.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
import numpy as np
import pandas as pd


def kserve_inputs(job: dict[str, Any], binary: bool) -> list[Any]:
    from kserve import InferInput

    frame = pd.DataFrame(job["rows"], columns=list(job["datatypes"]))
    inputs = []
    for name, datatype in job["datatypes"].items():
        column = frame[name]
        if datatype == "BYTES":
            array = column.astype(object).to_numpy()
        elif datatype == "BOOL":
            array = column.astype(bool).to_numpy()
        else:  # numbers: pandas' missing value NaN says "missing"
            array = column.astype("float64").to_numpy()
            if datatype.startswith("INT"):
                array = array.astype(np.int64)
        tensor = InferInput(name, [len(array)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def outputs_of(response: Any) -> dict[str, list[Any]]:
    answers = {}
    for output in response.outputs:
        values = output.as_numpy().tolist()
        answers[output.name] = [v.decode() if isinstance(v, bytes) else v for v in values]
    return answers


async def kserve(job: dict[str, Any]) -> dict[str, Any]:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    url, model, headers = job["url"], job["model"], {"X-API-Key": job["key"]}
    result: dict[str, Any] = {}
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=0, timeout=60))
    try:
        result["live"] = await client.is_server_live(url)
        result["ready"] = await client.is_server_ready(url)
        result["model_ready"] = await client.is_model_ready(url, model)
        result["v1_model_ready"] = await v1.is_model_ready(url, model)
        for binary in (True, False):
            request = InferRequest(model, kserve_inputs(job, binary), request_id="kserve-1")
            response = await client.infer(url, request, model, headers=dict(headers))
            result["binary" if binary else "json"] = outputs_of(response)
            result["id"] = response.id
        instances = [[row.get(name) for name in job["datatypes"]] for row in job["rows"]]
        answer = await v1.infer(url, {"instances": instances}, model, headers=dict(headers))
        result["v1"] = answer["predictions"]
        result["unauthorized"] = await failure(client.infer(
            url, InferRequest(model, kserve_inputs(job, True)), model))
        wrong = kserve_inputs(job, False)
        first = wrong[0]
        wrong[0] = InferInput(first.name, first.shape, "FP64",
                              [1.5] * first.shape[0])  # a number tensor for the first feature
        result["wrong_datatype"] = await failure(client.infer(
            url, InferRequest(model, wrong), model, headers=dict(headers)))
    finally:
        await client.close()
        await v1.close()
    return result


async def failure(call: Any) -> dict[str, Any]:
    try:
        await call
    except httpx.HTTPStatusError as error:
        return {"status": error.response.status_code, "message": str(error)}
    return {"status": 200, "message": ""}


def mlserver(job: dict[str, Any]) -> dict[str, Any]:
    from mlserver.codecs import PandasCodec
    from mlserver.types import InferenceResponse

    frame = pd.DataFrame(job["rows"], columns=list(job["datatypes"]))
    for name, datatype in job["datatypes"].items():
        if datatype != "BYTES":
            frame[name] = frame[name].astype("float64")
    request = PandasCodec.encode_request(frame)
    response = httpx.post(f"{job['url']}/v2/models/{job['model']}/infer",
                          content=request.model_dump_json(exclude_none=True),
                          headers={"X-API-Key": job["key"],
                                   "Content-Type": "application/json"}, timeout=60)
    response.raise_for_status()
    decoded = PandasCodec.decode_response(InferenceResponse.model_validate_json(response.content))
    return {name: [v.decode() if isinstance(v, bytes) else v for v in decoded[name].tolist()]
            for name in decoded.columns}


def main() -> None:
    job = json.load(sys.stdin)
    answers = asyncio.run(kserve(job)) if sys.argv[1] == "kserve" else mlserver(job)
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
