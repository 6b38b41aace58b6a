"""Fault drills against a real `bentoml serve` under load: each breaks one part on purpose.

Every drill prints a `DRILL ...` line with its figures (run with `-s` to see them). The Redis
drill lives with the cache (tests/test_cache.py).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from agbento.http.auth import ApiKey, digest, new_key, write_keys
from agbento.ops.workers import live_workers
from tests.helpers import GOOD, stopped
from tests.servers import BentoServer, start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 16
# Every request reaches the model: a drill about the model must not be answered by the cache.
NO_CACHE = {"AGBENTO_CACHE_URL": "off"}
WAIT_S = 120  # how long a drill waits for something that should take seconds


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    key: str
    request_id: str
    status: int | None = None
    code: str | None = None
    retry_after: str | None = None
    error: str | None = None  # the transport error when there was no answer

    @property
    def ok(self) -> bool:
        return self.status == 200


class Load:
    """`clients` threads, each with its own keep-alive client, posting one row back to back.

    Every request is recorded, with its answer or the transport error it met instead. Rows
    differ from request to request. `keys` (name -> header value) rotate over the threads.
    """

    def __init__(self, url: str, clients: int = CLIENTS,
                 keys: dict[str, str] | None = None) -> None:
        self.url = url
        self.keys = keys or {"-": ""}
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(clients)]

    def _run(self, number: int) -> None:
        names = list(self.keys)
        name = names[number % len(names)]
        headers = {"X-API-Key": self.keys[name]} if self.keys[name] else {}
        count = 0
        with httpx.Client(timeout=60, headers=headers) as client:
            while not self._stop.is_set():
                count += 1
                row = {**GOOD, "bill_length_mm": 40 + (number * 1000 + count) % 997 / 100}
                request_id = f"drill-{number}-{count}"
                started = time.monotonic()
                try:
                    answer = client.post(f"{self.url}/predict", json={"data": [row]},
                                         headers={"X-Request-ID": request_id})
                except httpx.HTTPError as exc:
                    outcome = Outcome(started, time.monotonic(), name, request_id,
                                      error=type(exc).__name__)
                    time.sleep(0.05)  # a refused client must not spin
                else:
                    code = None
                    if answer.status_code != 200:
                        try:
                            code = answer.json()["error"]["code"]
                        except (ValueError, KeyError, TypeError):
                            code = "<not our error shape>"
                    outcome = Outcome(started, time.monotonic(), name, request_id,
                                      answer.status_code, code, answer.headers.get("Retry-After"))
                with self._lock:
                    self.outcomes.append(outcome)

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def wait_until(self, condition: Any, what: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.snapshot()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.tally()}"
            time.sleep(0.1)

    def ok_after(self, moment: float, count: int, key: str | None = None) -> None:
        """Wait for `count` successes of requests sent after `moment`."""
        self.wait_until(lambda outcomes: sum(
            1 for o in outcomes if o.ok and o.started > moment and key in (None, o.key)
        ) >= count, f"{count} answers after t={moment:.1f}")

    def tally(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.snapshot():
            label = o.error or f"{o.status} {o.code or ''}".strip()
            counts[label] = counts.get(label, 0) + 1
        return counts

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)


def workers(server: BentoServer, service_name: str) -> list[psutil.Process]:
    """The live worker processes of `service_name` under the server's arbiter (a dead one
    the arbiter has not reaped yet is a zombie: not live)."""
    return list(live_workers(psutil.Process(server.process.pid), service_name).values())


def worker(server: BentoServer, service_name: str) -> psutil.Process:
    """The one worker process of `service_name` under the server's arbiter."""
    found = workers(server, service_name)
    assert len(found) == 1, f"expected one {service_name} worker, found {found}"
    return found[0]


def stall_s(outcomes: list[Outcome], after: float) -> float:
    """The longest time after `after` in which no request was answered 200."""
    ends = sorted(o.ended for o in outcomes if o.ok and o.ended > after)
    edges = [after, *ends]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False)) if ends else float("inf")


# -- the model worker dies ---------------------------------------------------------------


