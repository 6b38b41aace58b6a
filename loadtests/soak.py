"""Soak: a long run at steady load on distinct rows, cache off; watch memory and p99 drift.

    python loadtests/soak.py                 # 20 minutes at 64 clients (make soak)
    python loadtests/soak.py --minutes 2     # a check of the harness

Load comes from `wrk` (one thread, `post.lua` with BODIES_FILE), run back to back in
seconds, so every slice gives its own p50/p99 and status counts; every request body holds
one row no other request in the run holds (the cache is off anyway: AGBENTO_CACHE_URL=off).
A sampler records the RSS of every process of the server (psutil: `bentoml serve`, its
arbiter and all workers) every `--sample-s` seconds.

Passes when: no non-2xx answer and no socket error; total RSS at the end at most 10% above
its value at the end of the first minute (warm-up: allocator arenas, imports, first
batches); p99 stable, i.e. the median slice p99 of the last third of the run at most 1.5x
that of the first third after warm-up. Writes `results/<name>.json`, `.md` and `.png`.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
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

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agbento.core.settings import DEMO_MODEL_NAME  # noqa: E402
from agbento.models.store import ModelCard  # noqa: E402
from agbento.rows.schema import json_records  # noqa: E402
from agbento.training.pipeline import demo_table  # noqa: E402
from loadtests.bench import Server, ensure_model, free_port, machine  # noqa: E402

LUA = Path(__file__).with_name("post.lua")  # with BODIES_FILE: distinct rows
WARM_UP_S = 60
MAX_RSS_GROWTH = 0.10
MAX_P99_DRIFT = 1.5


@dataclass
class Slice:
    start_s: float
    seconds: float
    requests: int
    requests_per_s: float
    non2xx: int
    non2xx_by_status: dict[str, int]
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class Sample:
    at_s: float
    total_rss_mb: float
    by_process_mb: dict[str, float]


@dataclass
class Report:
    machine: dict[str, Any]
    model: dict[str, Any]
    settings: dict[str, Any]
    slices: list[Slice] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def distinct_bodies(card: ModelCard, count: int, path: Path) -> int:
    """`count` one-row bodies, no two rows alike: demo rows with their numbers jittered."""
    label = card.metadata["label"]
    table = demo_table().drop(columns=label).dropna()
    numeric = [f.name for f in card.schema.features if f.kind == "numeric" and f.name != "year"]
    rng = random.Random(20)
    seen: set[str] = set()
    with path.open("w") as out:
        while len(seen) < count:
            for record in json_records(table.sample(n=min(count, len(table)), replace=True,
                                                    random_state=rng.randrange(2**31))):
                for name in numeric:
                    record[name] = round(float(record[name]) * rng.uniform(0.9, 1.1), 3)
                body = json.dumps({"data": [record]}, separators=(",", ":"))
                if body not in seen:
                    seen.add(body)
                    out.write(body + "\n")
                if len(seen) == count:
                    break
    return len(seen)


def process_label(proc: psutil.Process) -> str:
    """`api`, `model` (by the service a BentoML worker serves), or the process's name."""
    try:
        command = " ".join(proc.cmdline())
    except psutil.Error:
        return f"gone-{proc.pid}"
    if "_bentoml_impl.worker.service" in command:
        # the dependency service's worker is started with its name; the entry service's not
        return "model worker" if "TabularModel" in command or "agbento-model" in command \
            else "api worker"
    if "circus" in command or "arbiter" in command:
        return "arbiter"
    if "bentoml serve" in command or command.endswith("bentoml") or " serve " in command:
        return "bentoml serve"
    return proc.name()


