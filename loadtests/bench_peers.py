"""The peers: other servers serving the same stored predictor, each from PyPI in a venv of its
own (loadtests/peers/venvs.py), started by the bench and driven with the same load and rows.

Each adapter is the smallest its server's docs call idiomatic (loadtests/peers/). Before any
load a peer must answer a sample of rows as agbento does, one request holding them all and
each row as its own concurrent request (so a batcher that mixes rows up is caught): a broken
adapter is reported, never measured. Everything here but `check_answers` is pure.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agbento.rows.schema import FeatureSchema

PEERS_DIR = Path(__file__).with_name("peers")
MLSERVER_MODEL = json.loads((PEERS_DIR / "mlserver" / "model-settings.json").read_text())
# agbento's /predict body: {"data": [row, ...]} (Ray Serve's adapter takes it too)
AGBENTO, KSERVE_V1, V2 = "agbento", "kserve-v1", "v2"
PROBABILITY_TOLERANCE = 1e-5  # a float32 probability printed and read back


def encode(records: list[dict[str, Any]], protocol: str, schema: FeatureSchema) -> bytes:
    """One request body holding `records` in a protocol's JSON.

    kserve-v1: one instance holding the rows as columns (KServe's `get_predict_input` makes a
    DataFrame of each instance, so a row an instance would cost a DataFrame a row). v2: one
    tensor per feature (FP64 numbers, BYTES otherwise, null where a value is missing) and
    the request's content type "pd", which KServe and MLServer decode as a DataFrame."""
    columns = {name: [record.get(name) for record in records] for name in schema.names}
    if protocol == AGBENTO:
        body: dict[str, Any] = {"data": records}
    elif protocol == KSERVE_V1:
        body = {"instances": [columns]}
    elif protocol == V2:
        kinds = {f.name: f.kind for f in schema.features}
        body = {"parameters": {"content_type": "pd"}, "inputs": [
            {"name": name, "shape": [len(records)],
             "datatype": "FP64" if kinds[name] == "numeric" else "BYTES", "data": values}
            for name, values in columns.items()]}
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    return json.dumps(body, separators=(",", ":")).encode()


Answers = tuple[list[str], list[dict[str, float]] | None]


def answers(payload: dict[str, Any]) -> Answers:
    """(the predicted labels, each row's class probabilities or None) from any peer's answer:
    agbento's and Ray Serve's {"predictions", "probabilities"}; KServe V1's {"predictions":
    [{"prediction": label, class: p, ...}]}; V2's outputs `prediction` and one per class."""
    if "outputs" in payload:
        outputs = {o["name"]: o["data"] for o in payload["outputs"]}
        labels = outputs.pop("prediction")
        probabilities = [{name: data[i] for name, data in outputs.items()}
                         for i in range(len(labels))] if outputs else None
        return [str(x) for x in labels], probabilities
    predictions = payload["predictions"]
    if predictions and isinstance(predictions[0], dict):
        labels = [str(p["prediction"]) for p in predictions]
        rest = [{k: v for k, v in p.items() if k != "prediction"} for p in predictions]
        return labels, rest if any(rest) else None
    return [str(x) for x in predictions], payload.get("probabilities")


def mismatch(got: Answers, want: Answers, rows: list[int]) -> str | None:
    """Where `got` differs from `want` (labels exactly, probabilities within float32
    rounding), named by the sample's row numbers; None when they agree."""
    (labels, probabilities), (want_labels, want_probabilities) = got, want
    if len(labels) != len(want_labels):
        return f"{len(labels)} answers for {len(want_labels)} rows"
    for i, (label, wanted) in enumerate(zip(labels, want_labels, strict=True)):
        if label != wanted:
            return f"row {rows[i]}: predicted {label!r}, agbento {wanted!r}"
        if want_probabilities is None:
            continue
        mine = probabilities[i] if probabilities else {}
        for name, p in want_probabilities[i].items():
            value = mine.get(str(name))
            if value is None or not math.isclose(value, p, abs_tol=PROBABILITY_TOLERANCE):
                return f"row {rows[i]}: probability of {name!r} {value}, agbento {p:.6f}"
    return None


