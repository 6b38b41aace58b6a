"""The benchmark's pure parts, in-process: rows for any model, bodies in every format,
distinct one-row bodies, the targets table; and the shipped birdstrikes table it trains on."""

from __future__ import annotations

import io
import json
import shutil
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from agbento.cli.train import train_config
from agbento.models.store import ModelCard
from agbento.rows.schema import FeatureSchema, json_records
from agbento.training.pipeline import DATASETS, TrainConfig, load_data
from loadtests import bench_peers, bench_report, bench_rows
from loadtests.bench_report import (
    SINGLE,
    ModelResult,
    Report,
    markdown,
    open_load,
    targets,
)
from loadtests.bench_servers import OpenRun, Run
from loadtests.peers import venvs

LABEL = "outcome"


def mixed_table(rows: int = 60) -> pd.DataFrame:
    """Numbers, a category, a date and free text (several words, mostly distinct), a label."""
    words = ["engine", "wing", "gear", "windshield", "radome", "landing", "light", "nose"]
    return pd.DataFrame({
        "height": [float(100 * i) for i in range(rows)],
        "engines": [2 + i % 3 for i in range(rows)],
        "sky": [["clear", "cloud", "overcast"][i % 3] for i in range(rows)],
        "date": pd.date_range("1990-01-01", periods=rows, freq="D"),
        "remarks": [f"bird hit {words[i % 8]} {words[(i * 3) % 8]} flight {i}"
                    for i in range(rows)],
        LABEL: [["yes", "no"][i % 2] for i in range(rows)],
    })


def card_for(table: pd.DataFrame, training: dict | None = None) -> ModelCard:
    schema = FeatureSchema.derive(table, LABEL, "binary")
    return ModelCard(tag="mixed:test", labels={}, path=Path("/nowhere"), metadata={
        "label": LABEL, "problem_type": "binary", "schema": schema.to_dict(),
        "training": training or {"source": "/gone/train.csv"}})


def test_the_mixed_table_has_every_kind() -> None:
    kinds = {f.name: f.kind for f in card_for(mixed_table()).schema.features}
    assert kinds == {"height": "numeric", "engines": "numeric", "sky": "categorical",
                     "date": "datetime", "remarks": "text"}


def test_rows_come_from_the_file_without_label_unknown_columns_and_refused_rows(
        tmp_path: Path) -> None:
    table = mixed_table()
    card = card_for(table)
    data = table.assign(note="not a feature")
    data["height"] = data["height"].astype(object)
    data.loc[5, "height"] = "tall"  # refused by the schema: left out, counted
    path = tmp_path / "rows.csv"
    data.to_csv(path, index=False)

    rows = bench_rows.model_rows(card, path, LABEL)

    assert list(rows.frame.columns) == card.schema.names
    assert rows.dropped_columns == ["note"]
    assert rows.rejected_rows == 1
    assert len(rows.frame) == len(table) - 1
    assert card.schema.validate_rows(json_records(rows.frame)).ok
    assert rows.source == str(path)


def test_rows_from_parquet_keep_dates_and_text(tmp_path: Path) -> None:
    table = mixed_table()
    path = tmp_path / "rows.parquet"
    table.to_parquet(path, index=False)
    rows = bench_rows.model_rows(card_for(table), path)  # the label comes from the card
    assert LABEL not in rows.frame.columns
    assert pd.api.types.is_datetime64_any_dtype(rows.frame["date"])
    assert rows.rejected_rows == 0


def test_a_model_whose_training_file_is_gone_asks_for_data() -> None:
    with pytest.raises(bench_rows.RowsError, match="--data"):
        bench_rows.model_rows(card_for(mixed_table()))


def test_a_file_without_the_models_features_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(path, index=False)
    with pytest.raises(bench_rows.RowsError, match="none of the model's features"):
        bench_rows.model_rows(card_for(mixed_table()), path)