class RssSampler:
    """The RSS of every process of the server, every `every_s` seconds, in a thread."""

    def __init__(self, server: Server, started: float, every_s: float) -> None:
        self.server, self.started, self.every_s = server, started, every_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            by_process: dict[str, float] = {}
            for proc in self.server.processes():
                try:
                    rss = proc.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                label = process_label(proc)
                while label in by_process:  # several workers of one kind
                    label += "'"
                by_process[label] = round(rss, 1)
            self.samples.append(Sample(round(time.monotonic() - self.started, 1),
                                       round(sum(by_process.values()), 1), by_process))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wrk_slice(url: str, bodies: Path, clients: int, seconds: int) -> dict[str, Any]:
    result = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s", "-s", str(LUA),
         url],
        env={"BODIES_FILE": str(bodies), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=seconds + 120,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {result.stdout}\n{result.stderr}")
    return json.loads(line.removeprefix("WRK_JSON "))


def summarise(report: Report) -> dict[str, Any]:
    slices, samples = report.slices, report.samples
    requests = sum(s.requests for s in slices)
    non2xx = sum(s.non2xx for s in slices)
    errors = sum(s.socket_errors for s in slices)
    after_warm_up = [s for s in samples if s.at_s >= WARM_UP_S]
    baseline = after_warm_up[0] if after_warm_up else samples[-1]
    final = samples[-1]
    peak = max(after_warm_up or samples, key=lambda s: s.total_rss_mb)
    growth = (final.total_rss_mb - baseline.total_rss_mb) / baseline.total_rss_mb
    peak_growth = (peak.total_rss_mb - baseline.total_rss_mb) / baseline.total_rss_mb
    steady = [s for s in slices if s.start_s >= WARM_UP_S] or slices
    third = max(1, len(steady) // 3)
    first_p99 = statistics.median(s.p99_ms for s in steady[:third])
    last_p99 = statistics.median(s.p99_ms for s in steady[-third:])
    p99s = [s.p99_ms for s in steady]
    return {
        "requests": requests,
        "requests_per_s": round(requests / sum(s.seconds for s in slices), 1),
        "non2xx": non2xx,
        "socket_errors": errors,
        "rss_mb_at_1_min": baseline.total_rss_mb,
        "rss_mb_at_end": final.total_rss_mb,
        "rss_mb_peak_after_1_min": peak.total_rss_mb,
        "rss_growth_after_1_min_pct": round(100 * growth, 2),
        "rss_peak_growth_after_1_min_pct": round(100 * peak_growth, 2),
        "rss_by_process_mb_at_1_min": baseline.by_process_mb,
        "rss_by_process_mb_at_end": final.by_process_mb,
        "p99_ms_median_first_third": round(first_p99, 1),
        "p99_ms_median_last_third": round(last_p99, 1),
        "p99_ms_drift": round(last_p99 / first_p99, 2),
        "p99_ms_min": round(min(p99s), 1),
        "p99_ms_median": round(statistics.median(p99s), 1),
        "p99_ms_max": round(max(p99s), 1),
        "p50_ms_median": round(statistics.median(s.p50_ms for s in steady), 1),
        "pass_no_errors": non2xx == 0 and errors == 0,
        "pass_rss_growth": growth <= MAX_RSS_GROWTH and peak_growth <= MAX_RSS_GROWTH,
        "pass_p99_stable": last_p99 <= MAX_P99_DRIFT * first_p99,
    }


def markdown(report: Report) -> str:
    m, s, st = report.machine, report.summary, report.settings
    verdict = all(v for k, v in s.items() if k.startswith("pass_"))
    lines = [
        f"# agbento soak ({st['minutes']} min, {st['clients']} clients, {st['when']})",
        "",
        f"**{'PASS' if verdict else 'FAIL'}**: "
        f"{s['requests']:,} requests ({s['requests_per_s']} req/s), "
        f"{s['non2xx']} non-2xx, {s['socket_errors']} socket errors; "
        f"RSS {s['rss_mb_at_1_min']} MB at 1 min -> {s['rss_mb_at_end']} MB at the end "
        f"({s['rss_growth_after_1_min_pct']:+}%, peak {s['rss_peak_growth_after_1_min_pct']:+}%); "
        f"p99 median {s['p99_ms_median_first_third']} ms in the first third after warm-up, "
        f"{s['p99_ms_median_last_third']} ms in the last (x{s['p99_ms_drift']}).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}, "
        f"Python {m['python']}. Load generator: {m['load_generator']} on the same machine. "
        f"**The machine was shared**: {st['machine_note']}",
        "",
        f"Model: `{report.model['tag']}` ({report.model['problem_type']}). Server: "
        f"`bentoml serve` with {st['service_env']}. Load: wrk, one thread, {st['clients']} "
        f"connections, back-to-back {st['slice_s']} s slices (`post.lua`), one row per "
        f"request, {st['distinct_rows']:,} distinct rows walked in order (no row repeats "
        "within a slice). RSS of every server process sampled every "
        f"{st['sample_s']} s.",
        "",
        "## Criteria",
        "",
        "| criterion | bound | measured | pass |",
        "| --- | --- | --- | --- |",
        f"| non-2xx answers and socket errors | 0 | {s['non2xx']} + {s['socket_errors']} | "
        f"{s['pass_no_errors']} |",
        f"| RSS growth after the first minute (end and peak) | <= {MAX_RSS_GROWTH:.0%} | "
        f"{s['rss_growth_after_1_min_pct']:+}%, {s['rss_peak_growth_after_1_min_pct']:+}% | "
        f"{s['pass_rss_growth']} |",
        f"| p99: median of the last third / first third (after warm-up) | <= {MAX_P99_DRIFT} | "
        f"{s['p99_ms_drift']} | {s['pass_p99_stable']} |",
        "",
        f"Slice p99 after warm-up: min {s['p99_ms_min']} ms, median {s['p99_ms_median']} ms, "
        f"max {s['p99_ms_max']} ms; median p50 {s['p50_ms_median']} ms.",
        "",
        "## RSS by process (MB)",
        "",
        "| process | at 1 min | at the end |",
        "| --- | ---: | ---: |",
    ]
    for name, at_1 in s["rss_by_process_mb_at_1_min"].items():
        lines.append(f"| {name} | {at_1} | {s['rss_by_process_mb_at_end'].get(name, '-')} |")
    lines += ["", f"![RSS and p99 over time]({st['name']}.png)", ""]
    return "\n".join(lines)


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    minutes = [s.at_s / 60 for s in report.samples]
    top.plot(minutes, [s.total_rss_mb for s in report.samples], label="all processes",
             linewidth=2)
    for name in report.samples[-1].by_process_mb:
        top.plot(minutes, [s.by_process_mb.get(name, float("nan")) for s in report.samples],
                 label=name, linewidth=1)
    top.set_ylabel("RSS (MB)")
    top.set_ylim(bottom=0)
    top.legend(fontsize=8, loc="center right")
    mids = [(s.start_s + s.seconds / 2) / 60 for s in report.slices]
    bottom.plot(mids, [s.p99_ms for s in report.slices], marker=".", label="p99")
    bottom.plot(mids, [s.p50_ms for s in report.slices], marker=".", label="p50")
    bottom.set_ylabel("latency per slice (ms)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("minutes")
    bottom.legend(fontsize=8)
    for axis in (top, bottom):
        axis.axvline(WARM_UP_S / 60, color="grey", linestyle=":", linewidth=1)
        axis.grid(True, alpha=0.3)
    fig.suptitle(f"agbento soak: {report.settings['clients']} clients, distinct rows, cache off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--slice-s", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--sample-s", type=float, default=5, help="seconds between RSS samples")
    parser.add_argument("--model", default=f"{DEMO_MODEL_NAME}:latest")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    parser.add_argument("--name", help="report file name (default: soak, or soak-<N>min)")
    parser.add_argument("--machine-note", default="other jobs ran on the same cores "
                        "during the run, so latency figures are noisy.",
                        help="what else ran on the machine (goes into the report)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk not found; install it with `make loadtest-deps`", file=sys.stderr)
        return 2

    name = args.name or ("soak" if args.minutes == 20 else f"soak-{args.minutes:g}min")
    card = ensure_model(args.model)
    seconds = int(args.minutes * 60)
    slices = max(1, seconds // args.slice_s)
    service_env = {"AGBENTO_MODEL": card.tag, "AGBENTO_CACHE_URL": "off"}
    report = Report(
        machine=machine(),
        model={"tag": card.tag, "problem_type": card.problem_type},
        settings={"name": name, "minutes": args.minutes, "clients": args.clients,
                  "slice_s": args.slice_s, "sample_s": args.sample_s,
                  "when": datetime.now(UTC).isoformat(timespec="seconds"),
                  "service_env": "default AGBENTO_* settings, AGBENTO_CACHE_URL=off",
                  "machine_note": args.machine_note},
    )
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="agbento-soak-") as work:
        bodies = Path(work) / "bodies.jsonl"
        # enough that wrk never wraps round within a slice at any plausible rate
        report.settings["distinct_rows"] = distinct_bodies(card, 100_000, bodies)
        port = free_port()
        server = Server("agbento", [str(bin_dir / "bentoml"), "serve", ".", "--host",
                                    "127.0.0.1", "--port", str(port)], port, service_env)
        url = f"{server.url}/predict"
        started = time.monotonic()
        try:
            with RssSampler(server, started, args.sample_s) as sampler:
                for number in range(slices):
                    start_s = time.monotonic() - started
                    got = wrk_slice(url, bodies, args.clients, args.slice_s)
                    elapsed = got["duration_us"] / 1e6
                    report.slices.append(Slice(
                        start_s=round(start_s, 1), seconds=round(elapsed, 2),
                        requests=got["requests"],
                        requests_per_s=round(got["requests"] / elapsed, 1),
                        non2xx=got["non2xx"], non2xx_by_status=got["non2xx_by_status"],
                        socket_errors=got["errors"], p50_ms=got["p50_ms"],
                        p99_ms=got["p99_ms"], max_ms=got["max_ms"]))
                    last = report.slices[-1]
                    rss = sampler.samples[-1].total_rss_mb if sampler.samples else 0
                    print(f"[{number + 1:>3}/{slices}] {start_s / 60:5.1f} min "
                          f"{last.requests_per_s:7.1f} req/s  p50 {last.p50_ms:6.1f}  "
                          f"p99 {last.p99_ms:7.1f} ms  non-2xx {last.non2xx}  "
                          f"errors {last.socket_errors}  RSS {rss:7.1f} MB", flush=True)
            report.samples = sampler.samples
        finally:
            server.stop()
    report.summary = summarise(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    plot(report, args.out / f"{name}.png")
    print(f"\nwrote {args.out / name}.json, .md, .png")
    print(json.dumps({k: v for k, v in report.summary.items() if not k.startswith("rss_by")},
                     indent=2))
    return 0 if all(v for k, v in report.summary.items() if k.startswith("pass_")) else 1


if __name__ == "__main__":
    sys.exit(main())
