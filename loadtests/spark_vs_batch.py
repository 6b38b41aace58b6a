"""One Parquet file scored three ways on this machine, one after the other:

1. `python -m agbento.spark --master local[2]`;
2. `python -m agbento.batch --local` (in-process, one Python process);
3. `python -m agbento.batch --url` against one `bentoml serve` (started here, on loopback).

For each: wall seconds from process start, the tool's own summary line, CPU seconds and
peak RSS of the tool's whole process tree (Spark's JVM and Python workers; for HTTP the
server's tree as well). CPU seconds say what the work costs, and they move less than wall
time when other work shares the cores. The load average before each run is printed: quote
it with the figures.

    .venv/bin/python loadtests/spark_vs_batch.py [--rows 1000000] [--model agbento-demo:latest]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def make_input(path: Path, rows: int) -> None:
    import numpy as np

    from agbento.training.pipeline import demo_table

    table = demo_table().drop(columns=["species"]).sample(rows, replace=True, random_state=42)
    table.insert(0, "penguin_id", np.arange(rows, dtype="int64"))
    table.reset_index(drop=True).to_parquet(path, index=False)


class TreeSampler:
    """CPU seconds and peak RSS of a process tree, sampled every 0.2 s (Spark's JVM and its
    Python workers are grandchildren that nobody waits for: rusage misses them)."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0

    def sample(self) -> None:
        rss = 0
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in processes:
            try:
                t = p.cpu_times()
                self.cpu[p.pid] = max(self.cpu.get(p.pid, 0.0), t.user + t.system)
                rss += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        self.peak_rss = max(self.peak_rss, rss)

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu.values())


def timed(name: str, command: list[str], server: psutil.Process | None = None) -> dict:
    load = os.getloadavg()
    server_sampler = TreeSampler(server) if server else None
    if server_sampler:
        server_sampler.sample()
    server_before = server_sampler.cpu_s if server_sampler else 0.0
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(psutil.Process(process.pid))
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)
    reader.start()
    while process.poll() is None:
        sampler.sample()
        if server_sampler:
            server_sampler.sample()
        time.sleep(0.2)
    wall = time.monotonic() - start
    reader.join()
    if server_sampler:
        server_sampler.sample()
    text = "".join(stderr)
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {"stderr": text[-2000:]}
    result = {
        "run": name, "exit": process.returncode, "wall_s": round(wall, 1),
        "cpu_s": round(sampler.cpu_s, 1), "peak_rss_mb": round(sampler.peak_rss / 2**20),
        "server_cpu_s": round(server_sampler.cpu_s - server_before, 1)
        if server_sampler else None,
        "server_peak_rss_mb": round(server_sampler.peak_rss / 2**20) if server_sampler else None,
        "load_before": [round(x, 2) for x in load], "summary": summary,
    }
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
        timed("agbento.offline.spark local[2]", [PY, "-m", "agbento.spark", str(source),
              str(out / "spark"), "--model", args.model, "--master", "local[2]",
              "--id-column", "penguin_id"])
    if "local" in runs:
        timed("agbento.offline.batch --local", [PY, "-m", "agbento.batch", str(source),
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
            timed("agbento.offline.batch --url (one bentoml serve)", [PY, "-m", "agbento.batch",
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