def test_a_shipped_dataset_model_finds_its_rows_without_data() -> None:
    table = DATASETS["penguins"].load()
    schema = FeatureSchema.derive(table.dropna(subset=["species"]), "species", "multiclass")
    card = ModelCard(tag="p:1", labels={}, path=Path("/nowhere"), metadata={
        "label": "species", "problem_type": "multiclass", "schema": schema.to_dict(),
        "training": {"source": "palmerpenguins (demo)", "dataset": "penguins"}})
    rows = bench_rows.model_rows(card)
    assert "species" not in rows.frame.columns
    assert len(rows.frame) + rows.rejected_rows == len(table)


@pytest.mark.parametrize("fmt", list(bench_rows.FORMATS))
def test_bodies_hold_the_rows_in_every_format(fmt: str) -> None:
    frame = mixed_table(30).drop(columns=LABEL)
    frame.loc[3, "remarks"] = None
    frame.loc[4, "height"] = None
    body = bench_rows.body(frame, fmt)
    if fmt == "json":
        assert json.loads(body) == {"data": json_records(frame)}
        return
    if fmt == "csv":
        back = pd.read_csv(io.BytesIO(body), parse_dates=["date"]).astype({"remarks": object})
        back["remarks"] = back["remarks"].where(back["remarks"].notna(), None)
    elif fmt == "parquet":
        back = pd.read_parquet(io.BytesIO(body))
    else:
        back = pa.ipc.open_stream(body).read_all().to_pandas()
    back["date"] = back["date"].astype("datetime64[ns]")
    pd.testing.assert_frame_equal(back, frame, check_dtype=fmt != "csv")


def test_distinct_single_bodies_are_distinct_valid_and_in_range() -> None:
    table = mixed_table(20)
    card = card_for(table)
    rows = table.drop(columns=LABEL)
    bodies = bench_rows.distinct_single_bodies(rows, card.schema, 200)
    assert len(bodies) == len(set(bodies)) == 200
    records = [json.loads(b)["data"][0] for b in bodies]
    result = card.schema.validate_rows(records)
    assert result.ok and not result.out_of_range
    # whole numbers stay whole, within the training range
    assert {r["engines"] for r in records} <= set(table["engines"])
    assert len({r["height"] for r in records}) > len(table)


def test_distinct_single_bodies_stop_when_nothing_can_vary() -> None:
    table = mixed_table(12).drop(columns=["height", "engines"])
    card = ModelCard("m:1", {}, {"label": LABEL, "problem_type": "binary", "schema":
                                 FeatureSchema.derive(table, LABEL, "binary").to_dict()},
                     Path("/nowhere"))
    bodies = bench_rows.distinct_single_bodies(table.drop(columns=LABEL), card.schema, 50)
    assert len(bodies) == len(set(bodies)) == 12


def run(server: str, scenario: str, concurrency: int, rows: int, rps: float,
        p99: float = 50.0, non2xx: int = 0) -> Run:
    return Run(server=server, scenario=scenario, concurrency=concurrency,
               rows_per_request=rows, requests_per_s=rps, rows_per_s=rps * rows, p50_ms=10.0,
               p95_ms=20.0, p99_ms=p99, max_ms=p99, requests=1000, non2xx=non2xx,
               socket_errors=0, server_cpu_pct=100.0, server_peak_rss_mb=500.0,
               wrk_cpu_pct=5.0, non2xx_by_status={"503": non2xx} if non2xx else {})


