"""A start that cannot work says why in one line and exits 2, whichever way the server is
started (`bentoml serve .` or `agbento serve`); a running server keeps its /metrics when
another starts, or fails to start, on the same machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import GOOD, metric_samples, total
from tests.servers import free_port, private_home, start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.integration


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "BENTOML_HOME": str(private_home()), **env}
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=180)


def bentoml_serve(port: int) -> list[str]:
    return [str(BIN / "bentoml"), "serve", ".", "--host", "127.0.0.1", "--port", str(port)]


def agbento_serve(port: int) -> list[str]:
    return [str(BIN / "agbento"), "serve", "--port", str(port)]


def assert_one_line_exit_2(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), done.stderr[-3000:]
    for text in expected:
        assert text in last, last


@pytest.mark.parametrize("command", [bentoml_serve, agbento_serve])
def test_a_bad_setting_names_the_variable_the_value_and_what_is_allowed(
        command, tiny_models: TinyModels) -> None:
    done = run(command(free_port()), AGBENTO_MODEL=tiny_models.binary.tag,
               AGBENTO_TOPOLOGY="fuzed")
    assert_one_line_exit_2(done, "AGBENTO_TOPOLOGY", "'fuzed'", "'fused' or 'split'")


@pytest.mark.parametrize("command", [bentoml_serve, agbento_serve])
def test_a_missing_model_says_how_to_get_one(command, tiny_models: TinyModels) -> None:
    done = run(command(free_port()), AGBENTO_MODEL="no-such-model:latest")
    assert_one_line_exit_2(done, "no-such-model", "agbento train")


@pytest.mark.parametrize("command", [bentoml_serve, agbento_serve])
def test_a_port_in_use_is_named(command, tiny_models: TinyModels) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(command(port), AGBENTO_MODEL=tiny_models.binary.tag)
    assert_one_line_exit_2(done, f"127.0.0.1:{port}", "in use")


def agbento_series(url: str) -> int:
    return sum(len(samples) for name, samples in metric_samples(url).items()
               if name.startswith("agbento_"))


def test_a_second_start_on_the_machine_leaves_the_running_servers_metrics(
        tiny_models: TinyModels) -> None:
    home = private_home()
    with start_server(ROOT, tiny_models.multiclass.tag, home=home) as first:
        for _ in range(3):
            assert httpx.post(f"{first.url}/predict", json={"data": [GOOD]}).status_code == 200
        before = agbento_series(first.url)
        # a start that fails (the same port) and one that succeeds, on the same BentoML home
        failed = subprocess.run(
            bentoml_serve(int(first.url.rsplit(":", 1)[1])), cwd=ROOT, capture_output=True,
            text=True, timeout=180,
            env={**os.environ, "BENTOML_HOME": str(home),
                 "AGBENTO_MODEL": tiny_models.multiclass.tag})
        assert failed.returncode == 2, failed.stderr[-2000:]
        with start_server(ROOT, tiny_models.multiclass.tag, home=home) as second:
            assert httpx.post(f"{second.url}/predict", json={"data": [GOOD]}).status_code == 200
            after = agbento_series(first.url)
            samples = metric_samples(first.url)
        assert after >= before > 50
        assert total(samples, "agbento_model_ready") >= 1
        assert total(samples, "agbento_requests_total", endpoint="/predict", status="200") == 3


def test_agbento_serve_listens_on_loopback_only_by_default(tiny_models: TinyModels) -> None:
    port = free_port()
    environment = {**os.environ, "BENTOML_HOME": str(private_home()),
                   "AGBENTO_MODEL": tiny_models.binary.tag}
    process = subprocess.Popen(agbento_serve(port), cwd=ROOT, env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "agbento serve not ready"
            time.sleep(0.2)
        listening = {conn.laddr.ip for child in [psutil.Process(process.pid),
                                                  *psutil.Process(process.pid).children(True)]
                     for conn in child.net_connections("tcp")
                     if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port}
        assert listening == {"127.0.0.1"}
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=60)
