"""`bentoml build` makes a Bento that carries the model and serves the same API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bentoml
import httpx
import pytest

from tests.servers import start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_build_then_serve_the_bento(tiny_models: TinyModels) -> None:
    tag = tiny_models.binary.tag
    cli = Path(sys.executable).with_name("bentoml")
    built = subprocess.run(
        [str(cli), "build", ".", "--output", "tag"],
        cwd=ROOT,
        env={**os.environ, "AGBENTO_MODEL": tag},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    bento_tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    bento = bentoml.get(bento_tag)
    assert [str(m.tag) for m in bento.info.all_models] == [tag]
    files = {p.relative_to(bento.path).as_posix() for p in Path(bento.path).rglob("*.py")}
    assert {"src/service.py", "src/agbento/rows/schema.py"} <= files
    assert not any(f.startswith("src/tests/") for f in files)

    # The Bento serves from its own copy of the code (its src/), not from the project tree,
    # in either topology.
    for topology in ("fused", "split"):
        with start_server(ROOT, tag, target=bento.path, AGBENTO_TOPOLOGY=topology) as server:
            row = tiny_models.binary.examples[0]
            response = httpx.post(f"{server.url}/predict", json={"data": [row]}, timeout=30)
            assert response.status_code == 200, (topology, response.text)
            assert response.json()["model"]["tag"] == tag
            assert ("agbento-model" in server.log()) == (topology == "split")


# Core dependencies the served Bento does not need, and why.
NOT_IN_THE_BENTO = {
    "palmerpenguins": "the demo data: training only",
    "tqdm": "the batch client's progress bar: a client, not the service",
    "typer": "the agbento command: a client, not the service",
}


def test_the_bento_installs_every_dependency_the_service_needs() -> None:
    """A core dependency missing from bentofile.yaml fails only in the container (the image
    stage), long after the tests; hold the two lists together here."""
    import tomllib

    import yaml

    def name(requirement: str) -> str:
        return requirement.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {name(r) for r in project["dependencies"]} - set(NOT_IN_THE_BENTO)
    bento = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert needed == {name(r) for r in bento["python"]["packages"]}
