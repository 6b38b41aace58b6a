"""Stages: promote, roll back, history and list; NAME@STAGE resolution; a crash mid-write,
real processes racing, tampered and unloadable versions; the built Bento's pin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bentoml
import httpx
import pytest

from agbento.cli import main as agbento
from agbento.core.settings import get_settings
from agbento.models.stages import (
    StageError,
    StageRegistry,
    bento_pin,
    resolve_tag,
)
from agbento.models.store import ModelCard, ModelIntegrityError, ModelNotFoundError, save_model
from tests.servers import start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent


def versions_of(name: str, card: ModelCard, count: int) -> list[str]:
    """`count` stored versions of `name`: copies of a tiny model (each its own version)."""
    return [str(save_model(name, card.predictor_path, card.labels, card.metadata).tag
                .split(":")[1]) for _ in range(count)]


@pytest.fixture
def registry() -> StageRegistry:
    return StageRegistry.default()  # the tests' private BENTOML_HOME (conftest.py)


def test_promote_rollback_history(tiny_models: TinyModels, registry: StageRegistry) -> None:
    name = "reg-basic"
    v1, v2, v3 = versions_of(name, tiny_models.multiclass, 3)
    assert registry.current(name) is None and registry.generation(name) == 0
    assert registry.stamp(name) is None

    first = registry.promote(name, v1, by="alice", reason="first")
    stamp = registry.stamp(name)
    assert stamp is not None and registry.stamp(name) == stamp  # a poller's cheap probe
    assert (first.entry.version, first.previous, first.changed) == (v1, None, True)
    assert registry.promote(name, v2, by="bob", reason="better").previous == v1
    registry.promote(name, v3, by="carol")
    assert registry.stamp(name) != stamp
    assert resolve_tag(f"{name}@production") == f"{name}:{v3}"

    # a fresh registry object reads the same file: the state survives a restart
    reread = StageRegistry(registry.root)
    assert reread.current(name).version == v3
    assert [(e.version, e.previous, e.by) for e in reread.history(name)] == [
        (v1, None, "alice"), (v2, v1, "bob"), (v3, v2, "carol")]

    # rollback walks back one version at a time, then refuses
    back = registry.rollback(name, by="dave", reason="v3 misbehaves")
    assert (back.entry.version, back.previous) == (v2, v3)
    assert registry.rollback(name).entry.version == v1
    with pytest.raises(StageError, match="nothing to roll back to"):
        registry.rollback(name)
    assert registry.current(name).version == v1

    # promoting what already holds the stage records nothing
    generation = registry.generation(name)
    assert registry.promote(name, v1).changed is False
    assert registry.generation(name) == generation == 5

    # stages are independent; the history has every change, in order, never rewritten
    registry.promote(name, v3, stage="staging")
    assert resolve_tag(f"{name}@staging") == f"{name}:{v3}"
    assert registry.current(name).version == v1
    events = registry.history(name)
    assert [e.event for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.action for e in events] == ["promote"] * 3 + ["rollback"] * 2 + ["promote"]
    assert [e.stage for e in registry.history(name, stage="staging")] == ["staging"]

    listed = {row.version: row for row in registry.versions(name)}
    assert set(listed) == {v1, v2, v3}
    assert listed[v1].stages == ("production",) and listed[v2].stages == ()
    assert listed[v3].stages == ("staging",)
    assert listed[v1].score == tiny_models.multiclass.metadata["holdout_metrics"]["accuracy"]
    assert listed[v1].size_bytes and listed[v1].created_at


def test_a_rollback_after_a_new_promotion_returns_to_the_one_it_replaced(
        tiny_models: TinyModels, registry: StageRegistry) -> None:
    name = "reg-line"
    v1, v2, v3 = versions_of(name, tiny_models.multiclass, 3)
    for version in (v1, v2):
        registry.promote(name, version)
    registry.rollback(name)  # v1
    registry.promote(name, v3)  # the line is v1, v3: v2 was rolled away from
    assert registry.rollback(name).entry.version == v1
    registry.promote(name, v2)
    registry.promote(name, v1)  # back to v1 by promotion: v1 appears in the line once
    assert registry.current(name).behind == (v2,)


def test_resolve_tag_forms_and_errors(tiny_models: TinyModels) -> None:
    name = "reg-resolve"
    older, newer = versions_of(name, tiny_models.multiclass, 2)
    assert resolve_tag(f"{name}:latest") == resolve_tag(name) == f"{name}:{newer}"
    assert resolve_tag(f"{name}:{older}") == f"{name}:{older}"
    with pytest.raises(StageError) as no_stage:
        resolve_tag(f"{name}@production")
    assert str(no_stage.value) == (f"no version of {name} is in production: "
                                   f"agbento models promote {name}:VERSION")
    with pytest.raises(StageError, match="--stage canary"):
        resolve_tag(f"{name}@canary")
    with pytest.raises(ModelNotFoundError, match="is not in the BentoML model store"):
        resolve_tag(f"{name}:nosuchversion")
    for malformed in (f"{name}@", f"{name}@Prod", "Bad@production", f"{name}:", "../x"):
        with pytest.raises(StageError):
            resolve_tag(malformed)


def test_name_at_stage_is_accepted_where_a_tag_is(tiny_models: TinyModels,
                                                 registry: StageRegistry) -> None:
    """batch --local and spark --model take NAME@STAGE (service.py: the build test below)."""
    from agbento.offline import spark
    from agbento.offline.scorers import BatchError, LocalScorer

    name = "reg-where"
    (version,) = versions_of(name, tiny_models.multiclass, 1)
    with pytest.raises(BatchError, match=f"no version of {name} is in production"):
        LocalScorer(f"{name}@production")
    with pytest.raises(spark.ModelNotFoundError, match=f"no version of {name} is in canary"):
        spark.resolve_model(f"{name}@canary")
    registry.promote(name, version)
    assert LocalScorer(f"{name}@production").card.tag == f"{name}:{version}"
    assert str(spark.resolve_model(f"{name}@production").tag) == f"{name}:{version}"


def test_a_crash_mid_write_leaves_the_old_state(tiny_models: TinyModels,
                                                registry: StageRegistry) -> None:
    """The writer is killed (SIGKILL) after its new document is on disk and before the rename:
    readers still see the old state, its lock died with it, the next change succeeds."""
    name = "reg-crash"
    v1, v2 = versions_of(name, tiny_models.multiclass, 2)
    registry.promote(name, v1)
    before = registry.path(name).read_bytes()
    crash = textwrap.dedent(f"""
        import os, signal
        from agbento.models.stages import StageRegistry
        os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
        StageRegistry.default().promote({name!r}, {v2!r})
    """)
    done = subprocess.run([sys.executable, "-c", crash], env=os.environ, cwd=ROOT,
                          capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert list(registry.root.glob(f".{name}.json.*.tmp"))  # it got as far as the temp file
    assert registry.path(name).read_bytes() == before
    assert registry.current(name).version == v1 and len(registry.history(name)) == 1

    StageRegistry(registry.root, lock_timeout_s=5).promote(name, v2)  # the lock is free
    assert registry.current(name).version == v2
    assert not list(registry.root.glob(f".{name}.json.*.tmp"))


RACER = """
import sys, time
from pathlib import Path
from agbento.models.stages import StageRegistry
name, go, *versions = sys.argv[1:]
registry = StageRegistry.default()
Path(go + ".ready." + versions[0]).touch()
while not Path(go).exists():
    time.sleep(0.005)