@pytest.mark.integration
def test_model_worker_killed_under_load(tiny_models: TinyModels) -> None:
    """SIGKILL the model worker under 16 clients: BentoML's arbiter starts another. A request
    waits at most AGBENTO_MODEL_WAIT_S for it, then is answered 503 model_unavailable with
    Retry-After; every other request is answered 200; none is left without an answer."""
    env = {**NO_CACHE, "AGBENTO_MODEL_WAIT_S": "1", "AGBENTO_TOPOLOGY": "split"}
    with start_server(ROOT, tiny_models.multiclass.tag, **env) as server, \
            Load(server.url) as load:
        load.ok_after(0, 100)
        victim = worker(server, "agbento-model")
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        load.ok_after(killed_at, 100)  # a new model worker answers
        assert worker(server, "agbento-model").pid != victim.pid
    outcomes = load.snapshot()
    failed = [o for o in outcomes
              if not o.ok and not (o.status == 503 and o.code == "model_unavailable"
                                   and o.retry_after)]
    refused = [o for o in outcomes if o.status == 503]
    slowest = max(o.ended - o.started for o in outcomes)
    print(f"\nDRILL model worker SIGKILL: {len(outcomes)} requests, {len(failed)} failed, "
          f"{len(refused)} answered 503 model_unavailable (AGBENTO_MODEL_WAIT_S=1), "
          f"no 200 for {stall_s(outcomes, killed_at):.1f} s, slowest answer {slowest:.1f} s")
    assert not failed, f"requests without a clean answer: {load.tally()} {failed[:5]}"
    # the restart (a new process importing BentoML and AutoGluon) takes longer than the bound
    assert refused, f"no request was bounded by AGBENTO_MODEL_WAIT_S: {load.tally()}"


# -- a fused API worker dies -------------------------------------------------------------

FUSED_2 = {**NO_CACHE, "AGBENTO_TOPOLOGY": "fused", "AGBENTO_API_WORKERS": "2"}


def answered_by(log: str) -> dict[str, int]:
    """Request id -> the pid of the worker that answered it (from the request log, which
    logs every request after its answer went out)."""
    found = {}
    for line in log.splitlines():
        if '"agbento.requests"' in line:
            record = json.loads(line)
            found[record["request_id"]] = record["pid"]
    return found


def until(condition: Any, what: str) -> Any:
    """`condition()`'s first truthy value, polled."""
    deadline = time.monotonic() + WAIT_S
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def lost_with_the_worker(outcomes: list[Outcome], log: str, one_per_client: bool = True
                         ) -> tuple[list[Outcome], list[str]]:
    """The requests that met a broken connection, and what is wrong about them: no request
    a worker answered may be lost, no new connection refused, none hang; and with
    `one_per_client`, each client (a keep-alive connection) loses at most the one request it
    had in flight on the killed worker."""
    failed = [o for o in outcomes if o.error is not None]
    answered = answered_by(log)
    problems = [f"answered by pid {answered[o.request_id]} but lost: {o}"
                for o in failed if o.request_id in answered]
    per_client: dict[str, int] = {}
    for o in failed:
        client = o.request_id.rsplit("-", 1)[0]
        per_client[client] = per_client.get(client, 0) + 1
    if one_per_client:
        problems += [f"{client} lost {n}" for client, n in per_client.items() if n > 1]
    problems += [f"{o.request_id}: {o.error}" for o in failed
                 if o.error in ("ConnectError", "ReadTimeout", "WriteTimeout", "PoolTimeout")]
    return failed, problems


@contextmanager
def one_of_two_workers_signalled(
    tiny_models: TinyModels, signum: int,
) -> Iterator[tuple[BentoServer, Load, psutil.Process, psutil.Process, float]]:
    """2 fused API workers under CLIENTS clients; `signum` to one of them: (server, load,
    the signalled worker, the other, when)."""
    with start_server(ROOT, tiny_models.multiclass.tag, **FUSED_2) as server, \
            Load(server.url) as load:
        load.ok_after(0, 100)
        victim, survivor = workers(server, "agbento")
        signalled_at = time.monotonic()
        victim.send_signal(signum)
        yield server, load, victim, survivor, signalled_at


