"""The benchmark's report: what ran, the same-run ratios beside issues 14's, 17's and 27's
targets, written as JSON, Markdown and a plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.bench_servers import OpenRun, Run

SINGLE = "single-json distinct"
BULK_CLIENTS = 4
TARGET_CLIENTS = 64


@dataclass
class ModelResult:
    key: str
    tag: str
    problem_type: str
    models: str
    features: str
    rows_source: str
    rows_note: str
    in_process: dict[str, dict[str, float]] = field(default_factory=dict)
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    batch_client: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    open_loop: list[OpenRun] = field(default_factory=list)

    def run(self, server: str, scenario: str, concurrency: int) -> Run | None:
        return next((r for r in self.runs if (r.server, r.scenario, r.concurrency)
                     == (server, scenario, concurrency)), None)

    def limit(self, rows: int) -> float | None:
        """In-process rows/s of the model at `rows` rows per call."""
        return self.in_process.get(str(rows), {}).get("rows_per_s")

    def agbento_servers(self) -> list[str]:
        return [name for name in self.servers if name.startswith("agbento")]

    def peer_servers(self) -> list[str]:
        """Other servers on the same predictor (issue 27), the seed-style one not counted."""
        return [name for name, info in self.servers.items() if info.get("kind") == "peer"]

    def best_peer(self, scenario: str, concurrency: int) -> Run | None:
        """The peer run with the most rows/s in a scenario, if any peer ran it."""
        runs = [r for name in self.peer_servers()
                if (r := self.run(name, scenario, concurrency)) is not None]
        return max(runs, key=lambda r: r.rows_per_s, default=None)

    def peak(self, server: str) -> float | None:
        """The most single-row requests/s the server answered at any client count."""
        return max((r.requests_per_s for r in self.runs
                    if r.server == server and r.scenario == SINGLE), default=None)


@dataclass
class Report:
    machine: dict[str, Any]
    settings: dict[str, Any]
    models: list[ModelResult] = field(default_factory=list)
    echo_servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    echoes: list[Run] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def echo(self, name: str, concurrency: int = TARGET_CLIENTS) -> Run | None:
        return next((r for r in self.echoes
                     if r.server == name and r.concurrency == concurrency), None)


# Issue 14: bulk scenarios as a share of the model in-process on the same rows per call.
BULK_TARGETS: list[tuple[str, str, float | None]] = [
    ("1000-json", "1,000-row JSON", 0.60),
    ("1000-csv", "1,000-row CSV", None),
    ("1000-parquet", "1,000-row Parquet", 0.80),
    ("1000-arrow", "1,000-row Arrow", 0.80),
    ("1000-arrow accept-arrow", "1,000-row Arrow, Arrow answer", None),
    ("1000-parquet accept-parquet", "1,000-row Parquet, Parquet answer", None),
    ("10000-json", "10,000-row JSON", None),
    ("10000-parquet", "10,000-row Parquet", None),
    ("10000-arrow", "10,000-row Arrow", 0.85),
    ("10000-arrow accept-arrow", "10,000-row Arrow, Arrow answer", None),
]
BATCH_TARGETS = {"http": ("batch client over HTTP (Parquet in, Parquet out)", 0.60),
                 "local": ("batch client --local", 0.90)}


def _row(model: str, issue: str, what: str, figure: float | None, target: str,
         met: bool | None, detail: str, unit: str = "share") -> dict[str, Any]:
    """One figure beside its target; `unit`: share (of a limit), times, count or ms."""
    return {"model": model, "issue": issue, "what": what, "figure": figure, "unit": unit,
            "target": target, "met": met, "detail": detail}


def targets(report: Report) -> list[dict[str, Any]]:
    """Every figure the issues set a target for (and its neighbours), as same-run ratios."""
    rows: list[dict[str, Any]] = []
    for model in report.models:
        for server in model.agbento_servers():
            for scenario, what, target in BULK_TARGETS:
                run, limit = model.run(server, scenario, BULK_CLIENTS), model.limit(
                    int(scenario.split("-")[0]))
                if run is None or not limit:
                    continue
                share = round(run.rows_per_s / limit, 3)
                bad = run.non2xx + run.socket_errors
                rows.append(_row(model.key, "14", f"{what}, {server}, {BULK_CLIENTS} clients",
                                 share, f">= {target:.0%}" if target else "-",
                                 share >= target if target else None,
                                 f"{run.rows_per_s:.0f} rows/s vs {limit:.0f} in-process"
                                 + (f"; {bad} non-2xx/errors {run.non2xx_by_status}"
                                    if bad else "")))
        for kind, (what, target) in BATCH_TARGETS.items():
            result = model.batch_client.get(kind)
            limit = model.limit(result["chunk_rows"]) if result else None
            if not result or not limit or not result.get("rows_per_s"):
                continue
            share = round(result["rows_per_s"] / limit, 3)
            rows.append(_row(model.key, "14", f"{what}, {result['rows']:,} rows", share,
                             f">= {target:.0%}", share >= target,
                             f"{result['rows_per_s']:.0f} rows/s vs {limit:.0f} in-process "
                             f"at {result['chunk_rows']:,} rows per call"))
        rows += single_row_targets(report, model)
        rows += peer_targets(model)
    return rows


PEER_SINGLE_TIMES, PEER_BULK_TIMES, OPEN_LOOP_P99_MS = 1.5, 1.2, 25.0


def peer_targets(model: ModelResult) -> list[dict[str, Any]]:
    """Issue 27: agbento against the best peer on the same rows, and its open-loop p99 at
    half its own peak."""
    rows: list[dict[str, Any]] = []
    for server in model.agbento_servers():
        for scenario, clients, what, times in (
                (SINGLE, TARGET_CLIENTS, f"single row, {TARGET_CLIENTS} clients",
                 PEER_SINGLE_TIMES),
                ("1000-json", BULK_CLIENTS, f"1,000-row JSON, {BULK_CLIENTS} clients",
                 PEER_BULK_TIMES)):
            ours, best = model.run(server, scenario, clients), model.best_peer(scenario, clients)
            if ours is None or best is None or not best.rows_per_s:
                continue
            figure = round(ours.rows_per_s / best.rows_per_s, 2)
            rows.append(_row(model.key, "27", f"{what}, {server} vs the best peer", figure,
                             f">= {times}x", figure >= times,
                             f"{ours.rows_per_s:.0f} vs {best.rows_per_s:.0f} rows/s "
                             f"({best.server})", "times"))
        half = next((r for r in model.open_loop if r.server == server
                     and r.load == open_load(0.5, "own")), None)
        if half is not None:
            rows.append(_row(model.key, "27", f"open loop, {server}, {half.load} "
                             f"({half.offered_per_s:.0f}/s): p99", half.p99_ms,
                             f"<= {OPEN_LOOP_P99_MS:.0f} ms",
                             half.p99_ms <= OPEN_LOOP_P99_MS and half.errors == 0,
                             f"p50 {half.p50_ms:.1f}, p99.9 {half.p999_ms:.1f} ms; "
                             f"{half.errors} errors", "ms"))
    return rows


def open_load(share: float, whose: str = "own") -> str:
    """The label of an open-loop rate: "50% of own peak", "50% of agbento's peak"."""
    return f"{share:.0%} of own peak" if whose == "own" else f"{share:.0%} of {whose}'s peak"


def single_row_targets(report: Report, model: ModelResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base = model.run("baseline", SINGLE, TARGET_CLIENTS)
    split_echo, fused_echo = report.echo("echo split"), report.echo("echo fused")
    c = TARGET_CLIENTS
    for server in model.agbento_servers():
        ours = model.run(server, SINGLE, c)
        if ours is None:
            continue
        info = model.servers[server]
        label = f"single row, {server}, {c} clients"
        if info.get("effective") != info.get("asked"):
            label += f" (ran {info.get('effective')})"
        if split_echo:
            share = round(ours.requests_per_s / split_echo.requests_per_s, 3)
            rows.append(_row(model.key, "14", f"{label} vs bare split echo", share, ">= 85%",
                             share >= 0.85, f"{ours.requests_per_s:.0f} vs "
                             f"{split_echo.requests_per_s:.0f} req/s"))
        if fused_echo:  # issue 17's target is for the fused topology
            fused = info.get("asked") == "fused"
            share = round(ours.requests_per_s / fused_echo.requests_per_s, 3)
            rows.append(_row(model.key, "17", f"{label} vs bare fused echo", share,
                             ">= 50%" if fused else "-", share >= 0.5 if fused else None,
                             f"{ours.requests_per_s:.0f} vs "
                             f"{fused_echo.requests_per_s:.0f} req/s"))
        if base and base.requests_per_s:
            times = round(ours.requests_per_s / base.requests_per_s, 2)
            rows.append(_row(model.key, "17", f"{label} vs the seed-style server", times,
                             ">= 16x (stretch 20x)", times >= 16,
                             f"{ours.requests_per_s:.0f} vs {base.requests_per_s:.0f} req/s",
                             "times"))
        bad = ours.non2xx + ours.socket_errors
        rows.append(_row(model.key, "17", f"{label}: non-2xx and socket errors", bad, "0",
                         bad == 0, str(ours.non2xx_by_status or ""), "count"))
        rows.append(_row(model.key, "17", f"{label}: p99", ours.p99_ms, "<= 150 ms",
                         ours.p99_ms <= 150, f"p50 {ours.p50_ms:.1f} ms", "ms"))
    return rows


def report_from_json(data: dict[str, Any]) -> Report:
    """A report read back from its JSON (to render it again)."""
    models = []
    for m in data["models"]:
        runs = [Run(**r) for r in m.pop("runs")]
        open_loop = [OpenRun(**r) for r in m.pop("open_loop", [])]
        models.append(ModelResult(**m, runs=runs, open_loop=open_loop))
    return Report(machine=data["machine"], settings=data["settings"], models=models,
                  echo_servers=data["echo_servers"],
                  echoes=[Run(**r) for r in data["echoes"]], targets=data["targets"])


# -- Markdown -----------------------------------------------------------------------------


def md_row(*cells: object) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _figure(row: dict[str, Any]) -> str:
    value, unit = row["figure"], row.get("unit", "share")
    if value is None:
        return "-"
    if unit == "share":
        return f"{value:.0%}"
    if unit == "times":
        return f"{value:.1f}x"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value}"


def _verdict(met: bool | None) -> str:
    return "-" if met is None else "met" if met else "**missed**"


def _runs_table(runs: list[Run], limits: dict[str, dict[str, float]] | None) -> list[str]:
    lines = ["| server | scenario | clients | req/s | rows/s | in-process rows/s | share | "
             "p50 ms | p99 ms | non-2xx | server CPU % | server peak RSS MB | wrk CPU % |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: |"]
    for r in runs:
        batch = r.rows_per_request if r.rows_per_request > 1 else r.concurrency
        limit = (limits or {}).get(str(batch), {}).get("rows_per_s")
        share = f"{r.rows_per_s / limit:.0%}" if limit else "-"
        lines.append(
            f"| {r.server} | {r.scenario} | {r.concurrency} | {r.requests_per_s:.0f} | "
            f"{r.rows_per_s:.0f} | {f'{limit:.0f}' if limit else '-'} | {share} | "
            f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.non2xx + r.socket_errors} | "
            f"{r.server_cpu_pct:.0f} | {r.server_peak_rss_mb:.0f} | {r.wrk_cpu_pct:.0f} |")
    return lines


def busy_before(report: Report) -> bool:
    """Other work was running when the benchmark started (its 1-minute load average)."""
    load = report.settings.get("load_average_at_start") or [0.0]
    return load[0] > (report.machine.get("cores") or 1)


def markdown(report: Report) -> str:
    m, s = report.machine, report.settings
    lines = [
        f"# agbento benchmark ({s['mode']}, {s['when']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}, "
        f"Python {m['python']}. Load generator: {m['load_generator']} (one thread, "
        f"`loadtests/post.lua`), on the same machine. Each run {s['seconds']} s after a 1 s "
        f"warm-up. {s['note']}",
        "",
        *([f"Command: `{s['command']}`", ""] if s.get("command") else []),
        f"Load average (1, 5, 15 min) at start {s.get('load_average_at_start', '-')}, at end "
        f"{s.get('load_average_at_end', '-')}: " + (
            "above the core count before the run began: other work shared the cores, and "
            "every figure is noisy." if busy_before(report) else
            "the machine was otherwise idle when the run began."),
        "",
        f"Servers: `bentoml serve .` with {s['service_env']}; the topology asked for by "
        "`AGBENTO_TOPOLOGY` and the one found in the process tree (or /model/info) are both "
        "listed. Baseline: the seed-style FastAPI + uvicorn server, 1 worker, `predict` + "
        "`predict_proba` per request (loadtests/baseline/app.py). Bare echoes: "
        "loadtests/echo_split.py and loadtests/echo_fused.py, no model, no validation, no "
        "middleware.",
        "",
        "Every share is a same-run ratio to the model in-process "
        "(`predict_proba`, `predict` for regression) on the same rows per call: for single "
        "rows, a batch as large as the number of clients; for bulk, the request's rows; for "
        "the batch client, one chunk. In-process runs in the benchmark's own process with "
        f"OMP_NUM_THREADS={s.get('omp_num_threads', 'unset')}, as the service's model worker "
        "(AGBENTO_MODEL_THREADS); the seed-style baseline keeps the libraries' default.",
        "",
        "## Targets (issues 14, 17 and 27)",
        "",
        "| model | issue | what | figure | target | verdict | detail |",
        "| --- | --- | --- | ---: | --- | --- | --- |",
    ]
    for t in report.targets:
        lines.append(f"| {t['model']} | {t['issue']} | {t['what']} | {_figure(t)} | "
                     f"{t['target']} | {_verdict(t['met'])} | {t['detail']} |")
    lines += ["", "## Single rows against the bare echoes (issue 17's table)", "",
              "| server | workers | clients | req/s | p50 ms | p99 ms | non-2xx |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in report.echoes:
        if r.concurrency == TARGET_CLIENTS:
            lines.append(f"| {r.server} (bare) | {report.echo_servers[r.server]['workers']} | "
                         f"{r.concurrency} | {r.requests_per_s:.0f} | {r.p50_ms:.1f} | "
                         f"{r.p99_ms:.1f} | {r.non2xx + r.socket_errors} |")
    for model in report.models:
        for name, info in model.servers.items():
            r = model.run(name, SINGLE, TARGET_CLIENTS)
            if r:
                lines.append(f"| {name}, {model.key} model | {info.get('workers_text', '-')} | "
                             f"{r.concurrency} | {r.requests_per_s:.0f} | {r.p50_ms:.1f} | "
                             f"{r.p99_ms:.1f} | {r.non2xx + r.socket_errors} |")
    for model in report.models:
        lines += model_section(model)
    if report.echoes:
        lines += ["", "## Bare echoes", ""] + _runs_table(report.echoes, None)
        for name, info in report.echo_servers.items():
            lines.append(f"\n`{name}`: {info['command']}, workers {info['workers']}, "
                         f"cold start {info['cold_start_s']} s.")
    return "\n".join(lines) + "\n"


def model_section(model: ModelResult) -> list[str]:
    lines = ["", f"## Model `{model.tag}` ({model.key})", "",
             f"{model.problem_type}; models: {model.models}. Features: {model.features}.", "",
             f"Rows: {model.rows_source}. {model.rows_note}", "",
             "### In-process (the limit)", "",
             "Timed before and after the servers ran; the faster is the limit.", "",
             "| rows per call | ms | rows/s | each time rows/s |", "| ---: | ---: | ---: | --- |"]
    for size, v in sorted(model.in_process.items(), key=lambda kv: int(kv[0])):
        each = ", ".join(f"{x:.0f}" for x in v.get("measured_rows_per_s", []))
        lines.append(f"| {size} | {v['ms']} | {v['rows_per_s']:.0f} | {each} |")
    lines += ["", "### Servers", "", "| server | topology asked | found | workers | "
              "cold start s |", "| --- | --- | --- | --- | ---: |"]
    for name, info in model.servers.items():
        lines.append(f"| {name} | {info.get('asked', '-')} | {info.get('effective', '-')} | "
                     f"{info.get('workers_text', '-')} | {info['cold_start_s']} |")
    lines += ["", "### Over HTTP", ""] + _runs_table(model.runs, model.in_process)
    lines += peers_section(model) + open_loop_section(model)
    if model.batch_client:
        lines += ["", "### Batch client (`python -m agbento.batch`, Parquet in, Parquet out)", "",
                  "| how | rows | chunk rows | in flight | seconds | rows/s | retries |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for kind, v in model.batch_client.items():
            if "error" in v:
                lines.append(f"| {kind} | failed: {v['error']} | | | | | |")
                continue
            lines.append(f"| {kind} ({v['where']}) | {v['rows']} | {v['chunk_rows']} | "
                         f"{v['concurrency']} | {v['seconds']} | {v['rows_per_s']} | "
                         f"{v.get('retries', '-')} |")
    if model.skipped:
        lines += ["", "### Not run (the server refused the probe, or it failed)", "",
                  "| server | scenario | why |", "| --- | --- | --- |"]
        lines += [f"| {x['server']} | {x['scenario']} | {x['reason'].replace('|', '/')} |"
                  for x in model.skipped]
    return lines


def peers_section(model: ModelResult) -> list[str]:
    """Issue 27: every server on the same predictor, rows and load side by side."""
    names = [*model.agbento_servers(), *model.peer_servers(),
             *(["baseline"] if "baseline" in model.servers else [])]
    if not model.peer_servers():
        return []
    clients = sorted({r.concurrency for r in model.runs if r.scenario == SINGLE})
    lines = ["", "### Against the other servers (issue 27)", "",
             "Same stored predictor, same rows, same load generator, same run. A peer runs "
             "only after answering a sample of rows as agbento does (all in one request, "
             "then each alone, 8 at a time). Single rows: req/s (p99 ms); 1,000-row JSON "
             f"bodies at {BULK_CLIENTS} clients: rows/s (p99 ms). RSS: the peak of the "
             "server's whole process tree (shared pages counted once per process).", "",
             "| server | " + " | ".join(f"{c} clients" for c in clients)
             + " | 1,000 rows | errors | peak RSS MB | start-up s |",
             "| --- | " + " | ".join("---:" for _ in clients) + " | ---: | ---: | ---: | ---: |"]
    for name in names:
        runs = [r for r in model.runs if r.server == name]
        if not runs:
            continue
        cells = []
        for c in clients:
            r = model.run(name, SINGLE, c)
            cells.append(f"{r.requests_per_s:.0f} ({r.p99_ms:.0f})" if r else "-")
        bulk = model.run(name, "1000-json", BULK_CLIENTS)
        cells.append(f"{bulk.rows_per_s:.0f} ({bulk.p99_ms:.0f})" if bulk else "-")
        errors = sum(r.non2xx + r.socket_errors for r in runs)
        rss = max(r.server_peak_rss_mb for r in runs)
        info = model.servers.get(name, {})
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {errors} | {rss:.0f} | {info.get('cold_start_s', '-')} |")
    lines += ["", "| server | how it runs | its answers | venv (install s, MB) | versions |",
              "| --- | --- | --- | --- | --- |"]
    for name in model.peer_servers():
        info = model.servers[name]
        venv = info.get("venv") or {}
        versions = ", ".join(f"{k} {v}" for k, v in (venv.get("versions") or {}).items())
        lines.append(f"| {name} | {info.get('config', '-')} | {info.get('answers', '-')} | "
                     f"{venv.get('install_s', '-')} s, {venv.get('size_mb', '-')} MB | "
                     f"{versions} |")
    return lines


def open_loop_section(model: ModelResult) -> list[str]:
    if not model.open_loop:
        return []
    lines = ["", "### Open loop: latency at a fixed offered rate (issue 27)", "",
             "Requests sent at a constant rate whatever the answers do (loadtests/openloop.c); "
             "each latency runs from the request's intended send time, so a stall is charged "
             "to every request it held back (no coordinated omission). Rates are shares of "
             "the server's own closed-loop single-row peak in this run, and for every server "
             "half of agbento's best peak. Errors: connect/read/write errors, timeouts and "
             "requests not answered within 30 s after the window; late: sent over 1 ms after "
             "they were due (all connections busy).", "",
             "| server | rate | offered /s | answered /s | p50 ms | p90 ms | p99 ms | "
             "p99.9 ms | max ms | errors | non-2xx | late | connections | server CPU % |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: |"]
    for r in model.open_loop:
        lines.append(f"| {r.server} | {r.load} | {r.offered_per_s:.0f} | "
                     f"{r.answered_per_s:.0f} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | "
                     f"{r.p99_ms:.1f} | {r.p999_ms:.1f} | {r.max_ms:.0f} | {r.errors} | "
                     f"{r.non2xx} | {r.late} | {r.connections} | {r.server_cpu_pct:.0f} |")
    return lines


# -- plot ---------------------------------------------------------------------------------


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(1, len(report.models))
    panels = 3 if any(m.open_loop for m in report.models) else 2
    fig, axes = plt.subplots(count, panels, figsize=(6 * panels, 4 * count), squeeze=False)
    for row, model in zip(axes, report.models, strict=False):
        left, right = row[0], row[1]
        if panels == 3:
            plot_open_loop(row[2], model)
        series: dict[str, list[Run]] = {}
        for r in model.runs:
            if r.scenario == SINGLE:
                info = model.servers.get(r.server, {})
                ran = info.get("effective")
                label = r.server if info.get("asked") in ("-", ran, None) \
                    else f"{r.server} (ran {ran})"
                series.setdefault(label, []).append(r)
        for r in report.echoes:
            series.setdefault(f"{r.server} (bare)", []).append(r)
        for name, runs in series.items():
            runs.sort(key=lambda r: r.concurrency)
            style = "--" if "bare" in name else "-"
            xs = [r.concurrency for r in runs]
            left.plot(xs, [r.requests_per_s for r in runs], style, marker="o", label=name)
            right.plot(xs, [r.p99_ms for r in runs], style, marker="o", label=name)
        for axis, title in ((left, "single-row requests/s"), (right, "p99 latency (ms)")):
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xlabel("concurrent clients (distinct rows, cache off)")
            axis.set_title(f"{model.key} model: {title}")
            axis.legend(fontsize=8)
            axis.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_open_loop(axis: Any, model: ModelResult) -> None:
    """p99 against the offered rate, one line per server (its own-peak shares)."""
    series: dict[str, list[OpenRun]] = {}
    for r in model.open_loop:
        series.setdefault(r.server, []).append(r)
    for name, runs in series.items():
        runs.sort(key=lambda r: r.offered_per_s)
        axis.plot([r.offered_per_s for r in runs], [max(r.p99_ms, 0.01) for r in runs],
                  marker="o", label=name)
    axis.axhline(OPEN_LOOP_P99_MS, color="grey", linestyle=":", label="25 ms")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("offered single-row requests/s (open loop)")
    axis.set_title(f"{model.key} model: open-loop p99 (ms) from intended send time")
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
