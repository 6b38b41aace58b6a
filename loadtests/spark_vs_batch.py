"""One Parquet file scored three ways on this machine, one after the other:

1. `python -m agbento.spark --master local[2]`;
2. `python -m agbento.batch --local` (in-process, one Python process);
3. `python -m agbento.batch --url` against one `bentoml serve` (started here, on loopback).

For each: wall seconds from process start, the tool's own summary line, and CPU seconds
(the tool and all its children: Spark's JVM and Python workers; for HTTP the server's
process tree too). CPU seconds say what the work costs, and they move less than wall time
when other work shares the cores. Load average before each run is printed; quote it.

    .venv/bin/python loadtests/spark_vs_batch.py [--rows 1000000] [--model agbento-demo:latest]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def make_input(path: Path, rows: int) -> None:
    import numpy as np

    from agbento.training import demo_table

    table = demo_table().drop(columns=["species"]).sample(rows, replace=True, random_state=42)
    table.insert(0, "penguin_id", np.arange(rows, dtype="int64"))
    table.reset_index(drop=True).to_parquet(path, index=False)


def tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(name: str, command: list[str], server: psutil.Process | None = None) -> dict:
    load = os.getloadavg()
    cpu_before = children_cpu()
    server_before = tree_cpu(server) if server else 0.0
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - start
    cpu = children_cpu() - cpu_before
    server_cpu = tree_cpu(server) - server_before if server else 0.0
    lines = [ln for ln in done.stderr.replace("\r", "\n").splitlines() if ln.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {"stderr": done.stderr[-2000:]}
    result = {"run": name, "exit": done.returncode, "wall_s": round(wall, 1),
              "client_cpu_s": round(cpu, 1), "server_cpu_s": round(server_cpu, 1),
              "load_before": [round(x, 2) for x in load], "summary": summary}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--model", default="agbento-demo:latest")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/agbento-spark-vs-batch"))
    parser.add_argument("--port", type=int, default=3917)
    parser.add_argument("--only", choices=("spark", "local", "http"), action="append")
    args = parser.parse_args()
    runs = args.only or ["spark", "local", "http"]
    args.dir.mkdir(parents=True, exist_ok=True)
    source = args.dir / f"penguins-{args.rows}.parquet"
    if not source.exists():
        make_input(source, args.rows)
    out = args.dir / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    print(json.dumps({"input": str(source), "rows": args.rows, "model": args.model,
                      "cpus": os.cpu_count()}), flush=True)
    if "spark" in runs:
        timed("agbento.spark local[2]", [PY, "-m", "agbento.spark", str(source),
              str(out / "spark"), "--model", args.model, "--master", "local[2]",
              "--id-column", "penguin_id"])
    if "local" in runs:
        timed("agbento.batch --local", [PY, "-m", "agbento.batch", str(source),
              str(out / "local.parquet"), "--local", args.model, "--id-column", "penguin_id",
              "--quiet"])
    if "http" in runs:
        bentoml = Path(PY).with_name("bentoml")
        log = open(args.dir / "serve.log", "w")
        serve = subprocess.Popen(
            [str(bentoml), "serve", ".", "--host", "127.0.0.1", "--port", str(args.port)],
            cwd=ROOT, env={**os.environ, "AGBENTO_MODEL": args.model}, stdout=log,
            stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{args.port}"
            deadline = time.monotonic() + 180
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise SystemExit(f"bentoml serve did not get ready; see {log.name}")
                time.sleep(1)
            timed("agbento.batch --url (one bentoml serve)", [PY, "-m", "agbento.batch",
                  str(source), str(out / "http.parquet"), "--url", url, "--id-column",
                  "penguin_id", "--quiet"], server=psutil.Process(serve.pid))
        finally:
            serve.terminate()
            try:
                serve.wait(timeout=90)
            except subprocess.TimeoutExpired:
                serve.kill()


if __name__ == "__main__":
    main()