def sample_report() -> Report:
    model = ModelResult(key="demo", tag="demo:1", problem_type="multiclass", models="GBM",
                        features="x:numeric", rows_source="test", rows_note="")
    model.in_process = {"64": {"rows_per_s": 8000.0, "ms": 8.0},
                        "1000": {"rows_per_s": 100_000.0, "ms": 10.0},
                        "10000": {"rows_per_s": 400_000.0, "ms": 25.0}}
    model.servers = {"agbento split": {"asked": "split", "effective": "split"},
                     "agbento fused": {"asked": "fused", "effective": "split"},
                     "baseline": {"asked": "-", "effective": "seed-style"}}
    model.runs = [run("agbento split", SINGLE, 64, 1, 900.0),
                  run("agbento fused", SINGLE, 64, 1, 1000.0, p99=200.0, non2xx=3),
                  run("baseline", SINGLE, 64, 1, 60.0),
                  run("agbento split", "1000-json", 4, 1000, 70.0),  # 70,000 rows/s: 70%
                  run("agbento split", "1000-parquet", 4, 1000, 75.0),  # 75%: missed
                  run("agbento split", "10000-arrow", 4, 10_000, 36.0)]  # 90%
    batch = {"rows": 1_000_000, "chunk_rows": 10_000, "concurrency": 4, "retries": 0}
    model.batch_client = {"http": {**batch, "rows_per_s": 200_000.0, "seconds": 5.0,
                                   "where": "agbento split"},
                          "local": {**batch, "rows_per_s": 380_000.0, "seconds": 2.6,
                                    "where": "in-process"}}
    report = Report(machine={}, settings={}, models=[model])
    report.echoes = [run("echo split", SINGLE, 64, 1, 1000.0),
                     run("echo fused", SINGLE, 64, 1, 3000.0)]
    return report


def test_targets_are_same_run_shares_beside_the_issues_targets() -> None:
    rows = {t["what"]: t for t in targets(sample_report())}
    json_1000 = rows["1,000-row JSON, agbento split, 4 clients"]
    assert (json_1000["figure"], json_1000["target"], json_1000["met"]) == (0.7, ">= 60%", True)
    assert rows["1,000-row Parquet, agbento split, 4 clients"]["met"] is False
    assert rows["10,000-row Arrow, agbento split, 4 clients"]["figure"] == 0.9
    # a scenario the server did not run has no figure to show
    assert not any("1,000-row Arrow," in what for what in rows)
    http = rows["batch client over HTTP (Parquet in, Parquet out), 1,000,000 rows"]
    assert (http["figure"], http["met"]) == (0.5, False)
    assert rows["batch client --local, 1,000,000 rows"]["figure"] == 0.95
    split = "single row, agbento split, 64 clients"
    assert rows[f"{split} vs bare split echo"]["figure"] == 0.9
    # issue 17's fused-echo target is the fused topology's; split gets the share alone
    assert (rows[f"{split} vs bare fused echo"]["target"],
            rows[f"{split} vs bare fused echo"]["met"]) == ("-", None)
    assert rows[f"{split} vs the seed-style server"]["figure"] == 15.0
    assert rows[f"{split} vs the seed-style server"]["met"] is False


def test_a_fused_run_that_ran_split_says_so() -> None:
    rows = {t["what"]: t for t in targets(sample_report())}
    fused = "single row, agbento fused, 64 clients (ran split)"
    assert rows[f"{fused} vs bare fused echo"]["figure"] == round(1000 / 3000, 3)
    assert rows[f"{fused}: non-2xx and socket errors"]["met"] is False
    assert rows[f"{fused}: p99"]["met"] is False


def test_the_markdown_puts_each_target_beside_its_figure() -> None:
    report = sample_report()
    report.settings = {"mode": "test", "when": "now", "seconds": 1, "note": "",
                       "service_env": "env"}
    report.machine = {"cpu": "cpu", "cores": 2, "memory_gb": 1, "os": "os", "python": "3",
                      "load_generator": "wrk"}
    report.echo_servers = {"echo split": {"workers": "1 + 1", "command": "c",
                                          "cold_start_s": 1},
                           "echo fused": {"workers": "2", "command": "c", "cold_start_s": 1}}
    for info in report.models[0].servers.values():
        info["cold_start_s"] = 1.0
    report.targets = targets(report)
    text = markdown(report)
    assert "| demo | 14 | 1,000-row JSON, agbento split, 4 clients | 70% | >= 60% | met |" in text
    assert "| 15.0x | >= 16x (stretch 20x) | **missed** |" in text


def test_a_report_reads_back_from_its_json() -> None:
    from dataclasses import asdict

    from loadtests.bench_report import report_from_json

    report = sample_report()
    report.targets = targets(report)
    again = report_from_json(json.loads(json.dumps(asdict(report))))
    assert again == report


