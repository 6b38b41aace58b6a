"""SIGTERM: drain, clean up within a bound, exit 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import start_server
from tests.test_bad_input import GOOD
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent


def test_exit_after_ends_a_stuck_process() -> None:
    start = time.monotonic()
    stuck = subprocess.run(
        [sys.executable, "-c",
         "import time; from agbento.shutdown import exit_after; exit_after(0.3); time.sleep(60)"],
        cwd=ROOT, timeout=30,
    )
    assert stuck.returncode == 0
    assert time.monotonic() - start < 20


def test_a_finished_process_is_not_held_by_the_bound() -> None:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from agbento.shutdown import exit_after; exit_after(60)"],
        cwd=ROOT, timeout=30,
    )
    assert done.returncode == 0
    assert time.monotonic() - start < 20  # the daemon timer does not keep it alive


@pytest.mark.integration
def test_sigterm_exits_cleanly(tiny_models: TinyModels) -> None:
    with start_server(ROOT, tiny_models.multiclass.tag) as server:
        assert httpx.post(f"{server.url}/predict", json={"data": [GOOD]}).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