def check_answers(url: str, protocol: str, schema: FeatureSchema,
                  records: list[dict[str, Any]], reference: Answers) -> str | None:
    """Why the server at `url` does not answer `records` as agbento did (`reference`); None
    when it does: all rows in one request, then each row alone, 8 at a time."""
    headers = {"Content-Type": "application/json"}

    def ask(indices: list[int]) -> str | None:
        try:
            response = httpx.post(url, content=encode([records[i] for i in indices], protocol,
                                                      schema), headers=headers, timeout=60)
            response.raise_for_status()
            got = answers(response.json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as exc:
            return f"rows {indices[0]}..{indices[-1]}: {type(exc).__name__}: {exc}"[:300]
        want = (reference[0][indices[0]:indices[-1] + 1],
                None if reference[1] is None else reference[1][indices[0]:indices[-1] + 1])
        return mismatch(got, want, indices)

    if problem := ask(list(range(len(records)))):
        return problem
    with ThreadPoolExecutor(8) as pool:
        for problem in pool.map(ask, [[i] for i in range(len(records))]):
            if problem:
                return problem
    return None


@dataclass(frozen=True)
class Endpoint:
    """One way a peer is called: the name its runs carry, the protocol, the URL path."""

    name: str
    protocol: str
    path: str


@dataclass(frozen=True)
class Launch:
    """What the bench gives a peer: free ports (HTTP first, then any others it opens), its
    venv's python, the model, a scratch folder."""

    ports: tuple[int, ...]
    python: Path
    model_name: str
    predictor: Path
    workers: int
    scratch: Path

    @property
    def port(self) -> int:
        return self.ports[0]


@dataclass(frozen=True)
class Peer:
    name: str
    venv: str  # a loadtests/peers/venvs.py PEERS key
    endpoints: tuple[Endpoint, ...]
    ready_path: str
    command: Callable[[Launch], list[str]]
    env: Callable[[Launch], dict[str, str]] = field(default=lambda launch: {})
    config: str = ""  # how it is set up, for the report


def _kserve(launch: Launch) -> list[str]:
    return [str(launch.python), str(PEERS_DIR / "kserve_server.py"),
            "--model_name", launch.model_name, "--model_dir", str(launch.predictor),
            "--workers", str(launch.workers), "--http_port", str(launch.port),
            "--grpc_port", str(launch.ports[1]), "--enable_latency_logging", "False",
            "--log_config_file", str(PEERS_DIR / "kserve_logging.json")]


def _mlserver_env(launch: Launch) -> dict[str, str]:
    grpc, metrics = launch.ports[1:3]
    return {"MLSERVER_HOST": "127.0.0.1", "MLSERVER_HTTP_PORT": str(launch.port),
            "MLSERVER_GRPC_PORT": str(grpc), "MLSERVER_METRICS_PORT": str(metrics),
            "MLSERVER_PARALLEL_WORKERS": str(launch.workers),
            "MLSERVER_MODEL_URI": str(launch.predictor),
            "MLSERVER_METRICS_DIR": str(launch.scratch / "metrics"),
            "MLSERVER_ENVIRONMENTS_DIR": str(launch.scratch / "envs")}


def _ray_env(launch: Launch) -> dict[str, str]:
    return {"PEER_PORT": str(launch.port), "PEER_WORKERS": str(launch.workers),
            "PEER_PREDICTOR": str(launch.predictor)}


PEERS: dict[str, Peer] = {p.name: p for p in (
    Peer("kserve", "kserve",
         (Endpoint("kserve v1", KSERVE_V1, "/v1/models/{model}:predict"),
          Endpoint("kserve v2", V2, "/v2/models/{model}/infer")),
         "/v2/health/ready", _kserve,
         config="`kserve.ModelServer` (loadtests/peers/kserve_server.py), --workers = cores "
                "(uvicorn processes; KServe's Python server has no batching of its own), "
                "latency log and uvicorn access log off"),
    Peer("mlserver", "mlserver",
         (Endpoint("mlserver", V2, f"/v2/models/{MLSERVER_MODEL['name']}/infer"),),
         f"/v2/models/{MLSERVER_MODEL['name']}/ready",
         lambda launch: [str(launch.python.parent / "mlserver"), "start",
                         str(PEERS_DIR / "mlserver")],
         _mlserver_env,
         config="custom runtime (loadtests/peers/mlserver/runtime.py), parallel_workers = "
                f"cores, adaptive batching max_batch_size {MLSERVER_MODEL['max_batch_size']}, "
                f"max_batch_time {MLSERVER_MODEL['max_batch_time']} s, debug (access log) off"),
    Peer("ray", "ray",
         (Endpoint("ray serve", AGBENTO, "/"),),
         "/",
         lambda launch: [str(launch.python), str(PEERS_DIR / "ray_serve_app.py")],
         _ray_env,
         config="one deployment (loadtests/peers/ray_serve_app.py), num_replicas = cores "
                "(1 CPU each), @serve.batch max_batch_size 64, batch_wait_timeout_s 0.005, "
                "max_ongoing_requests 128, access log off"),
)}


def endpoint_path(endpoint: Endpoint, model_name: str) -> str:
    return endpoint.path.format(model=model_name)


def selected(names: str | None) -> list[Peer]:
    """`--peers` (all) or `--peers kserve,ray`."""
    if not names or names == "all":
        return list(PEERS.values())
    unknown = [n for n in names.split(",") if n not in PEERS]
    if unknown:
        raise SystemExit(f"error: --peers {','.join(unknown)}: choose from {', '.join(PEERS)}")
    return [PEERS[n] for n in names.split(",")]


def peer_env(peer: Peer, launch: Launch) -> dict[str, str]:
    """The peer's own settings, beside what every peer gets: its adapter folder on the path
    (peer_model.py), the venv's bin first on PATH, and one OpenMP thread per worker process,
    as agbento's model workers have (AGBENTO_MODEL_THREADS)."""
    return {"PYTHONPATH": str(PEERS_DIR), "OMP_NUM_THREADS": "1",
            "PATH": f"{launch.python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(launch.python.parent.parent), **peer.env(launch)}