def test_the_birdstrikes_table_has_dates_free_text_numbers_and_categories() -> None:
    dataset = DATASETS["birdstrikes"]
    data = load_data(TrainConfig(label=dataset.label, dataset="birdstrikes"),
                     lambda _line: None)
    kinds = {f.kind for f in data.schema.features}
    assert kinds >= {"datetime", "text", "numeric", "categorical"}
    assert data.problem_type == "multiclass"
    assert len(data.table) > 10_000


def test_train_py_dataset_brings_its_label_name_and_quick_settings() -> None:
    config = train_config(dataset="birdstrikes")
    assert (config.dataset, config.name, config.label) == (
        "birdstrikes", "agbento-birdstrikes", "phase_of_flt")
    assert config.time_limit == DATASETS["birdstrikes"].time_limit
    given = train_config(dataset="birdstrikes", name="b", time_limit=5)
    assert (given.name, given.time_limit) == ("b", 5)
    demo = train_config(demo=True)
    assert (demo.name, demo.time_limit, demo.dataset) == ("agbento-demo", 120, None)


# -- issue 27: the peers, their bodies and answers, open loop --------------------------------


def test_peer_bodies_carry_the_same_rows_in_each_protocol() -> None:
    table = mixed_table(3).drop(columns=LABEL)
    table.loc[1, "height"] = None
    schema = card_for(mixed_table()).schema
    records = json_records(table)

    assert json.loads(bench_peers.encode(records, bench_peers.AGBENTO, schema)) == {
        "data": records}
    v1 = json.loads(bench_peers.encode(records, bench_peers.KSERVE_V1, schema))
    assert v1 == {"instances": [{name: [r[name] for r in records] for name in schema.names}]}
    v2 = json.loads(bench_peers.encode(records, bench_peers.V2, schema))
    assert v2["parameters"] == {"content_type": "pd"}
    tensors = {t["name"]: t for t in v2["inputs"]}
    assert list(tensors) == schema.names
    assert tensors["height"]["datatype"] == "FP64" and tensors["height"]["data"][1] is None
    assert tensors["sky"]["datatype"] == "BYTES" and tensors["date"]["datatype"] == "BYTES"
    assert all(t["shape"] == [3] for t in tensors.values())
    assert [dict(zip(tensors, row, strict=True))
            for row in zip(*(t["data"] for t in tensors.values()), strict=True)] == records


PROBABILITIES = [{"a": 0.75, "b": 0.25}, {"a": 0.125, "b": 0.875}]


@pytest.mark.parametrize("answer", [
    {"predictions": ["a", "b"], "probabilities": PROBABILITIES},  # agbento, Ray Serve
    {"predictions": [{"prediction": "a", **PROBABILITIES[0]},  # KServe V1
                     {"prediction": "b", **PROBABILITIES[1]}]},
    {"outputs": [{"name": "prediction", "datatype": "BYTES", "data": ["a", "b"]},  # V2
                 {"name": "a", "datatype": "FP32", "data": [0.75, 0.125]},
                 {"name": "b", "datatype": "FP32", "data": [0.25, 0.875]}]},
])
def test_every_peers_answer_reads_as_labels_and_probabilities(answer: dict) -> None:
    assert bench_peers.answers(answer) == (["a", "b"], PROBABILITIES)


def test_a_peer_that_answers_otherwise_is_caught() -> None:
    want = (["a", "b"], PROBABILITIES)
    # float32 rounding of a probability is the same answer
    assert bench_peers.mismatch((["a", "b"], [{"a": 0.7500001, "b": 0.25}, PROBABILITIES[1]]),
                                want, [0, 1]) is None
    assert "row 7: predicted 'a'" in bench_peers.mismatch(
        (["a", "a"], PROBABILITIES), want, [3, 7])
    swapped = (["a", "b"], [PROBABILITIES[1], PROBABILITIES[0]])  # rows mixed in a batch
    assert "row 0: probability of 'a'" in bench_peers.mismatch(swapped, want, [0, 1])
    assert "1 answers for 2 rows" in bench_peers.mismatch((["a"], None), want, [0, 1])
    assert "probability of 'a' None" in bench_peers.mismatch((["a", "b"], None), want, [0, 1])
    assert bench_peers.mismatch((["1.5"], None), (["1.5"], None), [0]) is None  # regression


