"""The benchmark's servers and load: start a server, watch its processes, drive it with wrk.

A scenario the server does not support yet (an Arrow body, an Accept header) is probed
with one request first and reported as skipped with the server's answer, not run.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).with_name("post.lua")
OPENLOOP_C = Path(__file__).with_name("openloop.c")
CACHE = Path(__file__).with_name(".peers")  # gitignored: peer venvs, the open-loop generator
BIN = Path(sys.executable).parent


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
    non2xx_by_status: dict[str, int]


@dataclass
class OpenRun:
    """Requests sent at a constant rate whatever the answers do; latency from each request's
    intended send time (openloop.c)."""

    server: str
    scenario: str
    load: str  # which rate: "50% of own peak", "50% of agbento's peak"
    offered_per_s: float
    answered_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    requests: int
    non2xx: int
    errors: int  # connect, read, write errors, timeouts, and requests never answered
    unfinished: int
    late: int  # sent over 1 ms after they were due (no free connection)
    max_waiting: int
    connections: int
    server_cpu_pct: float
    server_peak_rss_mb: float
    generator_cpu_pct: float
    non2xx_by_status: dict[str, int]


@dataclass
class Scenario:
    """One kind of request: a body (or a file of one-row bodies, one a line), its content
    type and, for table answers, the Accept header."""

    name: str
    rows: int
    body: Path
    content_type: str
    accept: str | None = None
    many_bodies: bool = False
    path: str = "/predict"
    extra_headers: dict[str, str] | None = None

    def headers(self) -> dict[str, str]:
        return {**({"Accept": self.accept} if self.accept else {}),
                **(self.extra_headers or {})}

    def first_body(self) -> bytes:
        if self.many_bodies:
            with self.body.open("rb") as lines:
                return lines.readline().rstrip(b"\n")
        return self.body.read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bentoml_serve(target: str, port: int) -> list[str]:
    return [str(BIN / "bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)]


class Server:
    """A server subprocess (its own process group) and when it became ready."""

    def __init__(self, name: str, command: list[str], port: int, env: dict[str, str | None],
                 ready_path: str = "/readyz") -> None:
        """`env` on top of ours; a None value removes the variable."""
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name.replace(' ', '-')}-",
                                               suffix=".log", delete=False)
        start = time.perf_counter()
        environment = {**os.environ, **env}
        environment = {k: v for k, v in environment.items() if v is not None}
        self.process = subprocess.Popen(command, cwd=ROOT, env=environment,
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 240
        try:
            while True:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start: see {self.log.name}")
                try:
                    if httpx.get(f"{self.url}{ready_path}", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        self.cold_start_s = round(time.perf_counter() - start, 2)
        print(f"{name}: ready in {self.cold_start_s} s at {self.url}")

    def processes(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.process.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.Error:
            return []

    def workers(self) -> dict[str, int]:
        """BentoML worker processes by service name (`--service-name` on their command)."""
        counts: dict[str, int] = {}
        for proc in self.processes():
            try:
                command = proc.cmdline()
            except psutil.Error:
                continue
            if "_bentoml_impl.worker.service" in command and "--service-name" in command:
                name = command[command.index("--service-name") + 1]
                counts[name] = counts.get(name, 0) + 1
        return counts

    def stop(self) -> None:
        """SIGTERM to the server's process group; then whatever of its tree outlived it (a
        process that made a group of its own, as Ray's actors do) is killed too."""
        tree = self.processes()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        _, alive = psutil.wait_procs(tree[1:], timeout=10)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass


def topology_of(server: Server, entry_service: str = "agbento") -> dict[str, Any]:
    """What the server runs, whatever was asked: split when a dependency service has its own
    workers, fused when only the entry service does; /model/info's word when it gives one."""
    workers = server.workers()
    dependency = {name: n for name, n in workers.items() if name != entry_service}
    found: dict[str, Any] = {
        "by_process_tree": "split" if dependency else "fused",
        "api_workers": workers.get(entry_service, 0),
        "model_workers": sum(dependency.values()),
        "workers": workers,
    }
    try:
        info = httpx.get(f"{server.url}/model/info", timeout=5).json()
        said = info.get("topology") or (info.get("serving") or {}).get("topology")
        if said:
            found["by_model_info"] = said
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    found["effective"] = found.get("by_model_info") or found["by_process_tree"]
    return found


