"""Benchmark: agbento (split and fused topologies) against the model in-process, the bare
BentoML echoes (the framework's ceiling), a seed-style per-request server and, with --peers,
the other servers a team would choose from (KServe, MLServer, Ray Serve) on the same stored
predictor.

    python loadtests/bench.py --quick                     # about 3 minutes, the demo model
    python loadtests/bench.py                             # demo + birdstrikes (~20 minutes)
    python loadtests/bench.py --model churn:latest --data churn.parquet --label churned
    python loadtests/bench.py --models penguins --peers --open-loop --name peers

Any stored model: its requests are made from FILE's rows (CSV or Parquet; the label and
unknown columns dropped, rows the schema refuses left out), or from the dataset it was
trained on when that ships in a package (train.py --demo / --dataset). Every share is a
same-run ratio to the model in-process on the same rows per call.

Load comes from `wrk` (C, one thread, `post.lua`), so the generator is not the bottleneck;
its own CPU time is reported. --open-loop adds runs at a constant offered rate (openloop.c,
latency from each request's intended send time). A scenario the server does not support
yet (Arrow bodies, Arrow/Parquet answers) is probed with one request and listed as not run,
with the answer. Writes `results/<name>.json`, `.md` and `.png`. Modules: bench_rows (rows,
bodies, the model in-process), bench_servers (servers, wrk, openloop), bench_peers (the
peers, their bodies and the check of their answers; venvs from peers/venvs.py),
bench_report (targets, Markdown, plot).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The model in-process with the threads the service's model worker has (agbento/ops/bootstrap.py;
# before any library reads it). On a shared 2-core machine this is also the faster setting:
# two OpenMP threads fighting other work put an ~8 ms floor under every demo-model call.
SEED_OMP = os.environ.get("OMP_NUM_THREADS")  # the seed-style baseline runs as it would
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("AGBENTO_MODEL_THREADS", "1"))

from agbento.core.settings import DEMO_MODEL_NAME  # noqa: E402
from agbento.models.store import ModelCard  # noqa: E402
from agbento.rows.schema import json_records  # noqa: E402
from agbento.training.pipeline import DATASETS, TrainConfig, train  # noqa: E402
from loadtests import bench_peers, bench_rows  # noqa: E402
from loadtests.bench_peers import AGBENTO, Endpoint, Launch  # noqa: E402
from loadtests.bench_report import (  # noqa: E402
    BULK_CLIENTS,
    SINGLE,
    TARGET_CLIENTS,
    ModelResult,
    Report,
    markdown,
    open_load,
    plot,
    report_from_json,
    targets,
)
from loadtests.bench_servers import (  # noqa: E402
    BIN,
    Run,
    Scenario,
    Server,
    batch_client,
    bentoml_serve,
    free_port,
    measure,
    measure_open,
    probe,
    topology_of,
    wait_idle,
)
from loadtests.peers import venvs  # noqa: E402

TOPOLOGIES = ("split", "fused")
BULK = [(1000, "json"), (1000, "csv"), (1000, "parquet"), (1000, "arrow"),
        (10_000, "json"), (10_000, "parquet"), (10_000, "arrow")]
ANSWERS = [(1000, "arrow", "arrow"), (1000, "parquet", "parquet"), (10_000, "arrow", "arrow")]
V2 = [("v2-1-json", 1, False), ("v2-1000-json", 1000, False), ("v2-1000-binary", 1000, True)]
SINGLE_BODIES = 20_000
BATCH_IN_FLIGHT = 4
OPEN_SHARES = (0.25, 0.5, 0.75)  # open-loop rates: shares of the server's own peak
SAMPLE_ROWS = 24  # rows every peer must answer as agbento does before it is measured


@dataclass
class ModelSpec:
    key: str  # a DATASETS name, or the model's name
    tag: str
    data: Path | None = None
    label: str | None = None


@dataclass
class SingleRows:
    bodies: list[str]
    scenario: Scenario


def single_rows(rows: bench_rows.Rows, card: ModelCard, work: Path) -> SingleRows:
    """SINGLE_BODIES distinct one-row JSON bodies, and the scenario that walks them."""
    bodies = bench_rows.distinct_single_bodies(rows.frame, card.schema, SINGLE_BODIES)
    return SingleRows(bodies, Scenario(SINGLE, 1, bench_rows.write_bodies_file(
        bodies, work / "single.jsonl"), bench_rows.JSON, many_bodies=True))


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_generator": (wrk.stdout or wrk.stderr).splitlines()[0],
    }


def ensure_model(spec: ModelSpec | str) -> ModelCard:
    """The stored model; a shipped dataset's model is trained (quickly) when missing."""
    import bentoml

    if isinstance(spec, str):  # a tag (soak.py)
        name = spec.split(":")[0]
        spec = ModelSpec("penguins" if name == DEMO_MODEL_NAME else name, spec)

    try:
        return ModelCard.of(bentoml.models.get(spec.tag))
    except bentoml.exceptions.NotFound:
        if spec.key not in DATASETS:
            raise SystemExit(f"error: model {spec.tag} is not in the store") from None
    dataset = DATASETS[spec.key]
    print(f"model {spec.tag} not found: training it on the {spec.key} dataset")
    return train(TrainConfig(label=dataset.label, dataset=spec.key,
                             name=spec.tag.split(":")[0], time_limit=dataset.time_limit,
                             importance_time_limit=dataset.importance_time_limit)).card


