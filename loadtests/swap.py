"""Live swap under load: a stage promoted back and forth while single rows are answered.

    python loadtests/swap.py --versions V1,V2 [--model agbento-demo] [--topologies fused,split]
        [--clients 16,64] [--cycles 3] [--interval 10] [--lead 10] [--poll 1] [--name swap]

For each topology and client count: V1 is put in NAME's production stage (the stage
registry's API, as `agbento models promote` without its trial load), a server serves
`NAME@production` (`bentoml serve .`, cache off, AGBENTO_MODEL_POLL_S=--poll) and
`loadtests/openloop.c -C` keeps --clients connections busy with distinct one-row bodies
(closed loop, as wrk; C, so the generator takes little CPU from the server) and logs every
answer: its send and completion time, status and `X-Agbento-Model`. After --lead seconds
the stage goes to V2, back to V1, and so on, --cycles times there and back, every
--interval seconds. The server's processes' RSS (psutil) is sampled every 100 ms.

Per promotion: when each worker logged "model swapped" (and how long it loaded), the
longest time without a 200 from the promotion to half a second after the last worker
swapped, beside the longest in a window as long just before the promotion (no swap), the
non-2xx answers, the answers naming the old version among requests sent after the last
worker swapped (0 expected) and among those completed after it, and the RSS before the
promotion, at its peak during the swap and settled before the next one. Writes
results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests import bench_rows, bench_servers  # noqa: E402
from loadtests.bench import ensure_model, machine, single_rows  # noqa: E402
from loadtests.bench_report import md_row  # noqa: E402
from loadtests.bench_servers import Server  # noqa: E402

SWAPPED = re.compile(r"model swapped: (\S+) -> (\S+) \(.*loaded and warmed in ([0-9.]+) s\)")
AFTER_LAST_SWAP_S = 0.5  # the swap window ends this long after the last worker swapped


@dataclass(frozen=True)
class Answer:
    sent: float  # wall-clock seconds
    done: float
    status: int  # 0: no answer (connection error, timeout)
    model: str | None


def read_answers(text: str) -> list[Answer]:
    """openloop's answers log: "SENT_US DONE_US STATUS MODEL" a line, by completion."""
    answers = []
    for line in text.splitlines():
        sent, done, status, model = line.split()
        answers.append(Answer(int(sent) / 1e6, int(done) / 1e6, int(status),
                              None if model == "-" else model))
    return sorted(answers, key=lambda a: a.done)