class Monitor:
    """CPU seconds and peak RSS of a server's whole process tree during one run; `series`
    keeps every sample (wall-clock time, RSS bytes), one every `interval_s`."""

    def __init__(self, server: Server, interval_s: float = 0.25) -> None:
        self.server, self.interval_s = server, interval_s
        self.peak_rss = 0
        self.series: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for proc in self.server.processes():
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self.series.append((time.time(), rss))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Monitor:
        self.cpu_start, self.wall_start = tree_cpu_s(self.server), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        elapsed = time.perf_counter() - self.wall_start
        self.cpu_pct = 100 * (tree_cpu_s(self.server) - self.cpu_start) / elapsed


def openloop_binary() -> Path:
    """loadtests/openloop.c, compiled when missing or older than its source."""
    binary = CACHE / "bin" / "openloop"
    if not binary.exists() or binary.stat().st_mtime < OPENLOOP_C.stat().st_mtime:
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(OPENLOOP_C)], check=True)
    return binary


def drive(url: str, scenario: Scenario, concurrency: int, seconds: int,
          rate: float | None = None, answers_log: Path | None = None) -> dict[str, Any]:
    """Load on `url`, and its summary: closed-loop by wrk (`concurrency` connections, each
    sending when its last answer came), or open-loop at `rate` requests/s by openloop (at
    most `concurrency` connections; latency from each request's intended send time). With
    `answers_log`, openloop does either (closed loop: `openloop -C`) and writes every answer
    there: sent and done times, status, X-Agbento-Model (openloop.c)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    extra = "\n".join(f"{name}: {value}" for name, value in scenario.headers().items())
    bodies = {"BODIES_FILE" if scenario.many_bodies else "BODY_FILE": str(scenario.body)}
    if rate is None and answers_log is None:
        command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s",
                   "-s", str(LUA), url]
        prefix = "WRK_JSON "
    else:
        command = [str(openloop_binary()), *(["-r", f"{rate:.3f}"] if rate else ["-C"]),
                   "-d", str(seconds), "-c", str(concurrency), "-t", "30",
                   *(["-l", str(answers_log)] if answers_log else []), url]
        prefix = "OPENLOOP_JSON "
    result = subprocess.run(
        command, env={**os.environ, **bodies, "CONTENT_TYPE": scenario.content_type,
                      "EXTRA_HEADERS": extra},
        capture_output=True, text=True, timeout=seconds + 120,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in result.stdout.splitlines() if x.startswith(prefix)), None)
    if line is None:
        raise RuntimeError(f"{command[0]} failed: {result.stdout}\n{result.stderr}")
    summary = json.loads(line.removeprefix(prefix))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary["wrk_cpu_pct"] = round(100 * cpu / (summary["duration_us"] / 1e6), 1)
    return summary


def tree_cpu_s(server: Server) -> float:
    total = 0.0
    for proc in server.processes():
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def wait_idle(server: Server, timeout_s: float = 60) -> None:
    """Until the server has finished what earlier load left in flight (wrk stops sending at
    its deadline, but the server still works through the requests it holds)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = tree_cpu_s(server)
        time.sleep(0.5)
        if tree_cpu_s(server) - before < 0.1:  # under a fifth of a core
            return


def probe(server: Server, scenario: Scenario) -> tuple[str | None, float]:
    """(None, seconds one request took) when the server answers the scenario's request as
    asked; else (why not, seconds)."""
    wait_idle(server)
    headers = {"Content-Type": scenario.content_type, **scenario.headers()}
    start = time.perf_counter()
    try:
        response = httpx.post(f"{server.url}{scenario.path}", content=scenario.first_body(),
                              headers=headers, timeout=120)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}", time.perf_counter() - start
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        try:  # our error shape: its code and message say it best
            error = response.json()["error"]
            return f"HTTP {response.status_code} {error['code']}: {error['message']}"[:300], \
                elapsed
        except (ValueError, KeyError, TypeError):
            return f"HTTP {response.status_code}: {response.text[:300]}".replace("\n", " "), \
                elapsed
    got = response.headers.get("content-type", "")
    if scenario.accept and not got.startswith(scenario.accept):
        return f"asked Accept: {scenario.accept}, answered {got or 'no content type'}", elapsed
    return None, elapsed


def run_seconds(seconds: int, one_request_s: float) -> int:
    """At least `seconds`, and long enough for a slow request kind to complete some tens of
    requests (at most a minute)."""
    return max(seconds, min(60, math.ceil(10 * one_request_s)))


