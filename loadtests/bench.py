"""Side-by-side benchmark: agbento vs a naive per-request server vs the model in-process.

    python loadtests/bench.py --quick          # about 2 minutes
    python loadtests/bench.py                  # the full matrix (about 6 minutes)

One run, one machine, one model. Load comes from `wrk` (C, one thread, Lua script
`post.lua`), so the generator is not the bottleneck; its own CPU time is reported. Writes
`results/<name>.json`, `.md` and `.png` (throughput and p99 against concurrency).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agbento.inference import TabularRuntime, encode_rows  # noqa: E402
from agbento.schema import json_records  # noqa: E402
from agbento.settings import DEMO_MODEL_NAME  # noqa: E402
from agbento.store import ModelCard  # noqa: E402
from agbento.training import DEMO_LABEL, TrainConfig, demo_table, train  # noqa: E402

LUA = Path(__file__).with_name("post.lua")


@dataclass
class Run:
    server: str
    scenario: str
    concurrency: int
    rows_per_request: int
    requests_per_s: float
    rows_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    non2xx: int
    socket_errors: int
    server_cpu_pct: float
    server_peak_rss_mb: float
    wrk_cpu_pct: float


@dataclass
class Report:
    machine: dict[str, Any]
    model: dict[str, Any]
    settings: dict[str, Any]
    in_process: dict[str, dict[str, float]] = field(default_factory=dict)
    cold_start_s: dict[str, float] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    batch_client: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: dict[str, float | None] = field(default_factory=dict)
    # median ms of one request at a time, the scenarios taken in turn (see `interleaved`)
    interleaved_ms: dict[str, float] = field(default_factory=dict)


# -- the pieces ---------------------------------------------------------------------------


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
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_generator": (wrk.stdout or wrk.stderr).splitlines()[0],
    }


def ensure_model(tag: str) -> ModelCard:
    import bentoml

    try:
        return ModelCard.of(bentoml.models.get(tag))
    except bentoml.exceptions.NotFound:
        print(f"model {tag} not found: training the demo model")
        return train(TrainConfig(label=DEMO_LABEL, demo=True, name=tag.split(":")[0])).card


def in_process(card: ModelCard, sizes: list[int]) -> dict[str, dict[str, float]]:
    """rows/s of predict_proba on a ready DataFrame, and of our whole scoring path."""
    runtime = TabularRuntime.load(card)
    table = demo_table().drop(columns=card.metadata["label"])
    result: dict[str, dict[str, float]] = {}
    for size in sizes:
        rows = json_records(table.sample(n=size, replace=True, random_state=size))
        values = card.schema.validate_rows(rows).rows
        frame = card.schema.to_frame(values)
        timings = {"predictor": [], "runtime": []}
        repeats = max(3, min(30, 20_000 // size))
        for _ in range(repeats):
            start = time.perf_counter()
            runtime.predictor.predict_proba(frame)
            timings["predictor"].append(time.perf_counter() - start)
            start = time.perf_counter()
            runtime.score_requests([encode_rows(values)])
            timings["runtime"].append(time.perf_counter() - start)
        predictor_s = statistics.median(timings["predictor"])
        runtime_s = statistics.median(timings["runtime"])
        result[str(size)] = {
            "predictor_ms": round(predictor_s * 1000, 3),
            "predictor_rows_per_s": round(size / predictor_s, 1),
            "runtime_ms": round(runtime_s * 1000, 3),
            "runtime_rows_per_s": round(size / runtime_s, 1),
        }
        print(f"in-process {size:>6} rows: {predictor_s * 1000:7.2f} ms predictor, "
              f"{runtime_s * 1000:7.2f} ms full scoring path")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess (its own process group) and when it became ready."""

    def __init__(self, name: str, command: list[str], port: int, env: dict[str, str]) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log",
                                               delete=False)
        start = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.cold_start_s = round(time.perf_counter() - start, 2)
        print(f"{name}: ready in {self.cold_start_s} s at {self.url}")

    def processes(self) -> list[psutil.Process]:
        parent = psutil.Process(self.process.pid)
        return [parent, *parent.children(recursive=True)]

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


