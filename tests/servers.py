"""Real servers for the tests: `bentoml serve`, and redis-server, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

READY_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BentoServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_s: float

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines_with(self, needle: str, timeout_s: float = 10) -> list[str]:
        """The log lines holding `needle`, waiting for the first (a request's log line is
        written after its answer is sent, so it may trail the answer)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = [line for line in self.log().splitlines() if needle in line]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


def private_home() -> Path:
    """A BentoML home of its own that shares the session's model store and stages.

    Every `bentoml serve` wipes `$BENTOML_HOME/prometheus_multiproc_dir` on start, so two
    servers on one home erase each other's /metrics (BentoML 1.4.39, serving.py:53).
    """
    shared = Path(os.environ["BENTOML_HOME"])
    home = Path(tempfile.mkdtemp(prefix="bentoml-home-"))
    for kept in ("models", "agbento"):  # the model store and its stage registry
        (shared / kept).mkdir(parents=True, exist_ok=True)
        (home / kept).symlink_to(shared / kept, target_is_directory=True)
    return home


@contextlib.contextmanager
def start_server(
    project: Path, model_tag: str, target: str = ".", port: int | None = None,
    home: Path | None = None, **env: str
) -> Iterator[BentoServer]:
    """`bentoml serve TARGET` in `project` (a source tree, or a built Bento's directory);
    a BentoML home of its own unless `home` is given."""
    port = port or free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="bentoml-serve-", suffix=".log", delete=False)
    bentoml = Path(sys.executable).with_name("bentoml")
    environment = {
        **os.environ,
        "BENTOML_HOME": str(home or private_home()),
        "AGBENTO_MODEL": model_tag,
        **env,
    }
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
        cwd=project,
        env=environment,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = BentoServer(f"http://127.0.0.1:{port}", process, Path(log_file.name), 0.0)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None or "Application startup failed" in server.log():
                raise RuntimeError(f"bentoml serve failed to start:\n{server.log()[-4000:]}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bentoml serve not ready:\n{server.log()[-4000:]}")
            time.sleep(0.2)
        server.started_s = time.perf_counter() - start
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int | None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return process.returncode


class RedisServer:
    """A real redis-server on a loopback port, which a test may kill (-9) and start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: run `make test-deps`"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.2).ping():
                    return self
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def redis_server(port: int) -> Iterator[RedisServer]:
    server = RedisServer(port).start()
    try:
        yield server
    finally:
        server.kill()
