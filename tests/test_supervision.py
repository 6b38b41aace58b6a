"""The supervision watch with real processes: this test process plays the arbiter, children
with `--service-name svc` on their command line play its workers (the drills in
tests/test_drills.py do it with `bentoml serve`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from agbento.ops.workers import live_workers, service_of
from tests.helpers import stopped

WAIT_S = 30
SLEEPER = "import time; time.sleep(120)"
# A worker that watches: argv[1] is the service's worker count, "seen" when unknown, "none"
# when the arbiter replaces dead workers; argv[2] how often it checks
WATCHER = """
import os, sys, time
from agbento.ops.supervision import SupervisionWatch
count = sys.argv[1]
SupervisionWatch(os.getppid(), "svc", siblings=count != "none",
                 workers=int(count) if count.isdigit() else None,
                 interval_s=float(sys.argv[2])).start()
print("watching", flush=True)
time.sleep(120)
"""
# An arbiter of its own for two watching workers, one checking every 0.1 s, the other not
# within the test (it must be stopped by the first): prints their pids
ARBITER = f"""
import subprocess, sys, time
workers = [subprocess.Popen([sys.executable, "-c", {WATCHER!r}, "none", interval,
                             "--service-name", "svc"], stdout=subprocess.PIPE, text=True)
           for interval in ("0.1", "1000")]
for worker in workers:
    worker.stdout.readline()
time.sleep(0.5)  # the first has checked: it knows its sibling
print(*[worker.pid for worker in workers], flush=True)
time.sleep(120)
"""


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def sleeper(service: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SLEEPER, "--service-name", service],
                            text=True)


def watcher(workers: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", WATCHER, workers, "0.1",
                                "--service-name", "svc"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "watching\n"
    return process


def test_service_of_reads_the_worker_command_line() -> None:
    assert service_of(["python", "-m", "w", ".", "--service-name", "agbento", "--fd", "3"]) \
        == "agbento"
    assert service_of(["python", "-m", "w", "--service-name"]) is None
    assert service_of(["bentoml", "serve", "."]) is None


def test_siblings_are_the_live_workers_of_one_service() -> None:
    with processes() as started:
        started += [sleeper("svc"), sleeper("svc"), sleeper("other")]
        me = psutil.Process()
        assert set(live_workers(me, "svc")) == {started[0].pid, started[1].pid}
        started[0].kill()
        dead = psutil.Process(started[0].pid)
        deadline = time.monotonic() + WAIT_S
        while dead.status() != psutil.STATUS_ZOMBIE:  # killed, not reaped (we do not wait)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert set(live_workers(me, "svc")) == {started[1].pid}


def test_a_worker_stops_when_a_sibling_dies_and_nobody_replaces_it() -> None:
    with processes() as started:
        started.append(sleeper("svc"))
        started.append(watcher("2"))
        started[0].kill()
        assert started[1].wait(timeout=WAIT_S) == -signal.SIGTERM


def test_without_a_worker_count_the_most_workers_seen_count() -> None:
    with processes() as started:
        started += [sleeper("svc"), sleeper("svc")]
        started.append(watcher("seen"))
        time.sleep(0.5)  # a few checks: it has seen all three
        started[0].kill()
        assert started[2].wait(timeout=WAIT_S) == -signal.SIGTERM


def test_a_worker_keeps_serving_when_the_arbiter_replaces_workers() -> None:
    with processes() as started:
        started.append(sleeper("svc"))
        started.append(watcher("none"))
        started[0].kill()
        started[0].wait()
        with pytest.raises(subprocess.TimeoutExpired):  # it keeps running
            started[1].wait(timeout=1.5)


def test_workers_stop_together_when_their_arbiter_is_gone() -> None:
    with processes() as started:
        arbiter = subprocess.Popen([sys.executable, "-c", ARBITER], stdout=subprocess.PIPE,
                                   text=True)
        started.append(arbiter)
        assert arbiter.stdout is not None
        orphans = [psutil.Process(int(pid)) for pid in arbiter.stdout.readline().split()]
        arbiter.kill()
        arbiter.wait()
        deadline = time.monotonic() + WAIT_S
        try:
            while running := [p for p in orphans if not stopped(p)]:
                assert time.monotonic() < deadline, f"still running: {running}"
                time.sleep(0.05)
        finally:
            for process in orphans:
                if process.is_running():
                    process.kill()
