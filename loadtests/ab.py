"""A/B of two server settings on the same rows: interleaved rounds, each round's ratio.

    python loadtests/ab.py --a AGBENTO_MONITORING=on --b AGBENTO_MONITORING=off \
        --max-cost single=3 --max-cost 1000-json=5 --name ab-monitoring
    python loadtests/ab.py --a AGBENTO_SHADOW_MODEL=agbento-demo:V2 --a AGBENTO_SHADOW_SAMPLE=0.1 \
        --b AGBENTO_SHADOW_MODEL= --metric agbento_shadow_requests_total --name ab-shadow

Two servers (`bentoml serve .`, cache off, fused unless --topology, the same model) start
once, A's settings on one and B's on the other (`NAME=` unsets NAME), and stay up. Each
round drives A and B in turn, A first in odd rounds and B first in even ones, with the same
requests: single rows (distinct one-row bodies) at 64 clients and 1,000-row JSON bodies at
4 (--runs), by wrk (bench_servers.measure, after a warm-up, both servers idle). Per kind:
every round's req/s of both, A/B, and the median of the rounds' A/B; A's cost is
1 - that median, held to --max-cost. --metric NAME: the counter's increase per label set
during each run, read from A's and B's /metrics. Writes results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests import bench_rows, bench_servers  # noqa: E402
from loadtests.bench import ensure_model, machine, single_rows  # noqa: E402
from loadtests.bench_report import SINGLE, md_row  # noqa: E402
from loadtests.bench_servers import Scenario, Server  # noqa: E402

KINDS = {"single": SINGLE, "1000-json": "1000-json"}  # --runs names -> scenario names


def parse_env(pairs: list[str]) -> dict[str, str | None]:
    """["NAME=VALUE", "OTHER="] -> {"NAME": "VALUE", "OTHER": None} (None: unset it)."""
    env: dict[str, str | None] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{pair!r}: expected NAME=VALUE")
        env[name] = value or None
    return env


def parse_runs(text: str) -> list[tuple[str, int]]:
    """"single:64,1000-json:4" -> [("single", 64), ("1000-json", 4)]."""
    runs = []
    for item in text.split(","):
        kind, _, clients = item.partition(":")
        if kind not in KINDS or not clients.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: expected KIND:CLIENTS, KIND one of "
                                             f"{', '.join(KINDS)}")
        runs.append((kind, int(clients)))
    return runs


def order(round_number: int) -> tuple[str, str]:
    """A first in odd rounds (1, 3, ...), B first in even ones."""
    return ("a", "b") if round_number % 2 else ("b", "a")


def counter_totals(text: str, name: str) -> dict[str, float]:
    """A counter's samples in a /metrics text, by their labels ("k=v,k=v", sorted)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    wanted = name if name.endswith("_total") else f"{name}_total"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == wanted:
                key = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def increase(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 3) for k, v in after.items()
            if v - before.get(k, 0.0)}


def summarize(runs: list[dict[str, Any]], kind: str, max_cost_pct: float | None
              ) -> dict[str, Any]:
    """Per round A's and B's req/s and A/B; the median ratio, A's cost, the verdict."""
    rounds = []
    for number in sorted({r["round"] for r in runs if r["kind"] == kind}):
        arm = {r["arm"]: r for r in runs if r["kind"] == kind and r["round"] == number}
        if {"a", "b"} <= set(arm):
            a, b = arm["a"]["requests_per_s"], arm["b"]["requests_per_s"]
            rounds.append({"round": number, "first": order(number)[0], "a": a, "b": b,
                           "ratio": round(a / b, 4) if b else None})
    ratios = [r["ratio"] for r in rounds if r["ratio"] is not None]
    median = round(statistics.median(ratios), 4) if ratios else None
    cost = round(100 * (1 - median), 2) if median is not None else None
    return {"kind": kind, "rounds": rounds, "median_ratio": median, "cost_pct": cost,
            "spread": [min(ratios), max(ratios)] if ratios else None,
            "max_cost_pct": max_cost_pct,
            "met": None if max_cost_pct is None or cost is None else cost <= max_cost_pct}