def test_every_peer_names_its_venv_and_endpoints_and_gets_its_ports() -> None:
    launch = bench_peers.Launch(ports=(8000, 8001, 8002), python=Path("/v/bin/python"),
                                model_name="demo", predictor=Path("/m/predictor"), workers=2,
                                scratch=Path("/tmp/x"))
    for peer in bench_peers.PEERS.values():
        assert peer.venv in venvs.PEERS
        command = " ".join(peer.command(launch))
        env = bench_peers.peer_env(peer, launch)
        assert "8000" in command + " ".join(env.values())
        assert "/m/predictor" in command + " ".join(env.values())
        assert env["OMP_NUM_THREADS"] == "1"
        for endpoint in peer.endpoints:
            assert bench_peers.endpoint_path(endpoint, "demo").startswith("/")
    assert "--workers 2" in " ".join(bench_peers.PEERS["kserve"].command(launch))
    assert bench_peers.selected("ray,kserve") == [bench_peers.PEERS["ray"],
                                                   bench_peers.PEERS["kserve"]]
    with pytest.raises(SystemExit, match="torchserve"):
        bench_peers.selected("torchserve")


def test_peer_venvs_pin_the_model_libraries_of_this_venv() -> None:
    wanted, pins = venvs.requirements(venvs.PEERS["kserve"])
    assert "kserve==0.21.0" in wanted
    assert any(w.startswith("autogluon.tabular[lightgbm,catboost,xgboost]==") for w in wanted)
    assert any(p.startswith("lightgbm==") for p in pins)
    assert venvs.venv_dir(venvs.PEERS["kserve"]) != venvs.venv_dir(venvs.PEERS["mlserver"])
    log = "Collecting x\nERROR: Cannot install a because these package versions have " \
          "conflicting dependencies.\nThe conflict is caused by:\n    a 1 depends on b<2"
    assert venvs.conflict_lines(log).startswith("ERROR: Cannot install a")


def open_run(server: str, load: str, rate: float, p99: float, errors: int = 0) -> OpenRun:
    return OpenRun(server=server, scenario=SINGLE, load=load, offered_per_s=rate,
                   answered_per_s=rate, p50_ms=p99 / 4, p90_ms=p99 / 2, p99_ms=p99,
                   p999_ms=p99 * 2, max_ms=p99 * 3, requests=int(rate * 10), non2xx=0,
                   errors=errors, unfinished=0, late=0, max_waiting=0, connections=4,
                   server_cpu_pct=50.0, server_peak_rss_mb=500.0, generator_cpu_pct=3.0,
                   non2xx_by_status={})


def report_with_peers() -> Report:
    report = sample_report()
    model = report.models[0]
    for name in ("kserve v1", "mlserver"):
        model.servers[name] = {"kind": "peer", "asked": "-", "effective": name,
                               "cold_start_s": 5.0, "config": "c", "answers": "same",
                               "venv": {"install_s": 60, "size_mb": 1000,
                                        "versions": {"x": "1"}}}
    model.runs += [run("kserve v1", SINGLE, 64, 1, 80.0),
                   run("mlserver", SINGLE, 64, 1, 500.0),  # the best peer: 1000 / 500 = 2x
                   run("kserve v1", "1000-json", 4, 1000, 50.0),  # the best: 70 / 50 = 1.4x
                   run("mlserver", "1000-json", 4, 1000, 40.0),
                   run("agbento fused", "1000-json", 4, 1000, 55.0)]
    model.open_loop = [open_run("agbento split", open_load(0.5), 450.0, 12.0),
                       open_run("agbento fused", open_load(0.5), 500.0, 30.0),
                       open_run("mlserver", open_load(0.5, "agbento"), 500.0, 900.0, 7)]
    return report