@pytest.mark.integration
def test_fused_api_worker_killed_under_load(tiny_models: TinyModels) -> None:
    """SIGKILL one of 2 fused API workers under 16 keep-alive clients: the other keeps
    answering, BentoML's arbiter starts a replacement that answers, and the only requests
    lost are those in flight on the killed worker's connections (a connection error, at most
    one per client; a client that retries them recovers). No other answer than 200."""
    with one_of_two_workers_signalled(tiny_models, signal.SIGKILL) as (
            server, load, victim, survivor, killed_at):
        load.ok_after(killed_at, 100)  # the survivor answers meanwhile
        replacement = until(lambda: [w for w in workers(server, "agbento")
                                     if w.pid not in (victim.pid, survivor.pid)], "a new worker")[0]
        replaced_s = time.monotonic() - killed_at
        # the 16 clients keep their connections to the survivor: new connections find it
        fresh = 0

        def replacement_answered() -> bool:
            nonlocal fresh
            fresh += 1
            request_id = f"fresh-{fresh}"
            answer = httpx.post(f"{server.url}/predict", json={"data": [GOOD]},
                                headers={"X-Request-ID": request_id}, timeout=30)
            assert answer.status_code == 200, answer.text
            return replacement.pid in {pid for rid, pid in answered_by(server.log()).items()
                                       if rid.startswith("fresh-")}

        until(replacement_answered, "the new worker to answer")
        answering_s = time.monotonic() - killed_at
        load.ok_after(time.monotonic(), 50)
    outcomes = load.snapshot()
    failed, problems = lost_with_the_worker(outcomes, server.log())
    bad_answers = [o for o in outcomes if o.status is not None and not o.ok]
    slowest = max(o.ended - o.started for o in outcomes)
    print(f"\nDRILL fused API worker SIGKILL (2 workers, {CLIENTS} clients): {len(outcomes)} "
          f"requests, {len(failed)} lost in flight on the killed worker's connections "
          f"{load.tally()}, {len(bad_answers)} answers not 200; no 200 for "
          f"{stall_s(outcomes, killed_at):.1f} s, slowest answer {slowest:.1f} s; new worker "
          f"after {replaced_s:.1f} s, answering after {answering_s:.1f} s")
    assert not bad_answers, load.tally()
    assert not problems, problems
    assert len(failed) <= CLIENTS


@pytest.mark.integration
def test_one_fused_api_worker_stopped_alone_the_port_keeps_serving(
    tiny_models: TinyModels,
) -> None:
    """SIGTERM to one of 2 fused API workers only (a supervisor replacing it, an operator):
    it drains and exits, while the port keeps taking new connections for the other. The
    stopping worker used to shut the listening socket all workers share: the port refused
    every connection and the other worker's server closed on the accept() error, until
    BentoML started a new worker (agbento/ops/shutdown.py, `shut_when_all_stop`)."""
    with one_of_two_workers_signalled(tiny_models, signal.SIGTERM) as (
            server, load, victim, survivor, stopped_at):
        victim.wait(timeout=60)
        fresh = [httpx.post(f"{server.url}/predict", json={"data": [GOOD]}, timeout=30)
                 for _ in range(20)]  # each a new connection
        load.ok_after(time.monotonic(), 100)
        assert server.process.poll() is None
        until(lambda: [w for w in workers(server, "agbento")
                       if w.pid not in (victim.pid, survivor.pid)], "a new worker")
    outcomes = load.snapshot()
    failed, problems = lost_with_the_worker(outcomes, server.log())
    bad_answers = [o for o in outcomes if o.status is not None and not o.ok
                   and not (o.status == 503 and o.code != "<not our error shape>")]
    print(f"\nDRILL one fused API worker SIGTERM (2 workers, {CLIENTS} clients): "
          f"{len(outcomes)} requests {load.tally()}, {len(failed)} met a closed connection; "
          f"no 200 for {stall_s(outcomes, stopped_at):.1f} s; 20 new connections after it "
          f"exited: {[a.status_code for a in fresh].count(200)} answered 200")
    assert all(a.status_code == 200 for a in fresh)
    assert not bad_answers, load.tally()
    assert not problems, problems  # ConnectError would be a refused connection