def measure(server: Server, scenario: Scenario, concurrency: int, seconds: int,
            one_request_s: float = 0.0) -> Run:
    url = f"{server.url}{scenario.path}"
    if one_request_s < 0.25:  # warm up connections; a slow kind is warm from the probe
        drive(url, scenario, concurrency, 1)
        wait_idle(server)
    with Monitor(server) as monitor:
        summary = drive(url, scenario, concurrency, run_seconds(seconds, one_request_s))
    if summary["requests"] < 3:
        raise RuntimeError(f"only {summary['requests']} requests completed in "
                           f"{summary['duration_us'] / 1e6:.0f} s")
    rps = summary["requests"] / (summary["duration_us"] / 1e6)
    run = Run(
        server=server.name, scenario=scenario.name, concurrency=concurrency,
        rows_per_request=scenario.rows, requests_per_s=round(rps, 1),
        rows_per_s=round(rps * scenario.rows, 1), p50_ms=summary["p50_ms"],
        p95_ms=summary["p95_ms"], p99_ms=summary["p99_ms"], max_ms=summary["max_ms"],
        requests=summary["requests"], non2xx=summary["non2xx"], socket_errors=summary["errors"],
        server_cpu_pct=round(monitor.cpu_pct, 1),
        server_peak_rss_mb=round(monitor.peak_rss / 2**20, 1),
        wrk_cpu_pct=summary["wrk_cpu_pct"], non2xx_by_status=summary["non2xx_by_status"],
    )
    print(f"{server.name:14} {scenario.name:24} c={concurrency:<4} {run.requests_per_s:9.1f} "
          f"req/s {run.rows_per_s:10.1f} rows/s  p50 {run.p50_ms:7.1f}  p99 {run.p99_ms:7.1f} "
          f"ms  non-2xx {run.non2xx}  server cpu {run.server_cpu_pct}%  "
          f"wrk cpu {run.wrk_cpu_pct}%")
    return run


OPEN_LOOP_CONNECTIONS = 256  # the most connections openloop opens: as wrk's most clients


def measure_open(server: Server, scenario: Scenario, rate: float, seconds: int,
                 load: str) -> OpenRun:
    """`rate` requests/s for `seconds` on a warm server (closed-loop runs came first)."""
    wait_idle(server)
    with Monitor(server) as monitor:
        summary = drive(f"{server.url}{scenario.path}", scenario, OPEN_LOOP_CONNECTIONS,
                        seconds, rate)
    run = OpenRun(
        server=server.name, scenario=scenario.name, load=load, offered_per_s=round(rate, 1),
        answered_per_s=round(summary["requests"] / (summary["duration_us"] / 1e6), 1),
        p50_ms=summary["p50_ms"], p90_ms=summary["p90_ms"], p99_ms=summary["p99_ms"],
        p999_ms=summary["p999_ms"], max_ms=summary["max_ms"], requests=summary["requests"],
        non2xx=summary["non2xx"], errors=summary["errors"], unfinished=summary["unfinished"],
        late=summary["late"], max_waiting=summary["max_waiting"],
        connections=summary["connections"], server_cpu_pct=round(monitor.cpu_pct, 1),
        server_peak_rss_mb=round(monitor.peak_rss / 2**20, 1),
        generator_cpu_pct=summary["wrk_cpu_pct"], non2xx_by_status=summary["non2xx_by_status"])
    print(f"{server.name:14} {scenario.name:24} open {run.offered_per_s:8.1f}/s ({load}): "
          f"answered {run.answered_per_s:8.1f}/s  p50 {run.p50_ms:7.1f}  p99 {run.p99_ms:7.1f} "
          f" p99.9 {run.p999_ms:7.1f} ms  errors {run.errors}  non-2xx {run.non2xx}  "
          f"late {run.late}")
    return run


def batch_client(target: list[str], rows_file: Path, out: Path, chunk_rows: int,
                 concurrency: int) -> dict[str, Any]:
    """`python -m agbento.batch` on a Parquet file to a Parquet file: its own summary."""
    result = subprocess.run(
        [sys.executable, "-m", "agbento.batch", str(rows_file), str(out), *target,
         "--chunk-rows", str(chunk_rows), "--concurrency", str(concurrency), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"batch client exited {result.returncode}: {result.stderr[-1500:]}")
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    print(f"batch client {' '.join(target)}: {summary.get('rows_per_s')} rows/s")
    return {k: summary.get(k) for k in ("rows", "seconds", "rows_per_s", "retries",
                                        "rejected_rows")}