def test_issue_27_targets_hold_agbento_to_the_best_peer_on_the_same_run() -> None:
    rows = {t["what"]: t for t in targets(report_with_peers())}
    fused = rows["single row, 64 clients, agbento fused vs the best peer"]
    assert (fused["figure"], fused["target"], fused["met"]) == (2.0, ">= 1.5x", True)
    assert "(mlserver)" in fused["detail"]
    split = rows["1,000-row JSON, 4 clients, agbento split vs the best peer"]
    assert (split["figure"], split["met"]) == (1.4, True)
    assert rows["1,000-row JSON, 4 clients, agbento fused vs the best peer"]["met"] is False
    half = rows["open loop, agbento split, 50% of own peak (450/s): p99"]
    assert (half["figure"], half["target"], half["met"]) == (12.0, "<= 25 ms", True)
    assert rows["open loop, agbento fused, 50% of own peak (500/s): p99"]["met"] is False
    # the seed-style server is no peer; a report without peers has no issue-27 rows
    assert not any(t["issue"] == "27" for t in targets(sample_report()))


def test_the_markdown_shows_the_peers_and_the_open_loop_and_reads_back() -> None:
    from dataclasses import asdict

    from loadtests.bench_report import report_from_json

    report = report_with_peers()
    report.targets = targets(report)
    for info in report.models[0].servers.values():
        info.setdefault("cold_start_s", 1.0)
    text = "\n".join(bench_report.model_section(report.models[0]))
    assert "| mlserver | 500 (50) | 40000 (50) | 0 | 500 | 5.0 |" in text
    assert "| mlserver | 50% of agbento's peak | 500 | 500 |" in text
    assert "| same | 60 s, 1000 MB | x 1 |" in text
    again = report_from_json(json.loads(json.dumps(asdict(report))))
    assert again == report


OPENLOOP_C = Path(__file__).resolve().parent.parent / "loadtests" / "openloop.c"


class TinyHttp(socketserver.ThreadingTCPServer):
    """A keep-alive HTTP/1.1 server on loopback that keeps every body it got: a body with
    "fail" is answered 503, "close" with Connection: close, "chunk" chunked; else 200, and
    "tag" adds `X-Agbento-Model: m:1`."""

    daemon_threads = True

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        super().__init__(("127.0.0.1", 0), TinyHandler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class TinyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            head = [line := self.rfile.readline()]
            while line not in (b"\r\n", b""):
                head.append(line := self.rfile.readline())
            if line == b"":
                return  # the generator hung up
            length = next(int(x.split(b":")[1]) for x in head
                          if x.lower().startswith(b"content-length:"))
            body = self.rfile.read(length)
            self.server.bodies.append(body)  # type: ignore[attr-defined]
            if b"chunk" in body:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                continue
            status = b"503 Busy" if b"fail" in body else b"200 OK"
            close = b"Connection: close\r\n" if b"close" in body else b""
            tag = b"X-Agbento-Model: m:1\r\n" if b"tag" in body else b""
            self.wfile.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n" + close
                             + tag + b"\r\nok")
            if close:
                return


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds loadtests/openloop.c")
def test_the_open_loop_generator_sends_every_due_request_and_counts_what_came_back(
        tmp_path: Path) -> None:
    binary = tmp_path / "openloop"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(OPENLOOP_C)], check=True)
    lines = [json.dumps({"n": i}) for i in range(37)] + ['{"fail":1}', '{"close":1}', '{"chunk":1}']
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text("\n".join(lines) + "\n")
    server = TinyHttp()
    try:
        done = subprocess.run(
            [str(binary), "-r", "200", "-d", "0.8", "-c", "8", f"http://127.0.0.1:{server.port}/p"],
            env={"BODIES_FILE": str(bodies), "CONTENT_TYPE": "application/json"},
            capture_output=True, text=True, timeout=60, check=True)
    finally:
        server.stop()
    summary = json.loads(done.stdout.split("OPENLOOP_JSON ", 1)[1])
    assert summary["due"] == summary["sent"] == 160
    assert summary["requests"] == len(server.bodies) == 160
    assert summary["errors"] == summary["unfinished"] == 0
    # the bodies are walked in order from some offset: each one of the 40 four times
    assert sorted(set(server.bodies)) == sorted(line.encode() for line in lines)
    assert summary["non2xx"] == summary["non2xx_by_status"]["503"] == 4
    assert 0 <= summary["p50_ms"] <= summary["p99_ms"] <= summary["p999_ms"] <= summary["max_ms"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds loadtests/openloop.c")
def test_closed_loop_writes_every_answer_with_its_times_status_and_model(
        tmp_path: Path) -> None:
    binary = tmp_path / "openloop"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(OPENLOOP_C)], check=True)
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"tag":1}\n{"n":2}\n{"fail":3}\n{"close":4,"tag":1}\n')
    log = tmp_path / "answers.txt"
    server = TinyHttp()
    try:
        started = time.time()
        done = subprocess.run(
            [str(binary), "-C", "-d", "0.5", "-c", "3", "-l", str(log),
             f"http://127.0.0.1:{server.port}/p"],
            env={"BODIES_FILE": str(bodies), "CONTENT_TYPE": "application/json"},
            capture_output=True, text=True, timeout=60, check=True)
        ended = time.time()
    finally:
        server.stop()
    summary = json.loads(done.stdout.split("OPENLOOP_JSON ", 1)[1])
    answers = [line.split() for line in log.read_text().splitlines()]
    assert summary["requests"] == len(answers) == len(server.bodies) > 20
    assert summary["errors"] == 0 and summary["connections"] <= 3
    for sent, answered, status, model in answers:
        assert started - 1 < int(sent) / 1e6 <= int(answered) / 1e6 < ended + 1
        assert (status, model) in {("200", "m:1"), ("200", "-"), ("503", "-")}
    assert sum(a[2] == "503" for a in answers) == summary["non2xx"] > 0