def load_predictor(card: ModelCard) -> Any:
    from autogluon.tabular import TabularPredictor

    predictor = TabularPredictor.load(str(card.predictor_path), verbosity=0)
    predictor.persist(models="all")
    return predictor


class ModelBench:
    """One model: its rows and bodies, the model in-process, then each server in turn."""

    def __init__(self, spec: ModelSpec, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work / spec.key.replace(":", "-")
        self.work.mkdir(parents=True)
        self.card = card = ensure_model(spec)
        self.rows = bench_rows.model_rows(card, spec.data, spec.label)
        kinds = ", ".join(f"{f.name}:{f.kind}" for f in card.schema.features)
        note = (f"{len(self.rows.frame):,} rows pass the schema ({self.rows.rejected_rows} "
                "refused, left out)")
        if self.rows.dropped_columns:
            note += f"; columns not sent: {', '.join(self.rows.dropped_columns)}"
        self.result = ModelResult(
            key=spec.key, tag=card.tag, problem_type=card.problem_type,
            models=", ".join(card.metadata.get("models", [])), features=kinds,
            rows_source=self.rows.source, rows_note=note)
        self.predictor = load_predictor(card)
        self.frames: dict[int, Any] = {}
        self.single_records: list[dict[str, Any]] = []
        self.reference: bench_peers.Answers | None = None
        self.scenarios = self._scenarios()

    def frame(self, rows: int) -> Any:
        """The rows of every `rows`-row request (and of the in-process call it is held to)."""
        if rows not in self.frames:
            self.frames[rows] = self.rows.sample(rows, seed=rows)
        return self.frames[rows]

    def _scenarios(self) -> dict[str, Scenario]:
        single = single_rows(self.rows, self.card, self.work)
        self.single_records = [json.loads(b)["data"][0] for b in single.bodies]
        self.result.rows_note += f"; {len(single.bodies):,} distinct one-row bodies"
        out = {SINGLE: single.scenario}
        for rows, fmt in BULK:
            path = self.work / f"{rows}.{fmt}"
            path.write_bytes(bench_rows.body(self.frame(rows), fmt))
            out[f"{rows}-{fmt}"] = Scenario(f"{rows}-{fmt}", rows, path, bench_rows.FORMATS[fmt])
        for rows, fmt, answer in ANSWERS:
            name = f"{rows}-{fmt} accept-{answer}"
            out[name] = Scenario(name, rows, out[f"{rows}-{fmt}"].body, bench_rows.FORMATS[fmt],
                                 accept=bench_rows.FORMATS[answer])
        if self.args.v2:  # the same rows through the Open Inference Protocol V2
            path = f"/v2/models/{self.card.tag.split(':')[0]}/infer"
            for name, rows, binary in V2:
                content, headers = bench_rows.v2_bodies(self.card, self.frame(rows), binary)
                (self.work / name).write_bytes(content)
                out[name] = Scenario(name, rows, self.work / name,
                                     "application/octet-stream" if binary else bench_rows.JSON,
                                     path=path, extra_headers=headers)
        return out

    def in_process(self, sizes: set[int]) -> None:
        """Timed before and again after the servers: the faster of the two is the limit (a
        busy moment on a shared machine must not flatter the service's shares)."""
        for size in sorted(sizes):
            timing = bench_rows.time_in_process(self.card, self.predictor, self.frame(size))
            earlier = self.result.in_process.get(str(size))
            if earlier is not None:
                timing["measured_rows_per_s"] = [*earlier["measured_rows_per_s"],
                                                 timing["rows_per_s"]]
                if earlier["rows_per_s"] > timing["rows_per_s"]:
                    timing = {**earlier, "measured_rows_per_s": timing["measured_rows_per_s"]}
            else:
                timing["measured_rows_per_s"] = [timing["rows_per_s"]]
            self.result.in_process[str(size)] = timing
            print(f"in-process {self.card.tag} {size:>6} rows: {timing['ms']:9.2f} ms, "
                  f"{timing['rows_per_s']:10.0f} rows/s")

    def skip(self, server: str, scenario: str, reason: str) -> None:
        print(f"{server:14} {scenario:24} NOT RUN: {reason}")
        self.result.skipped.append({"server": server, "scenario": scenario, "reason": reason})

    def run(self, server: Server, scenario: str | Scenario, concurrency: int) -> Run | None:
        scenario = self.scenarios[scenario] if isinstance(scenario, str) else scenario
        reason, one_request_s = probe(server, scenario)
        if reason is not None:
            self.skip(server.name, scenario.name, reason)
            return None
        try:
            run = measure(server, scenario, concurrency, self.args.seconds, one_request_s)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            self.skip(server.name, scenario.name, f"failed: {exc}"[:400])
            return None
        self.result.runs.append(run)
        return run

    def open_loop(self, server: Server, scenario: Scenario | None = None) -> None:
        """--open-loop: single rows at shares of the server's own closed-loop peak, and (a
        peer, the seed-style server) at half of agbento's best peak."""
        if not self.args.open_loop:
            return
        scenario = scenario or self.scenarios[SINGLE]
        peak = self.result.peak(server.name)
        if not peak:
            self.skip(server.name, "open loop", "no closed-loop single-row peak to start from")
            return
        loads = [(share * peak, open_load(share)) for share in OPEN_SHARES]
        ours = [p for name in self.result.agbento_servers() if (p := self.result.peak(name))]
        if ours and not server.name.startswith("agbento"):
            loads.append((0.5 * max(ours), open_load(0.5, "agbento")))
        for rate, load in loads:
            try:
                self.result.open_loop.append(
                    measure_open(server, scenario, rate, self.args.seconds, load))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                self.skip(server.name, f"open loop {load}", f"failed: {exc}"[:400])

    def agbento(self, topology: str) -> Server | None:
        name = f"agbento {topology}"
        port = free_port()
        env = {"AGBENTO_MODEL": self.card.tag, "AGBENTO_CACHE_URL": "off",
               "AGBENTO_TOPOLOGY": topology}
        try:
            server = Server(name, bentoml_serve(".", port), port, env)
        except RuntimeError as exc:
            self.skip(name, "(server)", str(exc))
            return None
        found = topology_of(server)
        workers = (f"{found['api_workers']} + {found['model_workers']}"
                   if found["model_workers"] else f"{found['api_workers']}")
        self.result.servers[name] = {"asked": topology, **found, "workers_text": workers,
                                     "cold_start_s": server.cold_start_s,
                                     "env": " ".join(f"{k}={v}" for k, v in env.items())}
        if found["effective"] != topology:
            print(f"{name}: asked for {topology}, runs {found['effective']} "
                  f"(workers {found['workers']})")
        if self.reference is None and self.args.peers:
            self.reference_from(server)
        return server

    def reference_from(self, server: Server) -> None:
        """agbento's answers on the sample every peer must match."""
        sample = self.single_records[:SAMPLE_ROWS]
        try:
            response = httpx.post(f"{server.url}/predict", json={"data": sample}, timeout=60)
            response.raise_for_status()
            self.reference = bench_peers.answers(response.json())
            self.result.rows_note += (f"; peers checked against {server.name}'s answers on "
                                      f"{len(sample)} rows")
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            print(f"{server.name}: no reference answers ({exc}); peers are checked against "
                  "the model in-process")

    def reference_answers(self) -> bench_peers.Answers:
        """agbento's answers on the sample; the model in-process when no agbento server ran."""
        if self.reference is None:
            schema = self.card.schema
            rows = schema.to_frame(schema.validate_rows(self.single_records[:SAMPLE_ROWS]).rows)
            if self.card.is_classification:
                proba = self.predictor.predict_proba(rows)
                labels = self.predictor.predict_from_proba(proba)
                self.reference = ([str(x) for x in labels],
                                  proba.rename(columns=str).to_dict(orient="records"))
            else:
                self.reference = ([str(x) for x in self.predictor.predict(rows)], None)
            self.result.rows_note += (f"; peers checked against the model in-process on "
                                      f"{SAMPLE_ROWS} rows")
        return self.reference

    def topologies(self, concurrencies: list[int]) -> None:
        for topology in TOPOLOGIES:
            server = self.agbento(topology)
            if server is None:
                continue
            try:
                for c in concurrencies:
                    self.run(server, SINGLE, c)
                self.open_loop(server)
                if topology in self.args.bulk_topology:
                    for name, scenario in self.scenarios.items():
                        if name != SINGLE and (not self.args.bulk or name in self.args.bulk):
                            # V2 single rows: one body, repeated, as wrk can
                            clients = TARGET_CLIENTS if scenario.rows == 1 else BULK_CLIENTS
                            self.run(server, name, clients)
                elif self.args.peers:  # the peers' bulk figure is held to both topologies
                    self.run(server, "1000-json", BULK_CLIENTS)
                if topology == self.args.bulk_topology[0] and not self.args.no_batch:
                    wait_idle(server)
                    self.batch(["--url", server.url], "http", server.name)
            finally:
                server.stop()
        if not self.args.no_batch:
            self.batch(["--local", self.card.tag], "local", "in-process")

    def peers(self, concurrencies: list[int]) -> None:
        """Each peer from its own venv on the same predictor: checked, then the same load."""
        for peer in bench_peers.selected(self.args.peers):
            try:
                venv = venvs.ensure(peer.venv)
            except venvs.VenvError as exc:
                self.skip(peer.name, "(venv)", str(exc))
                continue
            launch = Launch(ports=(free_port(), free_port(), free_port()),
                            python=Path(venv["python"]),
                            model_name=self.card.tag.split(":")[0],
                            predictor=self.card.predictor_path,
                            workers=len(os.sched_getaffinity(0)),
                            scratch=self.work / f"peer-{peer.name}")
            launch.scratch.mkdir()
            try:
                server = Server(peer.name, peer.command(launch), launch.port,
                                bench_peers.peer_env(peer, launch), ready_path=peer.ready_path)
            except RuntimeError as exc:
                self.skip(peer.name, "(server)", str(exc))
                continue
            try:
                for endpoint in peer.endpoints:
                    server.name = endpoint.name  # the runs carry the endpoint's name
                    self.result.servers[endpoint.name] = {
                        "kind": "peer", "asked": "-", "effective": peer.name,
                        "workers_text": str(launch.workers), "config": peer.config,
                        "protocol": endpoint.protocol, "cold_start_s": server.cold_start_s,
                        "venv": {k: venv.get(k) for k in ("install_s", "size_mb", "versions")}}
                    self.peer_runs(server, endpoint, launch.model_name, concurrencies)
            finally:
                server.stop()

    def peer_runs(self, server: Server, endpoint: Endpoint, model_name: str,
                  concurrencies: list[int]) -> None:
        path = bench_peers.endpoint_path(endpoint, model_name)
        problem = bench_peers.check_answers(f"{server.url}{path}", endpoint.protocol,
                                            self.card.schema, self.single_records[:SAMPLE_ROWS],
                                            self.reference_answers())
        self.result.servers[endpoint.name]["answers"] = problem or "same as agbento's"
        if problem:
            self.skip(endpoint.name, "(answers)", f"not measured: answers differ from "
                      f"agbento's: {problem}")
            return
        single, bulk = self.protocol_scenarios(endpoint.protocol, path)
        for c in concurrencies:
            self.run(server, single, c)
        self.open_loop(server, single)
        self.run(server, bulk, BULK_CLIENTS)

    def protocol_scenarios(self, protocol: str, path: str) -> tuple[Scenario, Scenario]:
        """Single rows and 1,000-row bodies as `protocol` carries them, sent to `path`: the
        same rows as agbento's scenarios."""
        single, bulk = self.work / f"single-{protocol}.jsonl", self.work / f"1000-{protocol}"
        if protocol == AGBENTO:
            single, bulk = self.scenarios[SINGLE].body, self.scenarios["1000-json"].body
        elif not single.exists():
            schema = self.card.schema
            bench_rows.write_bodies_file([bench_peers.encode([r], protocol, schema).decode()
                                          for r in self.single_records], single)
            bulk.write_bytes(bench_peers.encode(json_records(self.frame(1000)), protocol,
                                                schema))
        return (Scenario(SINGLE, 1, single, bench_rows.JSON, many_bodies=True, path=path),
                Scenario("1000-json", 1000, bulk, bench_rows.JSON, path=path))

    def batch_file(self) -> Path:
        path = self.work / "batch-input.parquet"
        if not path.exists():
            limit = self.result.in_process[str(self.args.chunk_rows)]["rows_per_s"]
            # a slow model gets fewer rows: about batch_seconds in-process, said in the report
            rows = min(self.args.batch_rows, max(self.args.chunk_rows * 5,
                                                 int(limit * self.args.batch_seconds)))
            self.rows.sample(rows, seed=3).to_parquet(path, index=False)
        return path

    def batch(self, target: list[str], kind: str, where: str) -> None:
        rows_file = self.batch_file()
        out = self.work / f"scored-{kind}.parquet"
        try:
            summary = batch_client(target, rows_file, out, self.args.chunk_rows, BATCH_IN_FLIGHT)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            self.result.batch_client[kind] = {"error": str(exc)[-300:].replace("\n", " ")}
            self.skip(where, f"batch client {kind}", str(exc)[-300:])
            return
        self.result.batch_client[kind] = {**summary, "where": where,
                                          "chunk_rows": self.args.chunk_rows,
                                          "concurrency": BATCH_IN_FLIGHT}

    def baseline(self, concurrencies: list[int]) -> None:
        port = free_port()
        command = [str(BIN / "uvicorn"), "loadtests.baseline.app:app", "--host", "127.0.0.1",
                   "--port", str(port), "--no-access-log"]
        try:
            server = Server("baseline", command, port, {"AGBENTO_MODEL": self.card.tag,
                                                         "OMP_NUM_THREADS": SEED_OMP})
        except RuntimeError as exc:
            self.skip("baseline", "(server)", str(exc))
            return
        self.result.servers["baseline"] = {"asked": "-", "effective": "seed-style",
                                           "workers_text": "1",
                                           "cold_start_s": server.cold_start_s}
        try:
            for c in concurrencies:
                self.run(server, SINGLE, c)
            self.open_loop(server)
            self.run(server, "1000-json", BULK_CLIENTS)
        finally:
            server.stop()


def echoes(report: Report, bench: ModelBench, concurrencies: list[int]) -> None:
    """The bare echoes with the worker counts our topologies ran with."""
    split = bench.result.servers.get("agbento split", {})
    fused = bench.result.servers.get("agbento fused", {})
    api, model = split.get("api_workers") or 1, split.get("model_workers") or 1
    fused_workers = (fused.get("api_workers") if fused.get("effective") == "fused" else None) \
        or len(os.sched_getaffinity(0))
    plans = [("echo split", "loadtests.echo_split:EchoApi", f"{api} + {model}",
              {"ECHO_API_WORKERS": str(api), "ECHO_MODEL_WORKERS": str(model)}),
             ("echo fused", "loadtests.echo_fused:EchoFused", str(fused_workers),
              {"ECHO_WORKERS": str(fused_workers)})]
    for name, target, workers, env in plans:
        port = free_port()
        try:
            server = Server(name, bentoml_serve(target, port), port, env)
        except RuntimeError as exc:
            bench.skip(name, "(server)", str(exc))
            continue
        report.echo_servers[name] = {"command": f"bentoml serve {target}", "workers": workers,
                                     "cold_start_s": server.cold_start_s, "env": env}
        try:
            for c in concurrencies:
                reason, one_request_s = probe(server, bench.scenarios[SINGLE])
                if reason is not None:
                    bench.skip(name, SINGLE, reason)
                    continue
                report.echoes.append(measure(server, bench.scenarios[SINGLE], c,
                                             bench.args.seconds, one_request_s))
        finally:
            server.stop()


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    if args.model or args.data:
        tag = args.model or f"{DEMO_MODEL_NAME}:latest"
        name = tag.split(":")[0]
        key = "penguins" if name == DEMO_MODEL_NAME else name
        return [ModelSpec(key, tag, args.data, args.label)]
    names = args.models.split(",") if args.models else (
        ["penguins"] if args.quick else ["penguins", "birdstrikes"])
    specs = []
    for name in names:
        if name not in DATASETS:
            raise SystemExit(f"error: --models {name}: one of {', '.join(DATASETS)}")
        tag = f"{DEMO_MODEL_NAME if name == 'penguins' else f'agbento-{name}'}:latest"
        specs.append(ModelSpec(name, tag))
    return specs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 3 minutes)")
    parser.add_argument("--model", help="a stored model's tag (default: the shipped datasets' "
                        "models, trained when missing)")
    parser.add_argument("--data", type=Path, help="rows for --model (.csv or .parquet; "
                        "default: the model's shipped training dataset)")
    parser.add_argument("--label", help="the label column of --data, dropped from requests")
    parser.add_argument("--models", help=f"shipped datasets' models, comma-separated, from "
                        f"{', '.join(DATASETS)} (quick: penguins; full: all)")
    parser.add_argument("--seconds", type=int, help="seconds per run (quick 3, full 10)")
    parser.add_argument("--bulk-topology", default="split", choices=["split", "fused", "both"],
                        help="where the bulk scenarios and the batch client run (split)")
    parser.add_argument("--batch-rows", type=int,
                        help="rows of the batch client's file (quick 50,000, full 1,000,000)")
    parser.add_argument("--batch-seconds", type=float,
                        help="a slow model gets fewer batch rows: about this many seconds "
                        "in-process (quick 10, full 40)")
    parser.add_argument("--chunk-rows", type=int, default=10_000,
                        help="the batch client's rows per request (10,000)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    parser.add_argument("--name", help="report file name (default: quick or full)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-echo", action="store_true")
    parser.add_argument("--render", type=Path, metavar="REPORT.json",
                        help="write .md and .png again from a report's JSON; run nothing")
    parser.add_argument("--v2", action="store_true",
                        help="also the Open Inference Protocol V2 (one row, 1,000 rows as JSON "
                        "and as binary tensors) where the bulk scenarios run")
    parser.add_argument("--peers", nargs="?", const="all", metavar="LIST",
                        help="also the other servers on the same predictor, each from its own "
                        f"venv: all, or some of {','.join(bench_peers.PEERS)} (issue 27)")
    parser.add_argument("--open-loop", action="store_true",
                        help="also single rows at a constant offered rate (25/50/75%% of each "
                        "server's peak; peers also at half of agbento's), latency from the "
                        "intended send time")
    parser.add_argument("--clients", type=lambda text: [int(x) for x in text.split(",")],
                        help="single-row client counts, comma-separated (quick 1,64; full "
                        "1,16,64,256)")
    parser.add_argument("--bulk", type=lambda text: text.split(","), metavar="LIST",
                        help="only these bulk scenarios, comma-separated (e.g. 1000-json; "
                        "default all)")
    parser.add_argument("--no-batch", action="store_true", help="leave out the batch client")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (3 if args.quick else 10)
    args.batch_rows = args.batch_rows or (50_000 if args.quick else 1_000_000)
    args.batch_seconds = args.batch_seconds or (10 if args.quick else 40)
    args.bulk_topology = list(TOPOLOGIES) if args.bulk_topology == "both" \
        else [args.bulk_topology]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        report = report_from_json(json.loads(args.render.read_text()))
        report.targets = targets(report)
        args.render.with_suffix(".md").write_text(markdown(report))
        plot(report, args.render.with_suffix(".png"))
        print(f"wrote {args.render.with_suffix('.md')} and .png")
        return 0
    if shutil.which("wrk") is None:
        print("error: wrk not found; install it with `make loadtest-deps` "
              "(apt-get install wrk)", file=sys.stderr)
        return 2
    concurrencies = args.clients or ([1, TARGET_CLIENTS] if args.quick
                                     else [1, 16, TARGET_CLIENTS, 256])
    report = Report(
        machine=machine(),
        settings={"mode": "quick" if args.quick else "full", "seconds": args.seconds,
                  "when": datetime.now(UTC).isoformat(timespec="seconds"),
                  "command": " ".join(["python loadtests/bench.py",
                                       *(sys.argv[1:] if argv is None else argv)]),
                  "concurrencies": concurrencies, "bulk_topology": args.bulk_topology,
                  "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                  "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
                  "service_env": "default AGBENTO_* settings, cache off "
                                 "(AGBENTO_CACHE_URL=off), AGBENTO_TOPOLOGY=split or fused",
                  "peers": args.peers, "open_loop": args.open_loop,
                  "note": "Single rows: distinct one-row bodies (a file of bodies walked by "
                          "each connection). Bulk: 4 clients repeating one body. The machine "
                          "is shared: figures are noisy unless the run says otherwise."})
    with tempfile.TemporaryDirectory(prefix="agbento-bench-") as work:
        for index, spec in enumerate(model_specs(args)):
            bench = ModelBench(spec, args, Path(work))
            report.models.append(bench.result)
            sizes = {*concurrencies, 1000, 10_000, args.chunk_rows}
            bench.in_process(sizes)
            bench.topologies(concurrencies)
            if args.peers:
                bench.peers(concurrencies)
            bench.in_process(sizes)
            if index == 0 and not args.no_echo:
                echoes(report, bench, concurrencies if not args.quick else [TARGET_CLIENTS])
            if not args.no_baseline and (index == 0 or not args.quick):
                bench.baseline(concurrencies if index == 0 else [TARGET_CLIENTS])
    report.settings["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report.targets = targets(report)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.name or report.settings["mode"]
    (args.out / f"{name}.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    plot(report, args.out / f"{name}.png")
    print(f"\nwrote {args.out / name}.json, .md, .png")
    for t in report.targets:
        verdict = "-" if t["met"] is None else "met" if t["met"] else "MISSED"
        print(f"  [{t['model']}] {t['what']}: {t['figure']} (target {t['target']}) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
