"""A server started with NAME@production follows promotions without a restart: under load,
every answer is a 200 scored by one version and naming it, and after the swap none comes
from the old version; a version that cannot load is refused while the old one serves."""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agbento.models.stages import StageRegistry
from agbento.models.store import ModelCard, save_model
from agbento.training.pipeline import train
from tests.helpers import GOOD, metric_samples, penguin_rows, total
from tests.servers import BentoServer, start_server
from tests.tiny_models import tiny_config

ROOT = Path(__file__).resolve().parent.parent
NAME = "swap-species"
CLIENTS = 16
pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Answer:
    sent: float
    done: float
    status: int
    header_tag: str | None
    body_tag: str | None
    rows: int


@pytest.fixture(scope="module")
def versions() -> tuple[ModelCard, ModelCard]:
    quiet = lambda _message: None  # noqa: E731
    first = train(tiny_config(NAME, "species", seed=1), quiet).card
    second = train(tiny_config(NAME, "species", seed=2), quiet).card
    return first, second


def broken_copy(card: ModelCard) -> ModelCard:
    """The same predictor (its digests verify) with example rows it cannot score: it fails
    its warm-up, as a model whose runtime breaks at load does."""
    metadata = {**card.metadata, "examples": [{"island": "Atlantis"}]}
    metadata.pop("files_sha256", None)
    metadata.pop("size_bytes", None)
    return save_model(NAME, card.predictor_path, card.labels, metadata)


def load(server: BentoServer, stop: threading.Event, answers: list[Answer]) -> None:
    rows = penguin_rows("species", 50, seed=3)
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            body = [GOOD] if random.random() < 0.8 else rows
            sent = time.time()
            try:
                response = client.post(f"{server.url}/predict", json={"data": body})
                payload = response.json()
                answers.append(Answer(sent, time.time(), response.status_code,
                                      response.headers.get("x-agbento-model"),
                                      (payload.get("model") or {}).get("tag"),
                                      len(payload.get("predictions") or [])))
            except httpx.HTTPError as error:
                answers.append(Answer(sent, time.time(), 0, None, repr(error), 0))


def swap_times(server: BentoServer, tag: str) -> list[float]:
    """When each worker logged its swap to `tag` (epoch seconds)."""
    from datetime import datetime

    found = []
    for line in server.log_lines_with(f"-> {tag}"):
        stamp = re.search(r'"ts": "([^"]+)"', line)
        if stamp and "model swapped" in line:
            found.append(datetime.fromisoformat(stamp.group(1)).timestamp())
    return found