def test_the_open_loop_generator_refuses_a_target_off_loopback(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc builds loadtests/openloop.c")
    binary = tmp_path / "openloop"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(OPENLOOP_C)], check=True)
    body = tmp_path / "b.json"
    body.write_text("{}")
    done = subprocess.run([str(binary), "-r", "10", "-d", "1", "http://10.1.2.3:80/"],
                          env={"BODY_FILE": str(body)}, capture_output=True, text=True)
    assert done.returncode == 2 and "only loopback" in done.stderr


def test_ab_settings_runs_and_order() -> None:
    from loadtests import ab

    assert ab.parse_env(["AGBENTO_MONITORING=on", "AGBENTO_SHADOW_MODEL=", "X=a=b"]) == {
        "AGBENTO_MONITORING": "on", "AGBENTO_SHADOW_MODEL": None, "X": "a=b"}
    with pytest.raises(Exception, match="NAME=VALUE"):
        ab.parse_env(["AGBENTO_MONITORING"])
    assert ab.parse_runs("single:64,1000-json:4") == [("single", 64), ("1000-json", 4)]
    with pytest.raises(Exception, match="KIND:CLIENTS"):
        ab.parse_runs("10000-json:4")
    assert [ab.order(n) for n in (1, 2, 3)] == [("a", "b"), ("b", "a"), ("a", "b")]


def test_ab_counters_are_summed_per_label_set_and_their_increase_kept() -> None:
    from loadtests import ab

    text = ('# HELP agbento_shadow_requests_total x\n# TYPE agbento_shadow_requests_total counter\n'
            'agbento_shadow_requests_total{result="scored",shadow="m:2"} 10.0\n'
            'agbento_shadow_requests_total{result="dropped",shadow="m:2"} 0.0\n'
            '# HELP other_total y\n# TYPE other_total counter\nother_total 5.0\n')
    totals = ab.counter_totals(text, "agbento_shadow_requests")
    assert totals == {"result=scored,shadow=m:2": 10.0, "result=dropped,shadow=m:2": 0.0}
    assert ab.increase({"result=scored,shadow=m:2": 4.0}, totals) == {
        "result=scored,shadow=m:2": 6.0}


