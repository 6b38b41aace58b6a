"""Shared fixtures: a private BentoML home, tiny models trained once, real servers."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Before bentoml is imported anywhere: tests never touch the user's model store.
_HOME = Path(tempfile.mkdtemp(prefix="agbento-tests-"))
os.environ["BENTOML_HOME"] = str(_HOME / "bentoml")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import pytest  # noqa: E402

from tests.servers import BentoServer, start_server  # noqa: E402
from tests.tiny_models import (  # noqa: E402
    TinyModels,
    loose_schema_model,
    train_tiny_models,
)

ROOT = Path(__file__).resolve().parent.parent
# The multiclass server runs with small, explicit limits so the limit tests stay cheap.
MAX_ROWS = 1000
MAX_BODY_BYTES = 1_000_000
MAX_EXPLAIN_ROWS = 300  # below MAX_ROWS: /explain's limit is its own


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return Path(os.environ["BENTOML_HOME"])


@pytest.fixture(scope="session")
def tiny_models() -> TinyModels:
    return train_tiny_models()


@pytest.fixture(scope="session", params=["fused", "split"])
def topology(request: pytest.FixtureRequest) -> str:
    """Every test of a session server runs against both topologies (AGBENTO_TOPOLOGY);
    pytest groups the tests by topology, so one set of servers runs at a time."""
    return str(request.param)


@pytest.fixture(scope="session")
def multiclass_server(tiny_models: TinyModels, topology: str) -> BentoServer:
    limits = {"AGBENTO_MAX_ROWS": str(MAX_ROWS), "AGBENTO_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
              "AGBENTO_MAX_EXPLAIN_ROWS": str(MAX_EXPLAIN_ROWS)}
    with start_server(ROOT, tiny_models.multiclass.tag, AGBENTO_TOPOLOGY=topology,
                      **limits) as server:
        yield server


@pytest.fixture(scope="session")
def binary_server(tiny_models: TinyModels, topology: str) -> BentoServer:
    with start_server(ROOT, tiny_models.binary.tag, AGBENTO_TOPOLOGY=topology) as server:
        yield server


@pytest.fixture(scope="session")
def regression_server(tiny_models: TinyModels, topology: str) -> BentoServer:
    with start_server(ROOT, tiny_models.regression.tag, AGBENTO_TOPOLOGY=topology) as server:
        yield server


@pytest.fixture(scope="session")
def loose_server(tiny_models: TinyModels, topology: str) -> BentoServer:
    """Serves a model whose schema lets through text the predictor cannot score."""
    card = loose_schema_model(tiny_models.multiclass, "bill_length_mm")
    with start_server(ROOT, card.tag, AGBENTO_TOPOLOGY=topology) as server:
        yield server


@dataclass(frozen=True)
class ApiKeys:
    """A keys file and the plain keys it was made from (tests only ever see them here)."""

    file: Path
    keys: dict[str, str]

    def header(self, name: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[name]}


@pytest.fixture(scope="session")
def api_keys(tmp_path_factory: pytest.TempPathFactory) -> ApiKeys:
    from agbento.http.auth import ApiKey, digest, new_key, write_keys

    grants = {
        "admin": ("predict", "explain", "model_info", "admin", "feedback"),
        "scorer": ("predict",),
        "explainer": ("explain",),
        "labeller": ("feedback",),
        "reader": ("model_info",),
        "expired": ("predict", "model_info", "admin"),
    }
    plain, entries = {}, {}
    for name, permissions in grants.items():
        plain[name] = new_key(name)
        entries[name] = ApiKey(
            id=name, owner="tests", permissions=permissions, sha256=digest(plain[name]),
            expires_at="2001-01-01T00:00:00+00:00" if name == "expired" else None,
        )
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    write_keys(path, entries)
    return ApiKeys(path, plain)
