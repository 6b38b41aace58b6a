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
    assert {"src/service.py", "src/agbento/schema.py"} <= files
    assert not any(f.startswith("src/tests/") for f in files)

    # The Bento serves from its own copy of the code (its src/), not from the project tree.
    with start_server(ROOT, tag, target=bento.path) as server:
        row = tiny_models.binary.examples[0]
        response = httpx.post(f"{server.url}/predict", json={"data": [row]}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["model"]["tag"] == tag
