"""AgbentoDown delivered end to end, by the real Prometheus and Alertmanager binaries.

The configs are the project's own (deploy/prometheus, deploy/alertmanager), copied with test
timings (short `for:`, scrape and evaluation intervals, group waits) and with every delivery
address pointed at a sink on loopback: an SMTP server (aiosmtpd) for the mail receiver and an
HTTP server for the Slack webhook. Rules, routing, receivers and templates are not rewritten,
so the test fails when the project's alerting breaks. Prometheus scrapes a real
`bentoml serve`; the test stops it, waits for the page by mail and Slack, starts it again on
the same port and waits for the resolve on both.
"""

from __future__ import annotations

import contextlib
import copy
import email
import email.policy
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.servers import free_port, start_server, stop
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS = shutil.which("prometheus")
# Debian names the binary after its package; upstream tarballs call it alertmanager
ALERTMANAGER = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="the prometheus and alertmanager binaries are not installed: run `make "
               "test-deps` (Debian packages prometheus, prometheus-alertmanager)",
    ),
]

# Test timings. Production waits a minute before paging and half a minute before grouping.
FOR = "2s"
INTERVAL = "1s"
DELIVERY_TIMEOUT_S = 30
T = TypeVar("T")


# -- the project's configs, with test timings and loopback sinks --------------------------


def fast_rules(rules: dict[str, Any]) -> dict[str, Any]:
    rules = copy.deepcopy(rules)
    for group in rules["groups"]:
        group.pop("interval", None)
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    return rules


def fast_prometheus_config(project: dict[str, Any], target: str,
                           alertmanager: str) -> dict[str, Any]:
    """The project's scrape job `agbento` aimed at `target`; rule_files left as they are."""
    config = copy.deepcopy(project)
    config["global"].update(scrape_interval=INTERVAL, scrape_timeout=INTERVAL,
                            evaluation_interval=INTERVAL)
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "agbento"]
    assert jobs, "deploy/prometheus/prometheus.yml has no scrape job named agbento"
    for job in jobs:
        job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = jobs  # nothing else to scrape here
    return config


def fast_routes(route: dict[str, Any]) -> None:
    for name, value in (("group_wait", INTERVAL), ("group_interval", INTERVAL),
                        ("repeat_interval", "1m")):
        if name in route:
            route[name] = value
    for child in route.get("routes", []):
        fast_routes(child)


def sink_alertmanager_config(project: dict[str, Any], smarthost: str, slack_url_file: Path,
                             password_file: Path) -> dict[str, Any]:
    """Every way out of Alertmanager pointed at a local sink; secrets files replaced."""
    config = copy.deepcopy(project)
    config["global"].update(smtp_smarthost=smarthost, smtp_require_tls=False)
    if "smtp_auth_password_file" in config["global"]:
        config["global"]["smtp_auth_password_file"] = str(password_file)
    for name in ("slack_api_url", "slack_api_url_file"):
        if config["global"].pop(name, None) is not None:
            config["global"]["slack_api_url_file"] = str(slack_url_file)
    fast_routes(config["route"])
    for receiver in config["receivers"]:
        kinds = {k for k in receiver if k.endswith("_configs")}
        unknown = kinds - {"email_configs", "slack_configs"}
        # a new kind of receiver would reach out of this machine: teach the test about it
        assert not unknown, f"receiver {receiver['name']}: no local sink for {sorted(unknown)}"
        for mail in receiver.get("email_configs", []):
            for key in ("smarthost", "require_tls", "auth_password", "auth_password_file"):
                mail.pop(key, None)  # the global (sink) settings apply
        for slack in receiver.get("slack_configs", []):
            slack.pop("api_url", None)
            slack["api_url_file"] = str(slack_url_file)
    return config


# -- sinks ---------------------------------------------------------------------------------


@dataclass
class Received:
    at: float  # time.time(): compared with Prometheus' sample timestamps
    title: str  # mail subject, or the Slack attachment's title
    body: Any


@dataclass
class Sink:
    items: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: Received) -> None:
        with self.lock:
            self.items.append(item)

    def first(self, *words: str) -> Received | None:
        with self.lock:
            return next((i for i in self.items if all(w in i.title for w in words)), None)

    def titles(self) -> list[str]:
        with self.lock:
            return [i.title for i in self.items]