@pytest.mark.parametrize("topology", ["fused", "split"])
def test_a_promotion_swaps_under_load_with_every_answer_200_and_one_version_each(
        versions: tuple[ModelCard, ModelCard], topology: str) -> None:
    first, second = versions
    registry = StageRegistry.default()
    registry.promote(NAME, first.tag.split(":")[1], by="tests")
    with start_server(ROOT, f"{NAME}@production", AGBENTO_TOPOLOGY=topology,
                      AGBENTO_MODEL_POLL_S="0.5", AGBENTO_CACHE_URL="off") as server:
        stop, answers = threading.Event(), []
        clients = [threading.Thread(target=load, args=(server, stop, answers))
                   for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        time.sleep(2)
        promoted_at = time.time()
        registry.promote(NAME, second.tag.split(":")[1], by="tests")
        deadline = time.time() + 60
        while time.time() < deadline and not (
                (swapped := swap_times(server, second.tag))
                and time.time() > max(swapped) + 2):
            time.sleep(0.2)
        stop.set()
        for client in clients:
            client.join()
        swapped = swap_times(server, second.tag)
        samples = metric_samples(server.url)
    assert swapped, "no worker logged the swap"
    done = max(swapped)
    assert len(answers) > 100
    assert [a for a in answers if a.status != 200] == []
    assert all(a.header_tag == a.body_tag for a in answers)  # one version per answer
    assert {a.body_tag for a in answers} == {first.tag, second.tag}
    assert all(a.body_tag == first.tag for a in answers if a.done < promoted_at)
    after = [a for a in answers if a.sent > done]
    assert after and all(a.body_tag == second.tag for a in after)
    assert total(samples, "agbento_model_swaps_total", result="ok") >= 1


def test_a_version_that_does_not_load_is_refused_while_the_old_one_serves(
        versions: tuple[ModelCard, ModelCard]) -> None:
    first, _ = versions
    registry = StageRegistry.default()
    registry.promote(NAME, first.tag.split(":")[1], by="tests")
    broken = broken_copy(first)
    with start_server(ROOT, f"{NAME}@production", AGBENTO_MODEL_POLL_S="600",
                      AGBENTO_API_WORKERS="1") as server:
        # promoted without the trial load a `agbento models promote` makes (an API caller)
        registry.promote(NAME, broken.tag.split(":")[1], by="tests", check=None)
        reload = httpx.post(f"{server.url}/admin/model/reload", timeout=60)
        assert reload.status_code == 500 and reload.json()["result"] == "failed"
        assert reload.json()["tag"] == first.tag
        answer = httpx.post(f"{server.url}/predict", json={"data": [GOOD]})
        assert answer.status_code == 200 and answer.headers["x-agbento-model"] == first.tag
        errors = server.log_lines_with("model swap failed")
        assert len(errors) == 1 and broken.tag in errors[0] and '"ERROR"' in errors[0]
        # not tried again on every poll: a second reload asks again, on purpose
        assert total(metric_samples(server.url), "agbento_model_swaps_total",
                     result="failed") == 1
        info = httpx.get(f"{server.url}/model/info").json()
        assert info["tag"] == first.tag
    registry.promote(NAME, first.tag.split(":")[1], by="tests")


@pytest.fixture(scope="module")
def without_year(tmp_path_factory: pytest.TempPathFactory) -> ModelCard:
    """A version of the same model that dropped a feature."""
    from agbento.training.pipeline import demo_table

    path = tmp_path_factory.mktemp("no-year") / "penguins.csv"
    demo_table().drop(columns=["year"]).to_csv(path, index=False)
    config = tiny_config(NAME, "species", data=path, demo=False)
    return train(config, lambda _message: None).card


def test_a_version_with_another_schema_is_described_and_validated_as_it_is(
        versions: tuple[ModelCard, ModelCard], without_year: ModelCard) -> None:
    first, _ = versions
    registry = StageRegistry.default()
    registry.promote(NAME, first.tag.split(":")[1], by="tests")
    no_year = {k: v for k, v in GOOD.items() if k != "year"}
    with start_server(ROOT, f"{NAME}@production", AGBENTO_MODEL_POLL_S="600",
                      AGBENTO_API_WORKERS="1") as server:
        assert httpx.post(f"{server.url}/predict", json={"data": [no_year]}).status_code == 422
        registry.promote(NAME, without_year.tag.split(":")[1], by="tests")
        assert httpx.post(f"{server.url}/admin/model/reload").json()["result"] == "swapped"
        answer = httpx.post(f"{server.url}/predict", json={"data": [no_year]})
        assert answer.status_code == 200 and answer.json()["model"]["tag"] == without_year.tag
        info = httpx.get(f"{server.url}/model/info").json()
        assert "year" not in {f["name"] for f in info["schema"]["features"]}
        docs = httpx.get(f"{server.url}/docs.json").json()
        rows = docs["components"]["schemas"]["predict__Input"]["properties"]["data"]
        assert "year" not in rows["items"]["properties"] and "island" in rows["items"]["properties"]
        name = NAME
        inputs = httpx.get(f"{server.url}/v2/models/{name}").json()["inputs"]
        assert "year" not in {i["name"] for i in inputs}
    registry.promote(NAME, first.tag.split(":")[1], by="tests")