for version in versions:
    registry.promote(name, version, by=f"racer-{versions[0]}")
"""


def test_concurrent_promotions_from_processes_serialize(tiny_models: TinyModels,
                                                        registry: StageRegistry,
                                                        tmp_path: Path) -> None:
    """Processes released at once each promote their own versions: every promotion is in the
    history, numbered without gaps, and each names as `previous` the one before it (a lost
    update would show two promotions from the same version)."""
    name, processes, each = "reg-race", 4, 4
    versions = versions_of(name, tiny_models.multiclass, processes * each)
    go = str(tmp_path / "go")
    racers = [subprocess.Popen([sys.executable, "-c", RACER, name, go,
                                *versions[i * each:(i + 1) * each]],
                               env=os.environ, cwd=ROOT, stderr=subprocess.PIPE)
              for i in range(processes)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready.*"))) < processes:
        assert time.monotonic() < deadline, "racers did not start"
        assert all(r.poll() is None for r in racers), [r.stderr.read() for r in racers]
        time.sleep(0.05)
    Path(go).touch()
    for racer in racers:
        assert racer.wait(timeout=120) == 0, racer.stderr.read().decode()[-2000:]

    events = registry.history(name)
    assert [e.event for e in events] == list(range(1, processes * each + 1))
    assert sorted(e.version for e in events) == sorted(versions)
    assert [e.previous for e in events] == [None] + [e.version for e in events[:-1]]
    assert registry.current(name).version == events[-1].version
    assert registry.generation(name) == processes * each
    racer_order = [e.by for e in events]
    assert len(set(racer_order)) == processes


def tampered_copy(name: str, card: ModelCard) -> str:
    version = versions_of(name, card, 1)[0]
    stored = ModelCard.of(bentoml.models.get(f"{name}:{version}"))
    victim = next(p for p in sorted(stored.predictor_path.rglob("*")) if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"\n# not what train.py saved")
    return version


def test_a_tampered_version_is_refused(tiny_models: TinyModels, registry: StageRegistry,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    name = "reg-tampered"
    (good,) = versions_of(name, tiny_models.multiclass, 1)
    registry.promote(name, good)
    bad = tampered_copy(name, tiny_models.multiclass)
    with pytest.raises(ModelIntegrityError, match="differ from what train.py stored"):
        registry.promote(name, bad)
    assert agbento(["models", "promote", f"{name}:{bad}"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: promote refused: model ") and "\n" not in error
    assert registry.current(name).version == good and registry.generation(name) == 1


def test_a_version_that_does_not_load_is_refused(tiny_models: TinyModels, tmp_path: Path,
                                                 registry: StageRegistry,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Intact files (the digests match what was saved) that are not a predictor."""
    card = tiny_models.multiclass
    broken = tmp_path / "predictor"
    broken.mkdir()
    (broken / "predictor.pkl").write_bytes(b"not a pickle")
    saved = save_model("reg-broken", broken, card.labels, card.metadata)
    assert agbento(["models", "promote", saved.tag]) == 1
    error = capsys.readouterr().err.strip()
    assert "does not load and score its example rows" in error and "\n" not in error
    assert registry.current("reg-broken") is None