class MailHandler:
    """aiosmtpd handler: every message accepted and kept."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.sink.add(Received(time.time(), str(message["subject"]),
                               {"to": list(envelope.rcpt_tos), "message": message}))
        return "250 OK"


@contextlib.contextmanager
def smtp_sink() -> Iterator[tuple[str, Sink]]:
    from aiosmtpd.controller import Controller

    sink = Sink()
    controller = Controller(MailHandler(sink), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield f"127.0.0.1:{controller.port}", sink
    finally:
        controller.stop()


@contextlib.contextmanager
def webhook_sink() -> Iterator[tuple[str, Sink]]:
    sink = Sink()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            payload = json.loads(self.rfile.read(int(self.headers["content-length"])))
            for attachment in payload.get("attachments") or [{}]:
                sink.add(Received(time.time(), attachment.get("title", ""), payload))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/services/T0/B0/test", sink
    finally:
        server.shutdown()
        server.server_close()


# -- processes -----------------------------------------------------------------------------


@dataclass
class Tool:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def run_tool(name: str, command: list[str], url: str, workdir: Path) -> Iterator[Tool]:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    tool = Tool(url, process, log_path)
    try:
        wait_for(f"{name} ready", lambda: ready(tool), 30, tool.log)
        yield tool
    finally:
        stop(process, timeout=10)


def ready(tool: Tool) -> bool | None:
    assert tool.process.poll() is None, f"exited:\n{tool.log()}"
    try:
        return httpx.get(f"{tool.url}/-/ready", timeout=1).status_code == 200 or None
    except httpx.HTTPError:
        return None


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float,
             diagnostics: Callable[[], str]) -> T:
    deadline = time.monotonic() + timeout_s
    while (found := probe()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s} s\n{diagnostics()}")
        time.sleep(0.1)
    return found


def target_up(prometheus: Tool) -> float | None:
    result = httpx.get(f"{prometheus.url}/api/v1/query",
                       params={"query": 'up{job="agbento"}'}).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def first_scrape_after(prometheus: Tool, since: float, up: bool) -> float:
    """Wall time of the first scrape after `since` that succeeded (up) or failed."""
    result = httpx.get(f"{prometheus.url}/api/v1/query",
                       params={"query": 'up{job="agbento"}[5m]'}).json()["data"]["result"]
    samples = [(float(at), value) for at, value in result[0]["values"]]
    return min(at for at, value in samples if at > since and value == str(int(up)))


# -- the test ------------------------------------------------------------------------------


def test_agbento_down_is_mailed_and_posted_then_resolved(
    tiny_models: TinyModels, tmp_path: Path, record_property: Callable[[str, Any], None]
) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(fast_rules(rules)))
    password_file = tmp_path / "smtp-password"
    password_file.write_text("test-password")
    slack_url_file = tmp_path / "slack-webhook-url"
    app_port, prometheus_port, alertmanager_port = free_port(), free_port(), free_port()

    with smtp_sink() as (smarthost, mail), webhook_sink() as (slack_url, slack):
        slack_url_file.write_text(slack_url)
        routing = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(
            sink_alertmanager_config(routing, smarthost, slack_url_file, password_file)))
        alertmanager_cmd = [
            str(ALERTMANAGER), f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{alertmanager_port}",
            "--cluster.listen-address=",  # no gossip: a single local instance
        ]
        scraping = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(fast_prometheus_config(
            scraping, f"127.0.0.1:{app_port}", f"127.0.0.1:{alertmanager_port}")))
        prometheus_cmd = [
            str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ]
        with run_tool("alertmanager", alertmanager_cmd, f"http://127.0.0.1:{alertmanager_port}",
                      tmp_path) as alertmanager:

            def state() -> str:
                alerts = httpx.get(f"{alertmanager.url}/api/v2/alerts").text[:2000]
                return (f"mail: {mail.titles()}\nslack: {slack.titles()}\n"
                        f"alertmanager alerts: {alerts}\nalertmanager log:\n{alertmanager.log()}")

            tag = tiny_models.multiclass.tag
            with start_server(ROOT, tag, port=app_port) as server, run_tool(
                "prometheus", prometheus_cmd, f"http://127.0.0.1:{prometheus_port}", tmp_path
            ) as prometheus:
                loaded = httpx.get(f"{prometheus.url}/api/v1/rules").json()["data"]["groups"]
                assert sum(len(g["rules"]) for g in loaded) == sum(
                    len(g["rules"]) for g in rules["groups"])
                wait_for("scrape of the service", lambda: target_up(prometheus) == 1 or None,
                         15, prometheus.log)
                stopping = time.time()
                stop(server.process, timeout=10)  # SIGTERM; SIGKILL after 10 s
                stopped = time.time()
                fired_mail = wait_for("AgbentoDown mail", lambda: mail.first(
                    "FIRING", "AgbentoDown"), DELIVERY_TIMEOUT_S, state)
                fired_slack = wait_for("AgbentoDown Slack message", lambda: slack.first(
                    "AgbentoDown (firing)"), DELIVERY_TIMEOUT_S, state)
                restarting = time.time()
                with start_server(ROOT, tag, port=app_port):
                    restarted = time.time()
                    resolved_mail = wait_for("resolved mail", lambda: mail.first(
                        "RESOLVED", "AgbentoDown"), DELIVERY_TIMEOUT_S, state)
                    resolved_slack = wait_for("resolved Slack message", lambda: slack.first(
                        "AgbentoDown (resolved)"), DELIVERY_TIMEOUT_S, state)
                    went_down = first_scrape_after(prometheus, stopping, up=False)
                    back_up = first_scrape_after(prometheus, restarting, up=True)

    # routed as the project says: the page goes to the team's mailbox and the on-call channel
    assert fired_mail.body["to"] == ["ml-team@example.com"]
    assert f"127.0.0.1:{app_port}" in fired_mail.body["message"].get_body(
        ("plain", "html")).get_content()
    assert fired_slack.body["channel"] == "#agbento-oncall"
    assert f"127.0.0.1:{app_port}" in fired_slack.body["attachments"][0]["text"]
    times = {
        # SIGTERM -> process gone; the port closes before that, so the page is timed from
        # the first failed scrape, and the resolve from the first good scrape after the
        # restart (/metrics answers before /readyz does)
        "sigterm_to_exit_s": stopped - stopping,
        "sigterm_to_failed_scrape_s": went_down - stopping,
        "failed_scrape_to_mail_s": fired_mail.at - went_down,
        "failed_scrape_to_slack_s": fired_slack.at - went_down,
        "restart_to_ready_s": restarted - restarting,
        "good_scrape_to_resolved_mail_s": resolved_mail.at - back_up,
        "good_scrape_to_resolved_slack_s": resolved_slack.at - back_up,
    }
    for name, value in times.items():
        record_property(name, round(value, 2))
    print("alert delivery:", json.dumps({k: round(v, 2) for k, v in times.items()}))
