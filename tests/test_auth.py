"""The keys file in-process: every entry validated at (re)load, a bad one refused alone."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from agbento.core.errors import ApiError
from agbento.http.access import AccessGate
from agbento.http.auth import ApiKey, ApiKeyRing, digest, expiry_instant, load_keys, new_key
from agbento.http.ratelimit import RateLimitConfig

ROOT = Path(__file__).resolve().parent.parent


def entry(key: str, **fields: object) -> dict[str, object]:
    return {"id": key.split(".")[1], "owner": "tests", "permissions": ["predict"],
            "sha256": digest(key), **fields}


def write(path: Path, entries: list[object]) -> None:
    path.write_text(json.dumps({"keys": entries}))
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # the ring sees a new stamp


def test_a_date_alone_means_the_end_of_that_day_utc() -> None:
    key = ApiKey(id="k", owner="", permissions=("predict",), sha256="0" * 64,
                 expires_at="2027-06-30")
    assert not key.expired(datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC))
    assert key.expired(datetime(2027, 7, 1, tzinfo=UTC))
    # a datetime without an offset is UTC; with one, it is honoured
    assert expiry_instant("2027-06-30T12:00") == datetime(2027, 6, 30, 12, tzinfo=UTC)
    assert expiry_instant("2027-06-30T12:00+02:00") == datetime(2027, 6, 30, 10, tzinfo=UTC)


@pytest.mark.parametrize(("fields", "problem"), [
    ({"expires_at": "2027-06-31"}, "expires_at"),
    ({"expires_at": "next tuesday"}, "expires_at"),
    ({"expires_at": "2027-W26"}, "YYYY-MM-DD"),
    ({"expires_at": 20270630}, "expires_at"),
    ({"created_at": "yesterday"}, "created_at"),
    ({"permissions": ["predict", "root"]}, "permissions"),
    ({"permissions": "predict"}, "permissions"),
    ({"permissions": []}, "permissions"),
    ({"permissions": [["predict"]]}, "permissions"),
    ({"sha256": "abc"}, "sha256"),
    ({"sha256": None}, "sha256"),
    ({"owner": 7}, "owner"),
    ({"expire_at": "2001-01-01"}, "unknown field"),
])
def test_a_bad_entry_is_refused_and_named_while_the_others_load(
    tmp_path: Path, fields: dict[str, object], problem: str
) -> None:
    good, bad = new_key("good"), new_key("bad")
    path = tmp_path / "keys.json"
    write(path, [entry(good), entry(bad, **fields)])
    loaded = load_keys(path)
    assert list(loaded.keys) == ["good"]
    (refused,) = loaded.refused
    assert refused.name == "bad" and problem in refused.problem


def test_entries_without_a_usable_id_or_with_a_repeated_one_are_refused(tmp_path: Path) -> None:
    good, twice = new_key("good"), new_key("twice")
    path = tmp_path / "keys.json"
    write(path, [entry(good), "not an object", {"permissions": ["predict"]},
                 entry(twice), entry(twice, permissions=["admin"])])
    loaded = load_keys(path)
    assert list(loaded.keys) == ["good"]
    assert [r.name for r in loaded.refused] == ["#2", "#3", "twice", "twice"]


def test_ring_refuses_a_bad_key_at_reload_with_a_log_line_and_no_exception(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, dated, broken, past = (new_key(n) for n in ("good", "dated", "broken", "past"))
    path = tmp_path / "keys.json"
    write(path, [entry(good), entry(dated), entry(broken)])
    ring = ApiKeyRing(path)
    assert ring.authenticate(broken).id == "broken"
    # hand-edited: a date alone (was a TypeError per request), a malformed date (ValueError)
    with caplog.at_level(logging.ERROR, logger="agbento.http.auth"):
        write(path, [entry(good), entry(dated, expires_at="2999-06-30"),
                     entry(broken, expires_at="2027-13-45"),
                     entry(past, expires_at="2001-01-01")])
        ring.reload()
    refused = [r.getMessage() for r in caplog.records]
    assert len(refused) == 1 and "'broken'" in refused[0] and "2027-13-45" in refused[0]
    assert ring.authenticate(good).id == "good"
    assert ring.authenticate(dated).id == "dated"
    for key, message in ((broken, "not valid"), (past, "expired")):
        with pytest.raises(ApiError, match=message) as raised:
            ring.authenticate(key)
        assert raised.value.status == 401


def test_gate_answers_a_refused_key_401_in_our_shape(tmp_path: Path) -> None:
    good, broken = new_key("good"), new_key("broken")
    path = tmp_path / "keys.json"
    write(path, [entry(good), entry(broken, expires_at="2027-06-30T25:00")])
    app = Starlette(routes=[Route("/predict", lambda _r: PlainTextResponse("ok"),
                                  methods=["POST"])])
    client = TestClient(AccessGate(app, str(path), RateLimitConfig(rps=0, burst=1),
                                   metrics_auth=False))
    assert client.post("/predict", headers={"X-API-Key": good}).status_code == 200
    refused = client.post("/predict", headers={"X-API-Key": broken})
    assert refused.status_code == 401
    body = refused.json()
    assert body["error"]["code"] == "unauthorized" and body["request_id"]


def test_keys_cli_keeps_refused_entries_and_takes_a_date(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    broken = entry(new_key("broken"), expires_at="soon")
    write(path, [broken])
    cli = [sys.executable, "-m", "agbento.keys"]
    created = subprocess.run([*cli, "create", "--id", "new", "--permissions", "predict",
                              "--expires", "2027-06-30", "--file", str(path)],
                             capture_output=True, text=True, cwd=ROOT)
    assert created.returncode == 0, created.stderr
    assert "'broken'" in created.stderr  # warned, not dropped
    stored = json.loads(path.read_text())["keys"]
    assert [e["id"] for e in stored] == ["new", "broken"] and stored[1] == broken
    assert stored[0]["expires_at"] == "2027-06-30"
    revoked = subprocess.run([*cli, "revoke", "--id", "broken", "--file", str(path)],
                             capture_output=True, text=True, cwd=ROOT)
    assert revoked.returncode == 0, revoked.stderr
    assert [e["id"] for e in json.loads(path.read_text())["keys"]] == ["new"]
    bad = subprocess.run([*cli, "create", "--id", "x", "--permissions", "predict",
                          "--expires", "2027-02-30", "--file", str(path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--expires" in bad.stderr and "Traceback" not in bad.stderr
