"""Stages: which version of a model is in production (or staging, or any named stage), who
put it there, when and instead of what; and `resolve_tag`, which turns `NAME@STAGE`,
`NAME:VERSION`, `NAME:latest` or `NAME` into the one concrete tag to load.

Where it lives: `$BENTOML_HOME/agbento/stages/NAME.json`, one document per model name,
beside the model store it describes (the same BENTOML_HOME moves, isolates or shares both).
The document holds the stages *and* their history; every change rewrites it whole (temp
file, fsync, rename, fsync of the folder), under an fcntl lock on `NAME.lock`. So:
- a change is atomic: a reader (a server polling `current`) sees the old document or the
  new one, never half of one, and needs no lock;
- the stages and the history cannot disagree (one file, one rename), which two files (a
  state file and an appended log) could after a crash between their writes;
- a crash at any point leaves the old document; a leftover temp file is removed by the next
  change;
- concurrent promotions serialize on the lock, and each reads the document its predecessor
  wrote: none is lost.
Promotions are rare (a handful a day at most), so rewriting a few kilobytes each time costs
nothing. History entries are only ever appended, never edited or removed.

Roll back: a stage keeps the line of versions promoted into it (`behind`). A rollback puts
back the version that held the stage before the current one, and takes the current one out
of the line; a second rollback walks one further back. With no version behind the current
one, a rollback is refused (nothing is ever rolled back to "no model").

Promoting the version a stage already holds changes nothing and records nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import bentoml

from agbento.core.errors import StartupError
from agbento.core.settings import get_settings
from agbento.models.store import (
    ModelCard,
    ModelNotFoundError,
    missing_model_message,
    verify_model,
)

PRODUCTION = "production"
STAGING = "staging"
# lowercase, digits, - and _: a stage name is part of NAME@STAGE and of log lines
STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# BentoML's own rule for a model name (bentoml.Tag), kept here to make file names safe
NAME_PATTERN = re.compile(r"^[a-z0-9]([-._a-z0-9]{0,61}[a-z0-9])?$")
DOCUMENT_FORMAT = 1
LOCK_TIMEOUT_S = 30.0
# What a built Bento records about the model it was built with (bento.yaml labels): the
# reference AGBENTO_MODEL named and the tag it resolved to on the build machine.
BENTO_REFERENCE_LABEL = "agbento-model"
BENTO_TAG_LABEL = "agbento-model-tag"

Action = Literal["promote", "rollback"]
# A caller's check of a version before it takes a stage (a load and warm-up, in a floor
# that may load models); it raises to refuse.
VersionCheck = Callable[[ModelCard], None]


class StageError(StartupError, LookupError):
    """A stage change or a resolution that cannot be made: one line that says what to do."""


# -- references ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelReference:
    """What a user names a model by: `NAME@STAGE`, `NAME:VERSION`, `NAME:latest` or `NAME`."""

    name: str
    version: str | None = None  # None: the latest (unless a stage is named)
    stage: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelReference:
        text = text.strip()
        if "@" in text:
            name, _, stage = text.partition("@")
            check_stage(stage)
            return cls(check_name(name), stage=stage)
        name, _, version = text.partition(":")
        if ":" in text and not version:
            raise StageError(f"{text!r}: give NAME:VERSION, NAME:latest, NAME@STAGE or NAME")
        return cls(check_name(name), version=None if version in ("", "latest") else version)

    def __str__(self) -> str:
        if self.stage is not None:
            return f"{self.name}@{self.stage}"
        return f"{self.name}:{self.version or 'latest'}"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise StageError(f"{name!r} is not a model name (lowercase letters, digits, '-', '_' "
                         "and '.', as `bentoml models list` shows them)")
    return name


def check_stage(stage: str) -> str:
    if not STAGE_PATTERN.match(stage):
        raise StageError(f"{stage!r} is not a stage name: use 1-32 lowercase letters, digits, "
                         "'-' or '_', starting with a letter (production, staging, canary...)")
    return stage


@dataclass(frozen=True)
class BentoPin:
    """A built Bento's record of its model: the reference it was built for (AGBENTO_MODEL at
    build time) and the tags it carries (bento.yaml). Inside the Bento it overrides the
    stage registry, which the image does not have: one image serves one promotion."""

    bento: str
    reference: str | None
    tags: tuple[str, ...]

    def tag_for(self, reference: ModelReference) -> str:
        carried = [t for t in self.tags if t.split(":")[0] == reference.name]
        built_for = (ModelReference.parse(self.reference) if self.reference else None)
        if built_for is not None and built_for == reference and carried:
            return carried[0]
        what = f"{', '.join(carried)}" if carried else f"no version of {reference.name}"
        raise StageError(
            f"Bento {self.bento} carries {what} (built for "
            f"{self.reference or 'an explicit tag'}) and cannot resolve {reference}: build "
            f"a Bento with AGBENTO_MODEL={reference}, or serve one of the tags it carries"
        )


def bento_pin(service_file: Path) -> BentoPin | None:
    """The pin of the Bento `service_file` (service.py) runs from, or None outside a Bento.

    A Bento's code is in `<bento>/src/` beside its `bento.yaml`; `bentoml serve` of a Bento
    (and the container's entrypoint) imports service.py from there, while `bentoml build`
    and `bentoml serve .` import it from the project, where there is no bento.yaml.
    """
    import yaml

    source = Path(service_file).resolve().parent
    manifest = source.parent / "bento.yaml"
    if source.name != "src" or not manifest.is_file():
        return None
    info = yaml.safe_load(manifest.read_text()) or {}
    labels = info.get("labels") or {}
    # a Bento's models: its own list (1.2+ keeps it empty) and each service's
    listed = [*(info.get("models") or []),
              *(m for service in info.get("services") or [] for m in service.get("models") or [])]
    return BentoPin(
        bento=f"{info.get('name')}:{info.get('version')}",
        reference=labels.get(BENTO_REFERENCE_LABEL),
        tags=tuple(dict.fromkeys(str(m["tag"]) for m in listed)),
    )


def bento_labels(reference: str, tag: str) -> dict[str, str]:
    """What the service declares so that `bentoml build` writes its resolution into the
    Bento's labels (`bento_pin` reads them back inside the Bento)."""
    return {BENTO_REFERENCE_LABEL: reference, BENTO_TAG_LABEL: tag}


def resolve_tag(reference: str, registry: StageRegistry | None = None,
                pinned: BentoPin | None = None) -> str:
    """The concrete `NAME:VERSION` that `reference` names, in the local model store.

    `NAME@STAGE`: the version the stage registry has in that stage (inside a Bento, `pinned`:
    the version the Bento was built with). `NAME:latest` and `NAME`: the newest stored
    version. `NAME:VERSION`: itself, once it is found in the store.
    """
    parsed = ModelReference.parse(reference)
    if parsed.stage is not None:
        if pinned is not None:
            return pinned.tag_for(parsed)
        entry = (registry or StageRegistry.default()).current(parsed.name, parsed.stage)
        if entry is None:
            raise StageError(f"no version of {parsed.name} is in {parsed.stage}: "
                             f"agbento models promote {parsed.name}:VERSION"
                             + ("" if parsed.stage == PRODUCTION else f" --stage {parsed.stage}"))
        return entry.tag
    return str(stored_model(f"{parsed.name}:{parsed.version or 'latest'}").tag)


def stored_model(tag: str) -> bentoml.Model:
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ModelNotFoundError(missing_model_message(tag)) from None


def actor() -> str:
    """Who makes a change: AGBENTO_ACTOR (a CI job names itself), else user@host."""
    configured = get_settings().actor
    if configured:
        return configured
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


# -- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StageEvent:
    """One line of the history: a version took a stage (promote) or got it back (rollback)."""

    event: int  # 1, 2, ...: the document's generation after this change
    name: str
    stage: str
    action: Action
    version: str
    previous: str | None  # the version that held the stage before
    at: str
    by: str
    reason: str

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class StageEntry:
    """Who holds a stage now, since when, and the line of versions that held it before."""

    name: str
    stage: str
    version: str
    since: str
    by: str
    reason: str
    event: int
    behind: tuple[str, ...] = ()  # oldest first: where successive rollbacks go

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class StageChange:
    """What `promote` or `rollback` did: `entry` holds the stage now; `changed` is False
    when the version already held it (nothing was recorded)."""

    entry: StageEntry
    previous: str | None
    changed: bool


@dataclass(frozen=True)
class StoredVersion:
    """One version in the model store, as `agbento models list` shows it."""

    tag: str
    version: str
    stages: tuple[str, ...]
    created_at: str
    eval_metric: str | None
    score: float | None  # the eval metric on the holdout (higher is better, as AutoGluon's)
    holdout_metrics: dict[str, float]
    size_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StageDocument:
    """NAME.json: the stages and the history of one model name."""

    name: str
    generation: int = 0
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"format": DOCUMENT_FORMAT, "name": self.name,
                           "generation": self.generation, "stages": self.stages,
                           "history": self.history}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> StageDocument:
        data = json.loads(text)
        if data.get("format") != DOCUMENT_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        return cls(data["name"], int(data["generation"]), dict(data["stages"]),
                   list(data["history"]))

    def entry(self, stage: str) -> StageEntry | None:
        held = self.stages.get(stage)
        if held is None:
            return None
        return StageEntry(self.name, stage, held["version"], held["since"], held["by"],
                          held["reason"], int(held["event"]), tuple(held.get("behind", ())))

    def record(self, stage: str, action: Action, version: str, behind: list[str], by: str,
               reason: str) -> StageEvent:
        previous = self.stages.get(stage, {}).get("version")
        self.generation += 1
        event = StageEvent(self.generation, self.name, stage, action, version, previous,
                           datetime.now(UTC).isoformat(timespec="milliseconds"), by, reason)
        self.history.append(asdict(event))
        self.stages[stage] = {"version": version, "since": event.at, "by": by,
                              "reason": reason, "event": event.event, "behind": behind}
        return event


