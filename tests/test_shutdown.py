"""SIGTERM: drain, clean up within a bound, exit 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import GOOD
from tests.servers import start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent


def test_exit_after_ends_a_stuck_process() -> None:
    start = time.monotonic()
    stuck = subprocess.run(
        [sys.executable, "-c",
         "import time; from agbento.ops.shutdown import exit_after; exit_after(0.3); "
         "time.sleep(60)"],
        cwd=ROOT, timeout=30,
    )
    assert stuck.returncode == 0
    assert time.monotonic() - start < 20


def test_a_finished_process_is_not_held_by_the_bound() -> None:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from agbento.ops.shutdown import exit_after; exit_after(60)"],
        cwd=ROOT, timeout=30,
    )
    assert done.returncode == 0
    assert time.monotonic() - start < 20  # the daemon timer does not keep it alive


def test_the_kernel_alarm_ends_a_worker_whose_timer_cannot_run() -> None:
    """Seen in the container: a worker finished its cleanup and never exited, the exit timer
    never firing (a hang in interpreter shutdown freezes daemon threads). Simulated here with
    a timer that does nothing and a SIGTERM handler that never stops the process."""
    start = time.monotonic()
    stuck = subprocess.run(
        [sys.executable, "-c",
         "import os, signal, time\n"
         "import agbento.ops.shutdown as shutdown\n"
         "shutdown.exit_after = lambda seconds: None\n"
         "shutdown.ALARM_AFTER_TIMER_S = 1\n"
         "signal.signal(signal.SIGTERM, lambda *args: None)\n"
         "shutdown.bound_after_sigterm(0.5)\n"
         "os.kill(os.getpid(), signal.SIGTERM)\n"
         "time.sleep(60)\n"],
        cwd=ROOT, timeout=30,
    )
    assert stuck.returncode == -signal.SIGALRM
    assert time.monotonic() - start < 20


def test_stop_listening_refuses_new_connections_at_once() -> None:
    """A listening socket another process also holds (as the arbiter holds the workers'):
    after `stop_listening` a new connection is refused instead of waiting in the backlog."""
    script = """
import os, socket
from agbento.ops.shutdown import stop_listening
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
arbiter_copy = os.dup(listener.fileno())
socket.create_connection(("127.0.0.1", port), timeout=5).close()  # queued: never accepted
listener.close()  # what uvicorn does on shutdown: the socket still listens
socket.create_connection(("127.0.0.1", port), timeout=5).close()
assert stop_listening() == 1
try:
    socket.create_connection(("127.0.0.1", port), timeout=5)
except ConnectionRefusedError:
    print("refused")
"""
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "refused"


@pytest.mark.integration
def test_sigterm_exits_cleanly(tiny_models: TinyModels) -> None:
    with start_server(ROOT, tiny_models.multiclass.tag) as server:
        assert httpx.post(f"{server.url}/predict", json={"data": [GOOD]}).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0


@pytest.mark.integration
def test_a_readiness_probe_the_model_misses_does_not_hold_shutdown(
    tiny_models: TinyModels,
) -> None:
    """The API worker that stayed in uvicorn's shutdown after SIGTERM (found with py-spy and
    an asyncio task dump): a /readyz that came while the model was not answering (starting
    up, or stopped here) raised inside BentoML's timeout middleware, which then held the
    request until the request timeout; uvicorn's shutdown waits for every request. Now the
    probe answers 503, and SIGTERM needs no safety net."""
    # split: the probe that misses is the API's call to the model service
    env = {"AGBENTO_REQUEST_TIMEOUT_S": "600", "AGBENTO_SHUTDOWN_TIMEOUT_S": "30",
           "AGBENTO_TOPOLOGY": "split"}
    with start_server(ROOT, tiny_models.multiclass.tag, **env) as server:
        model = next(child for child in psutil.Process(server.process.pid).children()
                     if "agbento-model" in child.cmdline())
        model.suspend()
        try:
            probe = httpx.get(f"{server.url}/readyz", timeout=60)
        finally:
            model.resume()
        assert probe.status_code == 503
        assert httpx.get(f"{server.url}/readyz", timeout=60).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=120) == 0
        assert "still stopping" not in server.log()  # shutdown.py's bound was not needed