@pytest.mark.integration
def test_fused_api_worker_killed_in_a_container_stops_the_server(
        tiny_models: TinyModels) -> None:
    """Inside a container BentoML does not replace a dead worker (BENTOML_CONTAINERIZED,
    what BentoML's images set): SIGKILL one of 2 API workers under load, and the other stops
    by its drain path, the server exits non-zero (for the orchestrator to restart it) instead
    of serving on one worker for good. Every request the survivor took is answered."""
    env = {**FUSED_2, "BENTOML_CONTAINERIZED": "true"}
    with start_server(ROOT, tiny_models.multiclass.tag, **env) as server, \
            Load(server.url) as load:
        load.ok_after(0, 100)
        victim, survivor = workers(server, "agbento")
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        code = server.process.wait(timeout=WAIT_S)
        exited_s = time.monotonic() - killed_at
        time.sleep(0.5)  # a few more attempts against the stopped server
    log = server.log()
    outcomes = load.snapshot()
    # a client may lose one request on the killed worker's connection and, as in the SIGTERM
    # drill, one it sent on a keep-alive connection the survivor closed before reading it
    failed, problems = lost_with_the_worker(
        [o for o in outcomes if o.error != "ConnectError"], log, one_per_client=False)
    refused = [o for o in outcomes if o.error == "ConnectError"]
    bad_answers = [o for o in outcomes if o.status is not None and o.status != 200
                   and (o.status != 503 or o.code == "<not our error shape>")]
    stopped = [line for line in log.splitlines() if '"agbento.ops.supervision"' in line]
    print(f"\nDRILL fused API worker SIGKILL in a container (2 workers, {CLIENTS} clients): "
          f"server exit {code} after {exited_s:.1f} s; {len(outcomes)} requests, "
          f"{len(failed)} lost on broken connections, {len(refused)} connections refused "
          f"while stopping, {len(bad_answers)} answers not 200/503 {load.tally()}")
    assert code != 0, "the server must exit with an error for its supervisor to restart it"
    # each worker knew the count BentoML started (not only the most it saw) ...
    assert sum("fewer than 2 workers of service agbento" in line for line in stopped) == 2
    # ... and the survivor stopped
    assert [line for line in stopped if "died" in line and str(survivor.pid) in line], stopped
    assert not bad_answers, load.tally()
    assert not problems, problems


@pytest.mark.integration
def test_server_process_killed_its_workers_stop(tiny_models: TinyModels) -> None:
    """SIGKILL `bentoml serve` itself (the arbiter): its workers run in sessions of their
    own, so nothing signals them, and they used to go on serving the inherited socket with
    nobody supervising them. Each now notices and stops; then connections are refused."""
    with start_server(ROOT, tiny_models.multiclass.tag, **FUSED_2) as server:
        orphans = workers(server, "agbento")
        server.process.kill()
        killed_at = time.monotonic()
        deadline = time.monotonic() + WAIT_S
        while (alive := [p for p in orphans if not stopped(p)]) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        stopped_s = time.monotonic() - killed_at
        for process in alive:  # a failed test leaves nothing behind
            process.kill()
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{server.url}/predict", json={"data": [GOOD]}, timeout=5)
    print(f"\nDRILL server process SIGKILL: {len(orphans) - len(alive)} of {len(orphans)} "
          "workers stopped "
          f"within {stopped_s:.1f} s")
    assert not alive, f"workers still running without their arbiter: {alive}"


# -- SIGTERM --------------------------------------------------------------------------------


def seen_by_server(log: str) -> set[str]:
    """The request ids the service's request log holds (it logs every request it handled)."""
    seen = set()
    for line in log.splitlines():
        if '"agbento.requests"' in line:
            seen.add(json.loads(line)["request_id"])
    return seen