class StageRegistry:
    """The stages of every model name in one BentoML home (see the module's docstring)."""

    def __init__(self, root: Path, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s

    @classmethod
    def default(cls) -> StageRegistry:
        """The registry of the BentoML home this process uses (BENTOML_HOME)."""
        from bentoml._internal.configuration.containers import BentoMLContainer

        return cls(Path(BentoMLContainer.bentoml_home.get()) / "agbento" / "stages")

    def path(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.json"

    # -- reading: no lock (a document is replaced whole) -----------------------------------

    def _read(self, name: str) -> StageDocument:
        path = self.path(name)
        try:
            return StageDocument.from_json(path.read_text())
        except FileNotFoundError:
            return StageDocument(name)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # never silently start over: that would forget what is in production
            raise StageError(f"cannot read the stages of {name} ({path}): {exc}; restore the "
                             "file from a backup (every change rewrites it whole)") from None

    def current(self, name: str, stage: str = PRODUCTION) -> StageEntry | None:
        """The version in `stage` now, or None. One small file read: cheap to poll."""
        return self._read(name).entry(check_stage(stage))

    def generation(self, name: str) -> int:
        """How many changes the name's stages have had (0: none). It grows by one with every
        promote and rollback: a poller compares it to the last one it saw."""
        return self._read(name).generation

    def stamp(self, name: str) -> tuple[int, int] | None:
        """(inode, mtime_ns) of NAME.json, or None before the first change: a stat, no read.
        Every change renames a new file into place, so the stamp changes with every change;
        a server polls this and calls `current` only when it moved."""
        try:
            status = self.path(name).stat()
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_mtime_ns

    def stages(self, name: str) -> dict[str, StageEntry]:
        document = self._read(name)
        return {stage: entry for stage in document.stages
                if (entry := document.entry(stage)) is not None}

    def history(self, name: str, stage: str | None = None) -> list[StageEvent]:
        """Every change, oldest first (of one stage, or of all)."""
        return [StageEvent(**line) for line in self._read(name).history
                if stage is None or line["stage"] == stage]

    def versions(self, name: str) -> list[StoredVersion]:
        """Every version of `name` in the model store, newest first, with its stages."""
        held: dict[str, list[str]] = {}
        for stage, entry in self.stages(name).items():
            held.setdefault(entry.version, []).append(stage)
        try:
            stored = bentoml.models.list(check_name(name))
        except bentoml.exceptions.NotFound:
            stored = []
        rows = []
        for model in sorted(stored, key=lambda m: m.creation_time, reverse=True):
            meta = dict(model.info.metadata)
            metric = meta.get("eval_metric")
            holdout = {str(k): float(v) for k, v in (meta.get("holdout_metrics") or {}).items()}
            rows.append(StoredVersion(
                tag=str(model.tag), version=str(model.tag.version),
                stages=tuple(sorted(held.get(str(model.tag.version), []))),
                created_at=model.creation_time.isoformat(timespec="seconds"),
                eval_metric=metric, score=holdout.get(metric) if metric else None,
                holdout_metrics=holdout, size_bytes=meta.get("size_bytes"),
            ))
        return rows

    # -- changing: under the lock, atomically -----------------------------------------------

    def promote(self, name: str, version: str, stage: str = PRODUCTION, by: str | None = None,
                reason: str = "", check: VersionCheck | None = None,
                allow_version_mismatch: bool = False) -> StageChange:
        """Put `name:version` in `stage`. Refused unless the stored files are the ones
        train.py saved (`verify_model`) and `check` (a load and warm-up) passes."""
        check_stage(stage)
        self._checked_card(name, version, check, allow_version_mismatch)
        with self._locked(name):
            document = self._read(name)
            held = document.entry(stage)
            if held is not None and held.version == version:
                return StageChange(held, held.version, changed=False)
            behind = [*held.behind, held.version] if held is not None else []
            behind = [v for v in behind if v != version]  # a version is in the line once
            event = document.record(stage, "promote", version, behind, by or actor(), reason)
            self._write(document)
        entry = document.entry(stage)
        assert entry is not None
        return StageChange(entry, event.previous, changed=True)

    def rollback(self, name: str, stage: str = PRODUCTION, by: str | None = None,
                 reason: str = "", check: VersionCheck | None = None,
                 allow_version_mismatch: bool = False) -> StageChange:
        """Give `stage` back to the version that held it before the current one."""
        check_stage(stage)
        held = self.current(name, stage)
        if held is None:
            raise StageError(f"no version of {name} is in {stage}: nothing to roll back")
        if not held.behind:
            raise StageError(f"{held.tag} is the only version {name} has had in {stage} since "
                             "its line began: nothing to roll back to (promote a version instead)")
        target = held.behind[-1]
        # the version we go back to must still be intact and load (checked outside the lock)
        self._checked_card(name, target, check, allow_version_mismatch)
        with self._locked(name):
            document = self._read(name)
            now = document.entry(stage)
            if now is None or now.event != held.event:  # changed while we checked
                raise StageError(f"{name}'s {stage} changed while rolling back (now "
                                 f"{now.tag if now else 'nothing'}): look at `agbento models "
                                 f"history {name}` and try again")
            event = document.record(stage, "rollback", target, list(held.behind[:-1]),
                                    by or actor(), reason)
            self._write(document)
        entry = document.entry(stage)
        assert entry is not None
        return StageChange(entry, event.previous, changed=True)

    def _checked_card(self, name: str, version: str, check: VersionCheck | None,
                      allow_version_mismatch: bool) -> ModelCard:
        card = ModelCard.of(stored_model(f"{check_name(name)}:{version}"))
        if card.tag != f"{name}:{version}":  # "latest" or a short form: take a concrete one
            raise StageError(f"{name}:{version}: name a concrete version ({card.tag})")
        verify_model(card, allow_version_mismatch)
        if check is not None:
            check(card)
        return card

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """An exclusive fcntl lock on NAME.lock (a file never replaced, unlike NAME.json).
        The kernel drops it when the holder dies, so a crash never leaves it taken."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f"{check_name(name)}.lock"
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StageError(f"another change to {name}'s stages has held "
                                         f"{lock_path} for {self.lock_timeout_s:.0f}s; "
                                         "try again") from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    def _write(self, document: StageDocument) -> None:
        """Temp file, fsync, rename over NAME.json, fsync the folder: the old document or the
        new one, whatever happens. Called under the lock."""
        path = self.path(document.name)
        for stale in self.root.glob(f".{path.name}.*.tmp"):  # a crashed writer's leftovers
            stale.unlink(missing_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with temporary.open("w") as handle:
            handle.write(document.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        folder = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)