def swap_lines(log: str) -> list[dict[str, Any]]:
    """The "model swapped" lines of a server log: when, which process, from, to, seconds."""
    found = []
    for line in log.splitlines():
        if "model swapped" not in line or not line.startswith("{"):
            continue
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        match = SWAPPED.search(str(fields.get("msg", "")))
        if match:
            found.append({"ts": datetime.fromisoformat(fields["ts"]).timestamp(),
                          "pid": fields.get("pid"), "old": match[1], "new": match[2],
                          "load_s": float(match[3])})
    return sorted(found, key=lambda s: s["ts"])


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] with none of the (sorted) `times` in it."""
    inside = [t for t in times if start <= t <= end]
    edges = [start, *inside, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


def rss_between(series: list[tuple[float, int]], start: float, end: float) -> list[int]:
    return [rss for t, rss in series if start <= t <= end]


def analyse(promotions: list[dict[str, Any]], swaps: list[dict[str, Any]],
            answers: list[Answer], series: list[tuple[float, int]], run_end: float,
            roles: dict[int, str]) -> list[dict[str, Any]]:
    """One entry per promotion (see the module's docstring)."""
    ok_times = [a.done for a in answers if a.status == 200]
    out = []
    for i, promotion in enumerate(promotions):
        at, old, new = promotion["at"], promotion["old"], promotion["new"]
        until = promotions[i + 1]["at"] if i + 1 < len(promotions) else run_end
        mine = [s for s in swaps if at <= s["ts"] < until and s["new"] == new]
        entry: dict[str, Any] = {
            "to": new, "from": old, "at": round(at, 3),
            "workers": [{"pid": s["pid"], "role": roles.get(s["pid"], "?"),
                         "after_s": round(s["ts"] - at, 3), "load_s": s["load_s"]}
                        for s in mine]}
        last = max((s["ts"] for s in mine), default=None)
        window_end = (last + AFTER_LAST_SWAP_S) if last is not None else until
        length = window_end - at
        entry["last_swap_after_s"] = round(last - at, 3) if last is not None else None
        entry["window_s"] = round(length, 3)
        entry["longest_gap_ms"] = round(1000 * longest_gap(ok_times, at, window_end), 1)
        entry["control_gap_ms"] = round(1000 * longest_gap(ok_times, at - length, at), 1)
        during = [a for a in answers if at <= a.done < until]
        entry["non2xx"] = sum(a.status not in (200, 0) for a in during)
        entry["errors"] = sum(a.status == 0 for a in during)
        if last is not None:  # until the next promotion (which may bring `old` back)
            entry["old_sent_after_last_swap"] = sum(
                a.model == old for a in answers if last < a.sent < until)
            entry["old_done_after_last_swap"] = sum(
                a.model == old for a in answers if last < a.done < until)
        before = [rss for t, rss in series if t < at]
        peak = rss_between(series, at, window_end + 1.0)
        settled = rss_between(series, until - 1.0, until)
        mb = 2**20
        entry["rss_mb"] = {"before": round(before[-1] / mb, 1) if before else None,
                           "peak": round(max(peak) / mb, 1) if peak else None,
                           "after": round(settled[-1] / mb, 1) if settled else None}
        out.append(entry)
    return out


def roles_of(server: Server) -> dict[int, str]:
    """pid -> "api" or "model" for BentoML's worker processes."""
    found = {}
    for proc in server.processes():
        try:
            command = proc.cmdline()
        except Exception:  # noqa: BLE001 - a process gone meanwhile
            continue
        if "--service-name" in command:
            name = command[command.index("--service-name") + 1]
            found[proc.pid] = "model" if name == "agbento-model" else "api"
    return found


def one_run(args: argparse.Namespace, topology: str, clients: int, name: str,
            versions: tuple[str, str], scenario: bench_servers.Scenario,
            work: Path) -> dict[str, Any]:
    from agbento.models.stages import StageRegistry

    registry = StageRegistry.default()
    registry.promote(name, versions[0], by="loadtests/swap.py")
    env = {"AGBENTO_MODEL": f"{name}@production", "AGBENTO_MODEL_POLL_S": str(args.poll),
           "AGBENTO_CACHE_URL": "off", "AGBENTO_TOPOLOGY": topology}
    port = bench_servers.free_port()
    server = Server(f"{topology} c={clients}", bench_servers.bentoml_serve(".", port), port, env)
    log = work / f"answers-{topology}-{clients}.txt"
    swaps_n = 2 * args.cycles
    seconds = int(args.lead + swaps_n * args.interval)
    summary: dict[str, Any] = {}
    promotions: list[dict[str, Any]] = []
    try:
        roles = roles_of(server)
        load_before = [round(x, 2) for x in os.getloadavg()]

        def load() -> None:
            summary.update(bench_servers.drive(f"{server.url}{scenario.path}", scenario,
                                               clients, seconds, answers_log=log))

        with bench_servers.Monitor(server, interval_s=0.1) as monitor:
            generator = threading.Thread(target=load)
            started = time.time()
            generator.start()
            for i in range(swaps_n):
                time.sleep(max(0.0, started + args.lead + i * args.interval - time.time()))
                new, old = (versions[1], versions[0]) if i % 2 == 0 else versions
                at = time.time()
                registry.promote(name, new, by="loadtests/swap.py")
                promotions.append({"at": at, "old": f"{name}:{old}", "new": f"{name}:{new}"})
            generator.join()
            run_end = time.time()
        roles.update({pid: role for pid, role in roles_of(server).items() if pid not in roles})
    finally:
        server.stop()
    answers = read_answers(log.read_text())
    swaps = swap_lines(Path(server.log.name).read_text(errors="replace"))
    entries = analyse(promotions, swaps, answers, monitor.series, run_end, roles)
    return {"topology": topology, "clients": clients, "seconds": seconds,
            "load_before": load_before, "server_log": server.log.name,
            "workers": sorted(set(roles.values())),
            "answers": len(answers), "ok": sum(a.status == 200 for a in answers),
            "non2xx": sum(a.status not in (200, 0) for a in answers),
            "errors": sum(a.status == 0 for a in answers),
            "models_answering": sorted({a.model for a in answers if a.model}),
            "generator": {k: summary.get(k) for k in ("requests", "p50_ms", "p99_ms", "max_ms",
                                                        "errors", "non2xx", "wrk_cpu_pct")},
            "requests_per_s": round(len(answers) / seconds, 1),
            "rss_mb_start": round(monitor.series[0][1] / 2**20, 1) if monitor.series else None,
            "rss_mb_end": round(monitor.series[-1][1] / 2**20, 1) if monitor.series else None,
            "promotions": entries}


def markdown(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    lines = [f"# Live swap under load ({s['when']})", "", f"Command: `{s['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python "
             f"{m['python']}. Load average (1, 5, 15 min) at start "
             f"{s['load_average_at_start']}, at end {s['load_average_at_end']}.", "",
             f"Model {s['model']}@production, versions {s['versions'][0]} and "
             f"{s['versions'][1]}; `bentoml serve .`, cache off, AGBENTO_MODEL_POLL_S="
             f"{s['poll']}. Load: `loadtests/openloop.c -C` (closed loop, distinct one-row "
             "bodies, every answer logged with its time, status and X-Agbento-Model; C so the "
             f"generator takes little CPU). Promotions by the stage registry's API every "
             f"{s['interval']} s after {s['lead']} s, {s['cycles']} times there and back. "
             "Swap window: from the promotion to 0.5 s after the last worker logged \"model "
             "swapped\"; the control is a window as long just before the promotion. RSS: the "
             "server's whole process tree, psutil every 100 ms.", "",
             "| topology | clients | workers | answers | req/s | non-2xx | errors | p99 ms | "
             "load before | longest gap, swap (ms) | longest gap, control (ms) | old tag after "
             "last swap (sent / done) |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"]
    for run in report["runs"]:
        gaps = [p["longest_gap_ms"] for p in run["promotions"]]
        controls = [p["control_gap_ms"] for p in run["promotions"]]
        sent = sum(p.get("old_sent_after_last_swap", 0) for p in run["promotions"])
        done = sum(p.get("old_done_after_last_swap", 0) for p in run["promotions"])
        lines.append(f"| {run['topology']} | {run['clients']} | {', '.join(run['workers'])} | "
                     f"{run['answers']} | {run['requests_per_s']} | {run['non2xx']} | "
                     f"{run['errors']} | {run['generator']['p99_ms']} | {run['load_before']} | "
                     f"{max(gaps, default=0):.0f} "
                     f"(each: {', '.join(f'{g:.0f}' for g in gaps)}) | "
                     f"{max(controls, default=0):.0f} "
                     f"(each: {', '.join(f'{g:.0f}' for g in controls)}) | "
                     f"{sent} / {done} |")
    for run in report["runs"]:
        lines += ["", f"## {run['topology']}, {run['clients']} clients", "",
                  f"Models answering: {', '.join(run['models_answering'])}. Server log: "
                  f"{run['server_log']}. RSS at the start {run['rss_mb_start']} MB, at the end "
                  f"{run.get('rss_mb_end')} MB.", "",
                  "| # | to | each worker swapped after (s), loaded in (s) | last swap after s | "
                  "gap swap ms | gap control ms | non-2xx | errors | old tag after last swap "
                  "(sent / done) | RSS MB before / peak / after |",
                  "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for i, p in enumerate(run["promotions"], 1):
            workers = "; ".join(f"{w['role']} {w['pid']}: {w['after_s']:.2f}, {w['load_s']}"
                                for w in p["workers"]) or "none logged"
            rss = p["rss_mb"]
            lines.append(md_row(i, p["to"].split(":")[1], workers, p["last_swap_after_s"],
                                p["longest_gap_ms"], p["control_gap_ms"], p["non2xx"],
                                p["errors"], f"{p.get('old_sent_after_last_swap', '-')} / "
                                f"{p.get('old_done_after_last_swap', '-')}",
                                f"{rss['before']} / {rss['peak']} / {rss['after']}"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="agbento-demo", help="the model's name")
    parser.add_argument("--versions", required=True, help="V1,V2: two stored versions")
    parser.add_argument("--topologies", default="fused,split")
    parser.add_argument("--clients", default="16,64")
    parser.add_argument("--cycles", type=int, default=3, help="promotions there and back")
    parser.add_argument("--interval", type=float, default=10, help="seconds between them")
    parser.add_argument("--lead", type=float, default=10, help="seconds before the first")
    parser.add_argument("--poll", type=float, default=1, help="AGBENTO_MODEL_POLL_S")
    parser.add_argument("--name", default="swap")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = parser.parse_args(argv)
    versions = tuple(args.versions.split(","))
    if len(versions) != 2:
        parser.error("--versions V1,V2")
    card = ensure_model(f"{args.model}:{versions[0]}")
    ensure_model(f"{args.model}:{versions[1]}")
    settings = {"command": " ".join(["python loadtests/swap.py",
                                     *(sys.argv[1:] if argv is None else argv)]),
                "when": datetime.now(UTC).isoformat(timespec="seconds"), "model": args.model,
                "versions": list(versions), "poll": args.poll, "interval": args.interval,
                "lead": args.lead, "cycles": args.cycles,
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    runs = []
    with tempfile.TemporaryDirectory(prefix="agbento-swap-") as work:
        scenario = single_rows(bench_rows.model_rows(card), card, Path(work)).scenario
        for topology in args.topologies.split(","):
            for clients in (int(c) for c in args.clients.split(",")):
                run = one_run(args, topology, clients, args.model, versions, scenario,
                              Path(work))
                runs.append(run)
                print(json.dumps({k: v for k, v in run.items() if k != "promotions"}))
                for p in run["promotions"]:
                    print("  ", json.dumps(p))
    settings["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {"settings": settings, "machine": machine(), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(f"wrote {args.out / args.name}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