def scenarios(card: Any, work: Path) -> dict[str, Scenario]:
    """Distinct one-row bodies and one 1,000-row JSON body, as bench.py makes them."""
    rows = bench_rows.model_rows(card)
    bulk = work / "1000.json"
    bulk.write_bytes(bench_rows.body(rows.sample(1000, seed=1000), "json"))
    return {"single": single_rows(rows, card, work).scenario,
            "1000-json": Scenario("1000-json", 1000, bulk, bench_rows.JSON)}


def metrics(server: Server, names: list[str]) -> dict[str, dict[str, float]]:
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    return {name: counter_totals(text, name) for name in names}


def markdown(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    lines = [f"# A/B: {s['a_text']} vs {s['b_text']} ({s['when']})", "",
             f"Command: `{s['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python "
             f"{m['python']}; load generator {m['load_generator']} (one thread, "
             f"`loadtests/post.lua`) on the same machine. Load average (1, 5, 15 min) at start "
             f"{s['load_average_at_start']}, at end {s['load_average_at_end']}; each run's "
             "1-minute load average before it is in its row.", "",
             f"Model {s['model']}; both servers `bentoml serve` with {s['common_env']}, up "
             f"for the whole run (A: {s['a_text']}, topology {s['a_topology']}; B: "
             f"{s['b_text']}, topology {s['b_topology']}). Each round drives A and B in turn "
             "(A first in odd rounds, B first in even ones), each run "
             f"{s['seconds']} s after a 1 s warm-up, both servers idle before it. Single rows: "
             "distinct one-row bodies; 1,000 rows: one JSON body repeated. A's cost is "
             "1 - the median over rounds of A's req/s / B's.", ""]
    lines += ["| kind | clients | median A/B | A's cost | rounds' A/B (min-max) | target | "
              "verdict |", "| --- | ---: | ---: | ---: | --- | --- | --- |"]
    for summary in report["summaries"]:
        target = (f"cost <= {summary['max_cost_pct']:g}%"
                  if summary["max_cost_pct"] is not None else "-")
        verdict = "-" if summary["met"] is None else "met" if summary["met"] else "**missed**"
        spread = summary["spread"]
        lines.append(f"| {summary['kind']} | {summary['clients']} | {summary['median_ratio']} | "
                     f"{summary['cost_pct']}% | "
                     f"{f'{spread[0]:.3f}-{spread[1]:.3f}' if spread else '-'} | {target} | "
                     f"{verdict} |")
    lines += ["", "| round | kind | arm | clients | req/s | rows/s | p50 ms | p99 ms | non-2xx "
              "| server CPU % | peak RSS MB | load before |" + (" metrics |" if s["metrics"]
                                                                else ""),
              "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
              + (" --- |" if s["metrics"] else "")]
    for r in report["runs"]:
        extra = (" " + "; ".join(f"{name}: {json.dumps(v)}" for name, v in
                                 r.get("metrics", {}).items()) + " |") if s["metrics"] else ""
        lines.append(md_row(r["round"], r["kind"], r["arm"].upper(), r["concurrency"],
                            f"{r['requests_per_s']:.0f}", f"{r['rows_per_s']:.0f}",
                            f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                            r["non2xx"] + r["socket_errors"], f"{r['server_cpu_pct']:.0f}",
                            f"{r['server_peak_rss_mb']:.0f}", r["load_before"]) + extra)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", action="append", default=[], metavar="NAME=VALUE",
                        help="A's settings (repeatable; NAME= unsets NAME)")
    parser.add_argument("--b", action="append", default=[], metavar="NAME=VALUE",
                        help="B's settings (repeatable)")
    parser.add_argument("--serve-a", default=".", metavar="DIR",
                        help="what A serves: `bentoml serve DIR` (another checkout of the "
                        "project, with --a PYTHONPATH=DIR, to compare code versions)")
    parser.add_argument("--serve-b", default=".", metavar="DIR", help="what B serves")
    parser.add_argument("--bin-a", type=Path, metavar="DIR", help="the folder of A's `bentoml` "
                        "command (another venv's bin, to compare library versions); default: "
                        "this Python's")
    parser.add_argument("--bin-b", type=Path, metavar="DIR", help="the same for B")
    parser.add_argument("--model", default="agbento-demo:latest", help="a stored model's tag")
    parser.add_argument("--topology", default="fused", choices=["fused", "split"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10, help="per run")
    parser.add_argument("--runs", type=parse_runs, default=parse_runs("single:64,1000-json:4"),
                        help="KIND:CLIENTS, comma-separated (single:64,1000-json:4)")
    parser.add_argument("--max-cost", action="append", default=[], metavar="KIND=PCT",
                        help="A's most cost against B, in %% of B's req/s (repeatable)")
    parser.add_argument("--metric", action="append", default=[], metavar="NAME",
                        help="a counter read from /metrics after every run (repeatable)")
    parser.add_argument("--name", default="ab")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = parser.parse_args(argv)
    envs = {"a": parse_env(args.a), "b": parse_env(args.b)}
    max_cost = {kind: float(pct) for kind, _, pct in (x.partition("=") for x in args.max_cost)}
    text = {arm: " ".join([*([f"`{bin_dir or ''}{'/' if bin_dir else ''}bentoml serve {target}`"]
                             if target != "." or bin_dir else []),
                           *(f"{k}={v or '(unset)'}" for k, v in env.items())]) or "(defaults)"
            for arm, env, target, bin_dir in (("a", envs["a"], args.serve_a, args.bin_a),
                                              ("b", envs["b"], args.serve_b, args.bin_b))}
    card = ensure_model(args.model)
    common = {"AGBENTO_MODEL": card.tag, "AGBENTO_CACHE_URL": "off",
              "AGBENTO_TOPOLOGY": args.topology}
    settings: dict[str, Any] = {
        "command": " ".join(["python loadtests/ab.py", *(sys.argv[1:] if argv is None else argv)]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "model": card.tag,
        "a_text": text["a"], "b_text": text["b"], "rounds": args.rounds,
        "seconds": args.seconds, "metrics": args.metric,
        "common_env": " ".join(f"{k}={v}" for k, v in common.items()),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    runs: list[dict[str, Any]] = []
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="agbento-ab-") as work:
        kinds = scenarios(card, Path(work))
        try:
            for arm in ("a", "b"):
                port = bench_servers.free_port()
                target = getattr(args, f"serve_{arm}")
                command = bench_servers.bentoml_serve(target, port)
                if getattr(args, f"bin_{arm}"):
                    command[0] = str(getattr(args, f"bin_{arm}") / "bentoml")
                servers[arm] = Server(arm.upper(), command, port, {**common, **envs[arm]})
                found = bench_servers.topology_of(servers[arm])
                settings[f"{arm}_topology"] = found["effective"]
                settings[f"{arm}_cold_start_s"] = servers[arm].cold_start_s
            for number in range(1, args.rounds + 1):
                for kind, clients in args.runs:
                    for arm in order(number):
                        server, scenario = servers[arm], kinds[kind]
                        for each in servers.values():
                            bench_servers.wait_idle(each)
                        problem, one_request_s = bench_servers.probe(server, scenario)
                        if problem is not None:
                            raise SystemExit(f"{arm}: {kind}: {problem}")
                        before = metrics(server, args.metric)
                        load = round(os.getloadavg()[0], 2)
                        run = bench_servers.measure(server, scenario, clients, args.seconds,
                                                    one_request_s)
                        after = metrics(server, args.metric)
                        runs.append({"round": number, "arm": arm, "kind": kind,
                                     "load_before": load, **asdict(run),
                                     "metrics": {n: increase(before.get(n, {}), after.get(n, {}))
                                                 for n in args.metric}})
        finally:
            for server in servers.values():
                server.stop()
    settings["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    summaries = [{**summarize(runs, kind, max_cost.get(kind)), "clients": clients}
                 for kind, clients in args.runs]
    report = {"settings": settings, "machine": machine(), "summaries": summaries, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(report))
    for summary in summaries:
        print(f"{summary['kind']}: median A/B {summary['median_ratio']} (cost "
              f"{summary['cost_pct']}%), rounds {[r['ratio'] for r in summary['rounds']]}"
              + ("" if summary["met"] is None else
                 f" target <= {summary['max_cost_pct']:g}%: "
                 f"{'met' if summary['met'] else 'MISSED'}"))
    print(f"wrote {args.out / args.name}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