class Monitor:
    """CPU seconds and peak RSS of a server's whole process tree during one run."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _cpu(self) -> float:
        total = 0.0
        for proc in self.server.processes():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for proc in self.server.processes():
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(0.25)

    def __enter__(self) -> Monitor:
        self.cpu_start, self.wall_start = self._cpu(), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        elapsed = time.perf_counter() - self.wall_start
        self.cpu_pct = 100 * (self._cpu() - self.cpu_start) / elapsed


def wrk(url: str, body: Path, content_type: str, concurrency: int, seconds: int,
        headers: dict[str, str] | None = None) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    extra = "\n".join(f"{name}: {value}" for name, value in (headers or {}).items())
    result = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s",
         "-s", str(LUA), url],
        env={**os.environ, "BODY_FILE": str(body), "CONTENT_TYPE": content_type,
             "EXTRA_HEADERS": extra},
        capture_output=True, text=True, timeout=seconds + 120,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in result.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {result.stdout}\n{result.stderr}")
    summary = json.loads(line.removeprefix("WRK_JSON "))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary["wrk_cpu_pct"] = round(100 * cpu / (summary["duration_us"] / 1e6), 1)
    return summary


def measure(server: Server, scenario: str, path: str, body: Path, content_type: str,
            rows: int, concurrency: int, seconds: int,
            headers: dict[str, str] | None = None) -> Run:
    # warm up connections
    wrk(f"{server.url}{path}", body, content_type, concurrency, 1, headers)
    with Monitor(server) as monitor:
        summary = wrk(f"{server.url}{path}", body, content_type, concurrency, seconds, headers)
    rps = summary["requests"] / (summary["duration_us"] / 1e6)
    run = Run(
        server=server.name, scenario=scenario, concurrency=concurrency, rows_per_request=rows,
        requests_per_s=round(rps, 1), rows_per_s=round(rps * rows, 1),
        p50_ms=summary["p50_ms"], p95_ms=summary["p95_ms"], p99_ms=summary["p99_ms"],
        max_ms=summary["max_ms"], requests=summary["requests"], non2xx=summary["non2xx"],
        socket_errors=summary["errors"], server_cpu_pct=round(monitor.cpu_pct, 1),
        server_peak_rss_mb=round(monitor.peak_rss / 2**20, 1),
        wrk_cpu_pct=summary["wrk_cpu_pct"],
    )
    print(f"{server.name:9} {scenario:17} c={concurrency:<4} {run.requests_per_s:9.1f} req/s "
          f"{run.rows_per_s:10.1f} rows/s  p50 {run.p50_ms:7.1f}  p99 {run.p99_ms:7.1f} ms  "
          f"non-2xx {run.non2xx}  server cpu {run.server_cpu_pct}%  wrk cpu {run.wrk_cpu_pct}%")
    return run


def bodies(card: ModelCard, workdir: Path) -> dict[str, tuple[Path, str, int]]:
    table = demo_table().dropna(subset=[card.metadata["label"]])
    table = table.drop(columns=card.metadata["label"])
    one = json_records(table.sample(n=1, random_state=1))
    thousand = table.sample(n=1000, replace=True, random_state=2)
    hundred = json_records(table.sample(n=100, replace=True, random_state=4))
    files = {
        "single-json": (json.dumps({"data": one}), "application/json", 1),
        "100-json": (json.dumps({"data": hundred}), "application/json", 100),
        "1000-json": (json.dumps({"data": json_records(thousand)}), "application/json", 1000),
        "1000-csv": (thousand.to_csv(index=False), "text/csv", 1000),
    }
    out = {}
    for name, (content, content_type, rows) in files.items():
        path = workdir / f"{name}.body"
        path.write_text(content)
        out[name] = (path, content_type, rows)
    buffer = io.BytesIO()
    thousand.to_parquet(buffer, index=False)
    (workdir / "1000-parquet.body").write_bytes(buffer.getvalue())
    out["1000-parquet"] = (workdir / "1000-parquet.body", "application/vnd.apache.parquet", 1000)
    return out


def v2_bodies(card: ModelCard, workdir: Path) -> dict[str, tuple[Path, str, int, dict]]:
    """Open Inference Protocol V2 bodies of the same rows, built by tritonclient: one tensor
    per feature; JSON in and out, or binary tensors both ways (tritonclient's default)."""
    import numpy as np
    import tritonclient.http as triton

    from agbento.v2 import HEADER_LENGTH, ProtocolModel

    model = ProtocolModel.of(card)
    table = demo_table().dropna(subset=[card.metadata["label"]])
    table = table.drop(columns=card.metadata["label"])
    one = table.sample(n=1, random_state=1)
    thousand = table.sample(n=1000, replace=True, random_state=2)

    def inputs(frame: Any, binary: bool) -> list[Any]:
        tensors = []
        for feature in model.features:
            datatype = model.input_datatype(feature)
            column = frame[feature.name]
            if datatype == "BYTES":  # a BYTES tensor has no null: an empty string stands in
                array = column.astype(object).where(column.notna(), "").astype(str)
            else:
                array = column.astype("float64")
            array = array.to_numpy().astype(np.int64 if datatype == "INT64" else array.dtype)
            tensor = triton.InferInput(feature.name, [len(frame)], datatype)
            tensor.set_data_from_numpy(array, binary_data=binary)
            tensors.append(tensor)
        return tensors

    json_outputs = [triton.InferRequestedOutput(o.name, binary_data=False)
                    for o in model.outputs]
    out = {}
    for name, frame, binary in (("v2-single-json", one, False),
                                ("v2-1000-json", thousand, False),
                                ("v2-1000-binary", thousand, True)):
        body, json_size = triton.InferenceServerClient.generate_request_body(
            inputs(frame, binary), outputs=None if binary else json_outputs)
        path = workdir / f"{name}.body"
        path.write_bytes(body)
        headers = {HEADER_LENGTH: str(json_size)} if json_size is not None else {}
        content_type = "application/octet-stream" if binary else "application/json"
        out[name] = (path, content_type, len(frame), headers)
    return out


def interleaved(server: Server, cases: dict[str, tuple[str, Path, str, dict]],
                rounds: int) -> dict[str, float]:
    """Median latency of one request at a time, the cases sent in turn, round after round:
    a shared machine's changing load then hits every case alike (wrk's runs are minutes
    apart). Each case is (path, body file, content type, headers)."""
    requests = {name: (path, body.read_bytes(), {"content-type": content_type, **headers})
                for name, (path, body, content_type, headers) in cases.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for round_ in range(rounds + 3):  # 3 warm-up rounds
            for name, (path, body, headers) in requests.items():
                start = time.perf_counter()
                response = client.post(path, content=body, headers=headers)
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
                if round_ >= 3:
                    times[name].append(elapsed)
    medians = {name: round(statistics.median(v) * 1000, 2) for name, v in times.items()}
    for name, ms in medians.items():
        print(f"interleaved {name:22} median {ms:7.2f} ms ({rounds} requests)")
    return medians


def batch_client(target: list[str], rows_file: Path, workdir: Path) -> dict[str, Any]:
    """`python -m agbento.batch` on a Parquet file: its own summary (rows/s and more)."""
    out = workdir / f"scored-{len(list(workdir.glob('scored-*')))}.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "agbento.batch", str(rows_file), str(out), *target,
         "--chunk-rows", "1000", "--concurrency", "4", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"batch client failed: {result.stderr[-2000:]}")
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    print(f"batch client {' '.join(target)}: {summary['rows_per_s']} rows/s")
    return {k: summary[k] for k in ("rows", "seconds", "rows_per_s", "retries")}


# -- the report ---------------------------------------------------------------------------


def ratios(report: Report) -> dict[str, float | None]:
    def find(server: str, scenario: str, concurrency: int) -> Run | None:
        return next((r for r in report.runs if (r.server, r.scenario, r.concurrency)
                     == (server, scenario, concurrency)), None)

    def limit(rows: int) -> float:
        return report.in_process[str(rows)]["predictor_rows_per_s"]

    out: dict[str, float | None] = {}
    for c in sorted({r.concurrency for r in report.runs if r.scenario == "single-json"}):
        ours, base = find("agbento", "single-json", c), find("baseline", "single-json", c)
        if ours and base and base.requests_per_s:
            out[f"single_c{c}_vs_baseline"] = round(ours.requests_per_s / base.requests_per_s, 2)
        if ours and str(c) in report.in_process:
            out[f"single_c{c}_vs_in_process_batch_{c}"] = round(ours.rows_per_s / limit(c), 3)
    for scenario in ("1000-json", "1000-csv", "1000-parquet"):
        ours = find("agbento", scenario, 4)
        if ours:
            out[f"{scenario}_c4_vs_in_process_batch_1000"] = round(ours.rows_per_s / limit(1000), 3)
    if "service" in report.batch_client:
        out["batch_client_vs_in_process_batch_1000"] = round(
            report.batch_client["service"]["rows_per_s"] / limit(1000), 3)
    for scenario, c in (("single-json", 64), ("100-json", 16)):
        hit, miss = find("agbento+cache", f"{scenario} repeated", c), find("agbento", scenario, c)
        if hit and miss:
            out[f"{scenario}_c{c}_cache_hits_vs_no_cache"] = round(
                hit.requests_per_s / miss.requests_per_s, 2)
    ours, base = find("agbento", "1000-json", 4), find("baseline", "1000-json", 4)
    if ours and base:
        out["1000-json_c4_vs_baseline"] = round(ours.rows_per_s / base.rows_per_s, 2)
    # the Open Inference Protocol V2 against /predict, same server, same run
    for c in sorted({r.concurrency for r in report.runs if r.scenario == "v2-single-json"}):
        v2, predict = find("agbento", "v2-single-json", c), find("agbento", "single-json", c)
        if v2 and predict and predict.requests_per_s:
            out[f"v2-single_c{c}_vs_predict"] = round(v2.requests_per_s / predict.requests_per_s,
                                                      2)
    predict = find("agbento", "1000-json", 4)
    for scenario in ("v2-1000-json", "v2-1000-binary"):
        v2 = find("agbento", scenario, 4)
        if v2 and predict and predict.rows_per_s:
            out[f"{scenario}_c4_vs_predict_1000-json"] = round(v2.rows_per_s / predict.rows_per_s,
                                                              2)
    # server CPU per request (all processes): steadier than req/s when the machine is shared
    def cpu_ms(run: Run) -> float:
        return 10 * run.server_cpu_pct / run.requests_per_s

    pairs = [("v2-single-json", "single-json", c) for c in (16, 64, 256)]
    pairs += [("v2-1000-json", "1000-json", 4), ("v2-1000-binary", "1000-json", 4)]
    for v2_scenario, scenario, c in pairs:
        v2, predict = find("agbento", v2_scenario, c), find("agbento", scenario, c)
        if v2 and predict and v2.requests_per_s and predict.requests_per_s:  # > 1: V2 cheaper
            out[f"{v2_scenario}_c{c}_cpu_per_request_saving_vs_{scenario}"] = round(
                cpu_ms(predict) / cpu_ms(v2), 2)
    ms = report.interleaved_ms
    for v2, predict in (("v2 single-json", "predict single-json"),
                        ("v2 1000-json", "predict 1000-json"),
                        ("v2 1000-binary", "predict 1000-json")):
        if v2 in ms and predict in ms:  # > 1: V2 answers faster
            out[f"{v2.replace(' ', '-')}_interleaved_speed_vs_{predict.replace(' ', '-')}"] = (
                round(ms[predict] / ms[v2], 2))
    return out


def markdown(report: Report) -> str:
    m = report.machine
    lines = [
        f"# agbento benchmark ({report.settings['mode']}, {report.settings['when']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}, "
        f"Python {m['python']}. Load generator: {m['load_generator']} (one thread, "
        f"`post.lua`), on the same machine. Each run {report.settings['seconds']} s after a "
        "1 s warm-up.",
        "",
        f"Model: `{report.model['tag']}` ({report.model['problem_type']}, "
        f"{report.model['models']}), served by `bentoml serve` with "
        f"{report.settings['service_env']}; baseline: FastAPI + uvicorn, 1 worker, "
        "`predict` + `predict_proba` per request (loadtests/baseline/app.py).",
        "",
        "Cold start (process start to /readyz 200): "
        + ", ".join(f"{k} {v} s" for k, v in report.cold_start_s.items()),
        "",
        "## The model in-process (the limit)",
        "",
        "| rows per call | predict_proba ms | rows/s | full scoring path ms | rows/s |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, v in report.in_process.items():
        lines.append(f"| {size} | {v['predictor_ms']} | {v['predictor_rows_per_s']:.0f} | "
                     f"{v['runtime_ms']} | {v['runtime_rows_per_s']:.0f} |")
    lines += [
        "",
        "## Over HTTP",
        "",
        "| server | scenario | clients | req/s | rows/s | limit rows/s | p50 ms | p95 ms | "
        "p99 ms | non-2xx | server CPU % | server peak RSS MB | wrk CPU % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: |",
    ]
    for r in report.runs:
        batch = r.rows_per_request if r.rows_per_request > 1 else r.concurrency
        limit = report.in_process.get(str(batch), {}).get("predictor_rows_per_s")
        lines.append(
            f"| {r.server} | {r.scenario} | {r.concurrency} | {r.requests_per_s:.0f} | "
            f"{r.rows_per_s:.0f} | {f'{limit:.0f}' if limit else '-'} | {r.p50_ms:.1f} | "
            f"{r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.non2xx + r.socket_errors} | "
            f"{r.server_cpu_pct:.0f} | {r.server_peak_rss_mb:.0f} | {r.wrk_cpu_pct:.0f} |"
        )
    if report.batch_client:
        lines += ["", "## Batch client (`python -m agbento.batch`, 1,000-row chunks, 4 in flight)",
                  "", "| target | rows | seconds | rows/s |", "| --- | ---: | ---: | ---: |"]
        for target, v in report.batch_client.items():
            lines.append(f"| {target} | {v['rows']} | {v['seconds']} | {v['rows_per_s']} |")
    if report.interleaved_ms:
        lines += ["", "## V2 against /predict, one request at a time, in turn (median ms)", "",
                  "| scenario | median ms |", "| --- | ---: |"]
        lines += [f"| {name} | {ms} |" for name, ms in report.interleaved_ms.items()]
    lines += ["", "## Ratios", ""]
    lines += [f"- `{k}`: {v}" for k, v in report.ratios.items()]
    lines += ["", "The limit for single-row clients is the model in-process at a batch as "
              "large as the number of clients."]
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for server in ("agbento", "baseline"):
        runs = sorted((r for r in report.runs
                       if r.server == server and r.scenario == "single-json"),
                      key=lambda r: r.concurrency)
        if not runs:
            continue
        xs = [r.concurrency for r in runs]
        left.plot(xs, [r.requests_per_s for r in runs], marker="o", label=server)
        right.plot(xs, [r.p99_ms for r in runs], marker="o", label=server)
    for axis, title in ((left, "single-row requests/s"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("concurrent clients")
        axis.set_title(title)
        axis.legend()
        axis.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 2 minutes)")
    parser.add_argument("--model", default=f"{DEMO_MODEL_NAME}:latest")
    parser.add_argument("--seconds", type=int, help="seconds per run (quick 4, full 15)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    parser.add_argument("--name", help="report file name (default: quick or full)")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk not found; install it with `make loadtest-deps` "
              "(apt-get install wrk)", file=sys.stderr)
        return 2

    seconds = args.seconds or (4 if args.quick else 15)
    concurrencies = [1, 16, 64, 256]
    card = ensure_model(args.model)
    # Batching is measured with the cache off (wrk repeats one body: with the cache on every
    # request would be a hit); the cache gets its own repeated-rows runs.
    service_env = {"AGBENTO_MODEL": card.tag, "AGBENTO_CACHE_URL": "off"}
    report = Report(
        machine=machine(),
        model={"tag": card.tag, "problem_type": card.problem_type,
               "models": ", ".join(card.metadata.get("models", []))},
        settings={"mode": "quick" if args.quick else "full", "seconds": seconds,
                  "when": datetime.now(UTC).isoformat(timespec="seconds"),
                  "service_env": "default AGBENTO_* settings, cache off "
                                 "(cached runs: AGBENTO_CACHE_URL=memory)"},
    )
    report.in_process = in_process(card, sorted({1, 16, 64, 100, 256, 1000, 10_000}))

    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="agbento-bench-") as work:
        files = bodies(card, Path(work))
        v2_files = v2_bodies(card, Path(work))
        v2_path = f"/v2/models/{card.tag.split(':')[0]}/infer"
        port = free_port()
        service = Server("agbento", [str(bin_dir / "bentoml"), "serve", ".", "--host",
                                     "127.0.0.1", "--port", str(port)], port, service_env)
        report.cold_start_s["agbento"] = service.cold_start_s
        try:
            for c in concurrencies:
                report.runs.append(measure(service, "single-json", "/predict",
                                           *files["single-json"][:2], 1, c, seconds))
                # V2 right after /predict at each point, so drift in a shared machine's
                # load hits both alike
                path, content_type, rows, headers = v2_files["v2-single-json"]
                report.runs.append(measure(service, "v2-single-json", v2_path, path,
                                           content_type, rows, c, seconds, headers))
            path, content_type, rows = files["100-json"]
            report.runs.append(measure(service, "100-json", "/predict", path, content_type,
                                       rows, 16, seconds))
            report.interleaved_ms = interleaved(service, {
                "predict single-json": ("/predict", *files["single-json"][:2], {}),
                "v2 single-json": (v2_path, *v2_files["v2-single-json"][:2],
                                   v2_files["v2-single-json"][3]),
                "predict 1000-json": ("/predict", *files["1000-json"][:2], {}),
                "v2 1000-json": (v2_path, *v2_files["v2-1000-json"][:2],
                                 v2_files["v2-1000-json"][3]),
                "v2 1000-binary": (v2_path, *v2_files["v2-1000-binary"][:2],
                                   v2_files["v2-1000-binary"][3]),
            }, 100 if args.quick else 300)
            for name in ("1000-json", "v2-1000-json", "v2-1000-binary", "1000-csv",
                         "1000-parquet"):
                if name.startswith("v2-"):  # right after /predict's JSON, as above
                    path, content_type, rows, headers = v2_files[name]
                    report.runs.append(measure(service, name, v2_path, path, content_type, rows,
                                               4, seconds, headers))
                    continue
                path, content_type, rows = files[name]
                report.runs.append(measure(service, name, "/predict", path, content_type,
                                           rows, 4, seconds))
            table = demo_table().drop(columns=card.metadata["label"])
            rows_file = Path(work) / "batch-input.parquet"
            table.sample(n=20_000 if args.quick else 100_000, replace=True,
                         random_state=3).to_parquet(rows_file, index=False)
            report.batch_client["service"] = batch_client(["--url", service.url], rows_file,
                                                          Path(work))
        finally:
            service.stop()
        report.batch_client["in-process (--local)"] = batch_client(
            ["--local", card.tag], rows_file, Path(work))
        port = free_port()
        cached = Server("agbento+cache", [str(bin_dir / "bentoml"), "serve", ".", "--host",
                                          "127.0.0.1", "--port", str(port)], port,
                        {**service_env, "AGBENTO_CACHE_URL": "memory"})
        try:
            for name, concurrency in (("single-json", 64), ("100-json", 16)):
                path, content_type, rows = files[name]
                report.runs.append(measure(cached, f"{name} repeated", "/predict", path,
                                           content_type, rows, concurrency, seconds))
        finally:
            cached.stop()
        if not args.no_baseline:
            port = free_port()
            baseline = Server("baseline", [str(bin_dir / "uvicorn"), "loadtests.baseline.app:app",
                                           "--host", "127.0.0.1", "--port", str(port),
                                           "--no-access-log"], port, service_env)
            report.cold_start_s["baseline"] = baseline.cold_start_s
            try:
                for c in concurrencies:
                    report.runs.append(measure(baseline, "single-json", "/predict",
                                               *files["single-json"][:2], 1, c, seconds))
                path, content_type, rows = files["1000-json"]
                report.runs.append(measure(baseline, "1000-json", "/predict", path,
                                           content_type, rows, 4, seconds))
            finally:
                baseline.stop()

    report.ratios = ratios(report)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.name or report.settings["mode"]
    (args.out / f"{name}.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    plot(report, args.out / f"{name}.png")
    print(f"\nwrote {args.out / name}.json, .md, .png")
    for key, value in report.ratios.items():
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