@pytest.mark.integration
def test_sigterm_under_load_drains_and_exits_0(tiny_models: TinyModels) -> None:
    """SIGTERM to `bentoml serve` under 16 keep-alive clients: every request the service took
    is answered (200, or 503 in our error shape once it is draining), later connections are
    refused, and the process exits 0 without the AGBENTO_SHUTDOWN_TIMEOUT_S safety net.

    A request the service never read is not "taken": uvicorn closes idle keep-alive
    connections at once on shutdown, and a request a client has just sent on one meets a
    closed connection (the server did no work on it; an idempotent request may be retried).
    The service's request log tells the two apart: a request it logged was read.
    """
    # one API worker: each worker closes its idle keep-alive connections on shutdown, so with
    # N workers a client may meet N closed connections (seen: 18 for 16 clients with 2)
    with start_server(ROOT, tiny_models.multiclass.tag, AGBENTO_API_WORKERS="1",
                      **NO_CACHE) as server, Load(server.url) as load:
        load.ok_after(0, 100)
        termed_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=WAIT_S)
        exited_s = time.monotonic() - termed_at
        time.sleep(0.5)  # a few more attempts against the stopped server
    log = server.log()
    seen = seen_by_server(log)
    outcomes = load.snapshot()
    after = [o for o in outcomes if o.ended > termed_at]
    answered = [o for o in after if o.status is not None]
    refused = [o for o in after if o.error == "ConnectError"]
    dropped = [o for o in outcomes if o.error is not None and o.error != "ConnectError"]
    unread = [o for o in dropped if o.request_id not in seen]
    bad_answers = [o for o in outcomes if o.status is not None and o.status != 200
                   and (o.status != 503 or o.code == "<not our error shape>")]
    print(f"\nDRILL SIGTERM under load: exit {code} after {exited_s:.1f} s; after SIGTERM "
          f"{len(answered)} answered ({sum(o.ok for o in answered)} 200), {len(refused)} "
          f"connections refused, {len(unread)} sent on a keep-alive connection the server "
          f"closed before reading them, {len(dropped) - len(unread)} taken and not answered, "
          f"{len(bad_answers)} answers not 200/503 {load.tally()}")
    assert code == 0
    assert not bad_answers, load.tally()
    assert [o for o in dropped if o.request_id in seen] == [], "taken but not answered"
    # each client's first new connection after SIGTERM used to wait in the arbiter's
    # backlog until the exit and then be reset (shutdown.stop_listening): now refused
    assert len(unread) < CLIENTS, "new connections were queued, not refused"
    assert "still stopping" not in log  # the safety net (shutdown.py) was not needed
    assert refused, "no connection attempt after the exit was refused"


# -- the keys file changes ------------------------------------------------------------------


def key_entry(name: str) -> tuple[str, ApiKey]:
    plain = new_key(name)
    return plain, ApiKey(id=name, owner="drill", permissions=("predict",), sha256=digest(plain))