def test_the_command(tiny_models: TinyModels, registry: StageRegistry,
                     capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    name = "reg-cli"
    v1, v2 = versions_of(name, tiny_models.multiclass, 2)
    monkeypatch.setenv("AGBENTO_ACTOR", "ci-pipeline")
    get_settings.cache_clear()
    try:
        assert agbento(["models", "promote", f"{name}:{v1}", "--reason", "first"]) == 0
        assert agbento(["models", "promote", f"{name}:{v2}", "--stage", "staging"]) == 0
        # NAME@STAGE as the source: staging's version goes to production
        assert agbento(["models", "promote", f"{name}@staging"]) == 0
        out = capsys.readouterr().out
        assert f"promoted {name}:{v2} to production (was {name}:{v1}) by ci-pipeline" in out
        assert agbento(["models", "promote", f"{name}:{v2}"]) == 0
        assert "already in production; nothing changed" in capsys.readouterr().out

        assert agbento(["models", "list", name, "--json"]) == 0
        listed = {row["version"]: row for row in json.loads(capsys.readouterr().out)}
        assert listed[v2]["stages"] == ["production", "staging"] and listed[v1]["stages"] == []
        assert agbento(["models", "list", name]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split() == ["VERSION", "STAGES", "CREATED", "SCORE", "SIZE"]
        assert table[1].startswith(v2) and "production,staging" in table[1]

        assert agbento(["models", "rollback", name, "--reason", "oops"]) == 0
        assert f"rolled production back to {name}:{v1}" in capsys.readouterr().out
        assert agbento(["models", "rollback", name]) == 1
        assert "nothing to roll back to" in capsys.readouterr().err

        assert agbento(["models", "history", name, "--json"]) == 0
        events = json.loads(capsys.readouterr().out)
        assert [(e["action"], e["stage"], e["version"]) for e in events] == [
            ("promote", "production", v1), ("promote", "staging", v2),
            ("promote", "production", v2), ("rollback", "production", v1)]
        assert {e["by"] for e in events} == {"ci-pipeline"}
        assert events[-1]["reason"] == "oops"
    finally:
        get_settings.cache_clear()

    for usage in (["models", "promote", f"{name}:{v1}", "--stage", "Prod"],
                  ["models", "promote", "Not-A-Name:1"], ["models", "history", "a/b"]):
        assert agbento(usage) == 2, usage
    assert agbento(["models", "promote", f"{name}:nosuchversion"]) == 1
    assert "is not in the BentoML model store" in capsys.readouterr().err


def test_python_dash_m_agbento_models_is_the_same_command(tiny_models: TinyModels) -> None:
    done = subprocess.run([sys.executable, "-m", "agbento.models", "history", "reg-cli"],
                          env=os.environ, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "rollback" in done.stdout or "never been promoted" in done.stdout


@pytest.mark.integration
def test_a_bento_built_for_production_serves_the_version_promoted_then(
        tiny_models: TinyModels, registry: StageRegistry) -> None:
    """`bentoml build` with AGBENTO_MODEL=NAME@production carries exactly the promoted
    version, and the Bento keeps serving it after a later promotion (one image per
    promotion); `bentoml serve .` follows the registry instead."""
    name = "reg-bento"
    v1, v2 = versions_of(name, tiny_models.binary, 2)
    registry.promote(name, v1)
    cli = Path(sys.executable).with_name("bentoml")
    built = subprocess.run([str(cli), "build", ".", "--output", "tag"], cwd=ROOT,
                           env={**os.environ, "AGBENTO_MODEL": f"{name}@production"},
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    bento = bentoml.get(built.stdout.strip().splitlines()[-1].removeprefix("__tag__:"))
    assert [str(m.tag) for m in bento.info.all_models] == [f"{name}:{v1}"]
    assert bento.info.labels["agbento-model"] == f"{name}@production"
    assert bento.info.labels["agbento-model-tag"] == f"{name}:{v1}"

    registry.promote(name, v2)
    pin = bento_pin(Path(bento.path) / "src" / "service.py")
    assert pin is not None and bento_pin(ROOT / "service.py") is None
    assert resolve_tag(f"{name}@production", pinned=pin) == f"{name}:{v1}"
    assert resolve_tag(f"{name}@production") == f"{name}:{v2}"
    with pytest.raises(StageError, match=f"built for {name}@production"):
        resolve_tag(f"{name}@staging", pinned=pin)

    row = tiny_models.binary.examples[0]
    with start_server(ROOT, f"{name}@production", target=bento.path) as server:
        answer = httpx.post(f"{server.url}/predict", json={"data": [row]}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["tag"] == f"{name}:{v1}"