def test_ab_summary_pairs_each_round_and_takes_the_median_ratio() -> None:
    from loadtests import ab

    runs = [{"round": n, "arm": arm, "kind": "single", "requests_per_s": rps}
            for n, arm, rps in [(1, "a", 97), (1, "b", 100), (2, "b", 100), (2, "a", 90),
                                (3, "a", 99), (3, "b", 100), (4, "a", 50)]]  # 4: no B
    summary = ab.summarize(runs, "single", 3.0)
    assert [r["ratio"] for r in summary["rounds"]] == [0.97, 0.9, 0.99]
    assert [r["first"] for r in summary["rounds"]] == ["a", "b", "a"]
    assert summary["median_ratio"] == 0.97 and summary["cost_pct"] == 3.0
    assert summary["met"] is True and summary["spread"] == [0.9, 0.99]
    assert ab.summarize(runs, "single", 2.0)["met"] is False
    assert ab.summarize(runs, "1000-json", None)["median_ratio"] is None


def test_swap_reads_answers_and_the_servers_swap_lines() -> None:
    from loadtests import swap

    answers = swap.read_answers("2000000 2500000 200 m:2\n1000000 1200000 0 -\n")
    assert answers == [swap.Answer(1.0, 1.2, 0, None), swap.Answer(2.0, 2.5, 200, "m:2")]
    log = "\n".join([
        'not json, model swapped',
        json.dumps({"ts": "2026-12-04T10:00:01.500+00:00", "pid": 7, "msg":
                    "model swapped: m:1 -> m:2 (m@production, loaded and warmed in 0.8 s)"}),
        json.dumps({"ts": "2026-12-04T10:00:01.000+00:00", "pid": 8, "msg": "request"})])
    (line,) = swap.swap_lines(log)
    assert line["pid"] == 7 and (line["old"], line["new"], line["load_s"]) == ("m:1", "m:2", 0.8)
    assert line["ts"] == pd.Timestamp("2026-12-04T10:00:01.5Z").timestamp()


def test_swap_gaps_old_answers_and_memory_per_promotion() -> None:
    from loadtests import swap

    assert swap.longest_gap([1.0, 1.1, 1.9], 0.8, 2.0) == pytest.approx(0.8)
    assert swap.longest_gap([], 0.0, 1.5) == 1.5
    ok = [swap.Answer(t - 0.01, t, 200, "m:1" if t < 10.3 else "m:2")
          for t in [x / 10 for x in range(80, 120)] if not 10.0 < t < 10.25]
    late_old = swap.Answer(10.35, 10.4, 200, "m:1")  # sent after the last worker swapped
    after_next = swap.Answer(12.5, 12.6, 200, "m:1")  # the next promotion brought m:1 back
    answers = sorted([*ok, late_old, after_next, swap.Answer(10.1, 10.12, 503, None)],
                     key=lambda a: a.done)
    promotions = [{"at": 10.0, "old": "m:1", "new": "m:2"}]
    swaps = [{"ts": 10.2, "pid": 1, "old": "m:1", "new": "m:2", "load_s": 0.1},
             {"ts": 10.3, "pid": 2, "old": "m:1", "new": "m:2", "load_s": 0.2},
             {"ts": 9.0, "pid": 1, "old": "m:0", "new": "m:1", "load_s": 0.1}]
    series = [(9.9, 100 * 2**20), (10.2, 150 * 2**20), (11.5, 110 * 2**20)]
    (entry,) = swap.analyse(promotions, swaps, answers, series, 12.0, {1: "api", 2: "api"})
    assert [w["after_s"] for w in entry["workers"]] == [0.2, 0.3]
    assert entry["last_swap_after_s"] == 0.3 and entry["window_s"] == 0.8
    assert entry["longest_gap_ms"] == pytest.approx(300, abs=1)  # 10.0 -> 10.3
    assert entry["control_gap_ms"] == pytest.approx(100, abs=1)
    assert entry["non2xx"] == 1 and entry["errors"] == 0
    assert entry["old_sent_after_last_swap"] == 1
    assert entry["rss_mb"] == {"before": 100.0, "peak": 150.0, "after": 110.0}