@pytest.mark.integration
def test_keys_file_rewritten_under_load(tiny_models: TinyModels, tmp_path: Path) -> None:
    """Rewrite the keys file under load: by atomic replace, in place (truncate, then write,
    slowly, as `cat > keys.json` does), and by removing it and writing a new one (an editor
    keeping a backup). Each time the new key starts to work and the removed one stops, and
    the key that stays is never refused."""
    path = tmp_path / "keys.json"
    steady, steady_entry = key_entry("steady")
    old, old_entry = key_entry("old")
    first, first_entry = key_entry("first")
    second, second_entry = key_entry("second")
    write_keys(path, {"steady": steady_entry, "old": old_entry})
    env = {**NO_CACHE, "AGBENTO_API_KEYS_FILE": str(path)}

    def answers(server: BentoServer, key: str) -> int:
        return httpx.post(f"{server.url}/predict", json={"data": [GOOD]},
                          headers={"X-API-Key": key}, timeout=30).status_code

    def until(condition: Any, what: str) -> float:
        start, deadline = time.monotonic(), time.monotonic() + WAIT_S
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)
        return time.monotonic() - start

    with start_server(ROOT, tiny_models.multiclass.tag, **env) as server, \
            Load(server.url, keys={"steady": steady}) as load:
        load.ok_after(0, 50)
        assert answers(server, old) == 200 and answers(server, first) == 401

        write_keys(path, {"steady": steady_entry, "first": first_entry})  # atomic replace
        replaced_s = until(lambda: answers(server, first) == 200
                           and answers(server, old) == 401, "the atomic replace to load")

        body = json.dumps({"keys": [steady_entry.to_dict(), second_entry.to_dict()]})
        with path.open("r+") as handle:  # in place: the file is empty, then half written
            handle.truncate(0)
            handle.flush()
            time.sleep(2.5)  # longer than the reload check interval: it sees the empty file
            handle.write(body[: len(body) // 2])
            handle.flush()
            time.sleep(2.5)  # ... and the half-written one
            handle.write(body[len(body) // 2:])
        rewritten_s = until(lambda: answers(server, second) == 200
                            and answers(server, first) == 401, "the in-place rewrite to load")

        path.unlink()  # moved away, then written anew (an editor keeping a backup)
        time.sleep(2.5)
        write_keys(path, {"steady": steady_entry, "old": old_entry})
        recreated_s = until(lambda: answers(server, old) == 200
                            and answers(server, second) == 401, "the new file to load")
        load.ok_after(time.monotonic(), 50)
        log = server.log()
    outcomes = load.snapshot()
    failed = [o for o in outcomes if not o.ok]
    print(f"\nDRILL keys file rewritten: {len(outcomes)} requests with the steady key, "
          f"{len(failed)} failed; atomic replace in effect after {replaced_s:.1f} s, in-place "
          f"rewrite after {rewritten_s:.1f} s, re-created file after {recreated_s:.1f} s")
    assert not failed, f"the steady key was refused: {load.tally()}"
    assert "cannot read AGBENTO_API_KEYS_FILE" in log  # the half-written file was seen
    assert "is gone; keeping" in log  # and the missing one


# -- the prediction log cannot be written -------------------------------------------------


def file_in_place(log_dir: Path) -> None:
    log_dir.write_text("a file where the directory should be\n")


def disk_full(log_dir: Path) -> None:
    """Every log file the monitor opens is /dev/full: each write fails with ENOSPC."""
    for kind in ("data", "schema"):
        folder = log_dir / "agbento_predictions" / kind
        folder.mkdir(parents=True)
        for worker_index in range(8):
            (folder / f"{kind}.{worker_index}.log").symlink_to("/dev/full")


def read_only(log_dir: Path) -> None:
    log_dir.mkdir()
    log_dir.chmod(0o555)


@pytest.mark.integration
@pytest.mark.parametrize("breakage", [file_in_place, disk_full, read_only],
                         ids=["file-in-place", "disk-full", "read-only"])
def test_prediction_log_unwritable(tiny_models: TinyModels, tmp_path: Path,
                                   breakage: Any) -> None:
    """Every request sampled, and the log cannot be written: every prediction still succeeds,
    and one log line says why logging stopped."""
    if breakage is disk_full and not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    if breakage is read_only and os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory: run as another user")
    log_dir = tmp_path / "predictions"
    breakage(log_dir)
    # one API worker: each process logs its own failure once
    env = {**NO_CACHE, "AGBENTO_API_WORKERS": "1", "AGBENTO_PREDICTION_LOG_SAMPLE": "1",
           "AGBENTO_PREDICTION_LOG_DIR": str(log_dir)}
    with start_server(ROOT, tiny_models.multiclass.tag, **env) as server:
        statuses = [httpx.post(f"{server.url}/predict", json={"data": [GOOD]}).status_code
                    for _ in range(20)]
        log = server.log()
    stopped = [line for line in log.splitlines() if "prediction logging stopped" in line]
    print(f"\nDRILL prediction log {breakage.__name__}: {statuses.count(200)}/20 answered 200; "
          f"log: {stopped}")
    assert statuses == [200] * 20
    assert len(stopped) == 1, log[-4000:]
    assert "Logging error" not in log and "Traceback" not in log
