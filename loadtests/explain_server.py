"""How fast POST /explain answers through a fused server, beside /predict on the same rows.

    BENTOML_HOME=... python loadtests/explain_server.py [--models penguins,birdstrikes]
        [--singles 200] [--seconds 15] [--out loadtests/results/explain-server.json]

For each model (trained into the store when missing, as bench.py does: the demo model and
`agbento-birdstrikes`), one fused server (`bentoml serve .`, cache off, one API worker per
usable CPU), then, /explain and /predict in turn on the very same rows:
- one-row JSON requests, one at a time, each a distinct row: the server-side p50 and p95
  (the request log's `latency_ms`: our ASGI layers and the endpoint, BentoML's own outer
  layers excluded) and the client's;
- 1,000-row JSON requests by wrk (bench_servers.measure) at 1 and 2 clients: rows/s (not
  run, with the server's answer, when one request fails, e.g. beyond the request timeout).
The load average before and after is printed with the figures: on a shared machine they
move with whatever else runs. Modules reused: bench (models), bench_rows (rows, bodies),
bench_servers (the server, wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the model's threads as a served worker has them (bench.py says why)
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("AGBENTO_MODEL_THREADS", "1"))

from loadtests import bench_rows  # noqa: E402
from loadtests.bench import ModelSpec, ensure_model, model_specs  # noqa: E402
from loadtests.bench_servers import (  # noqa: E402
    Scenario,
    Server,
    bentoml_serve,
    free_port,
    measure,
    probe,
)

ENDPOINTS = ("/explain", "/predict")
BULK_ROWS = 1000
WARM_UP = 20


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def server_latencies(log: Path, prefix: str) -> dict[str, float]:
    """request id -> the request log's latency_ms, for the ids starting with `prefix`."""
    found = {}
    for line in log.read_text(errors="replace").splitlines():
        if prefix not in line or not line.startswith("{"):
            continue
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        if str(fields.get("request_id", "")).startswith(prefix):
            found[fields["request_id"]] = float(fields["latency_ms"])
    return found


def single_rows(server: Server, bodies: list[str], path: str) -> dict[str, Any]:
    """Distinct one-row bodies, one request at a time (after a warm-up): p50 and p95."""
    prefix = f"speed{path.replace('/', '-')}-{time.monotonic_ns()}-"
    client_ms = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for i, body in enumerate(bodies):
            headers = {"content-type": "application/json", "x-request-id": f"{prefix}{i}"}
            start = time.perf_counter()
            response = client.post(path, content=body, headers=headers)
            elapsed = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}: "
                                   f"{response.text[:300]}")
            if i >= WARM_UP:
                client_ms.append(elapsed)
    deadline = time.monotonic() + 10  # a request's log line trails its answer
    wanted = {f"{prefix}{i}" for i in range(WARM_UP, len(bodies))}
    while True:
        logged = server_latencies(Path(server.log.name), prefix)
        if wanted <= set(logged) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    server_ms = [logged[i] for i in wanted if i in logged]
    return {"requests": len(server_ms),
            "server_p50_ms": round(statistics.median(server_ms), 2),
            "server_p95_ms": round(percentile(server_ms, 0.95), 2),
            "client_p50_ms": round(statistics.median(client_ms), 2)}


def bulk(server: Server, spec: ModelSpec, body: Path, path: str,
         seconds: int) -> dict[str, Any]:
    """1,000-row JSON requests by wrk at 1 and 2 clients."""
    scenario = Scenario(f"{BULK_ROWS}-json {path}", BULK_ROWS, body, bench_rows.JSON,
                        path=path)
    problem, one_request_s = probe(server, scenario)
    if problem is not None:  # e.g. beyond the request timeout: not run, with the answer
        print(f"{spec.key} {path} {BULK_ROWS} rows: NOT RUN: {problem}")
        return {"not_run": problem, "one_request_s": round(one_request_s, 1)}
    out = {}
    for clients in (1, 2):
        run = measure(server, scenario, clients, seconds, one_request_s)
        out[f"clients_{clients}"] = {"rows_per_s": run.rows_per_s, "p50_ms": run.p50_ms,
                                     "non2xx": run.non2xx, "server_cpu_pct": run.server_cpu_pct}
    return out


def one_model(spec: ModelSpec, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    card = ensure_model(spec)
    rows = bench_rows.model_rows(card)
    singles = bench_rows.distinct_single_bodies(rows.frame, card.schema,
                                                args.singles + WARM_UP)
    body = work / f"{spec.key}-{BULK_ROWS}.json"
    body.write_bytes(bench_rows.body(rows.sample(BULK_ROWS, seed=BULK_ROWS), "json"))
    port = free_port()
    env = {"AGBENTO_MODEL": card.tag, "AGBENTO_TOPOLOGY": "fused", "AGBENTO_CACHE_URL": "off",
           "AGBENTO_API_KEYS_FILE": None}
    server = Server(f"{spec.key} fused", bentoml_serve(".", port), port, env)
    result: dict[str, Any] = {"model": card.tag, "load_before": os.getloadavg()}
    try:
        for path in ENDPOINTS:
            result[path] = {"one_row": single_rows(server, singles, path),
                            f"rows_{BULK_ROWS}": bulk(server, spec, body, path, args.seconds)}
            print(json.dumps({spec.key: {path: result[path]}}))
    finally:
        server.stop()
    result["load_after"] = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="penguins,birdstrikes",
                        help="shipped datasets' models, comma-separated")
    parser.add_argument("--singles", type=int, default=200, help="one-row requests timed")
    parser.add_argument("--seconds", type=int, default=15, help="per wrk run (at least)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    specs = model_specs(argparse.Namespace(model=None, data=None, models=args.models,
                                           quick=False))
    figures: dict[str, Any] = {"cores": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory(prefix="explain-server-") as work:
        figures.update({spec.key: one_model(spec, args, Path(work)) for spec in specs})
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
