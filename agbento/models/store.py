"""The BentoML model store: what train.py writes and what the service reads back."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import bentoml
from packaging.version import InvalidVersion, Version

from agbento.core.errors import StartupError
from agbento.rows.schema import FeatureSchema, is_classification

PREDICTOR_DIR = "predictor"
# The metadata key of the reference distributions (drift and live quality compare with them).
REFERENCE_KEY = "reference_distributions"


class ModelNotFoundError(StartupError, LookupError):
    """The tag to serve is not in the local model store."""


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def file_digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under root, by relative path (the predictor is pickles: code)."""
    digests: dict[str, str] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:  # streamed: a model file may be large
                digests[path.relative_to(root).as_posix()] = hashlib.file_digest(
                    handle, "sha256").hexdigest()
    return digests


@dataclass(frozen=True)
class ModelCard:
    """A stored model as the service sees it: tag, labels, metadata and where its files are."""

    tag: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    path: Path

    @classmethod
    def of(cls, model: bentoml.Model) -> ModelCard:
        return cls(
            tag=str(model.tag),
            labels=dict(model.info.labels),
            metadata=dict(model.info.metadata),
            path=Path(model.path),
        )

    @property
    def predictor_path(self) -> Path:
        return self.path / PREDICTOR_DIR

    @cached_property
    def schema(self) -> FeatureSchema:
        """Parsed once: every request's validation reads it."""
        return FeatureSchema.from_dict(self.metadata["schema"])

    @property
    def problem_type(self) -> str:
        return str(self.metadata["problem_type"])

    @property
    def is_classification(self) -> bool:
        return is_classification(self.problem_type)

    @property
    def examples(self) -> list[dict[str, Any]]:
        return list(self.metadata.get("examples", []))

    @property
    def reference_distributions(self) -> dict[str, Any] | None:
        """The training rows' bins per feature, the holdout's predictions in bins and its
        metrics (`agbento.monitoring.reference.Reference`); None for a model trained before
        train.py stored them."""
        stored = self.metadata.get(REFERENCE_KEY)
        return dict(stored) if stored else None

    def reference(self) -> dict[str, Any]:
        """The short form every prediction answer carries."""
        return {
            "tag": self.tag,
            "problem_type": self.problem_type,
            "eval_metric": self.metadata.get("eval_metric"),
        }

    def info(self) -> dict[str, Any]:
        """The long form for GET /model/info."""
        meta = self.metadata
        return {
            "tag": self.tag,
            "label": meta.get("label"),
            "problem_type": self.problem_type,
            "eval_metric": meta.get("eval_metric"),
            "classes": meta["schema"]["label"].get("classes"),
            "labels": self.labels,
            "holdout_metrics": meta.get("holdout_metrics", {}),
            "schema": meta.get("schema"),
            "feature_importance": meta.get("feature_importance", {}),
            "best_model": meta.get("best_model"),
            "models": meta.get("models", []),
            "leaderboard": meta.get("leaderboard", []),
            "size_bytes": meta.get("size_bytes"),
            "size_bytes_before_shrink": meta.get("size_bytes_before_shrink"),
            "latency_ms": meta.get("latency_ms", {}),
            "rows": meta.get("rows", {}),
            "data_fingerprint": meta.get("data_fingerprint"),
            "training": meta.get("training", {}),
            "versions": meta.get("versions", {}),
            "created_at": meta.get("created_at"),
            REFERENCE_KEY: meta.get(REFERENCE_KEY),
        }


def load_card(reference: bentoml.models.BentoModel) -> ModelCard:
    """The stored model a service refers to, with an error that says what to do."""
    stored = reference.stored  # None when missing; never asks a remote store
    if stored is None:
        raise ModelNotFoundError(missing_model_message(str(reference.tag)))
    return ModelCard.of(stored)


def find_card(tag: str) -> ModelCard:
    """The stored model `tag` names (NAME:VERSION or NAME:latest), or ModelNotFoundError
    saying how to get one."""
    from bentoml.exceptions import BentoMLException, NotFound

    try:
        return ModelCard.of(bentoml.models.get(tag))
    except NotFound:
        raise ModelNotFoundError(missing_model_message(tag)) from None
    except (BentoMLException, ValueError) as error:  # not a tag at all
        raise ModelNotFoundError(f"{tag!r} is not a model tag ({error}); use NAME:VERSION, "
                                 "NAME:latest or NAME@STAGE") from None


def missing_model_message(tag: str) -> str:
    return (f"model {tag!r} is not in the BentoML model store; `agbento models list "
            f"{tag.split(':')[0]}` shows its versions (train one with `agbento train`)")


def without_nulls(value: Any) -> Any:
    """BentoML metadata refuses None: drop null entries (readers treat absent as null)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [without_nulls(v) for v in value if v is not None]
    return value


def save_model(
    name: str, predictor_dir: Path, labels: dict[str, str], metadata: dict[str, Any]
) -> ModelCard:
    """Copy a (shrunk) predictor folder into the model store with its labels and metadata."""
    metadata = {
        **without_nulls(metadata),
        "size_bytes": directory_size(predictor_dir),
        "files_sha256": file_digests(predictor_dir),
    }
    with bentoml.models.create(name, labels=labels, metadata=metadata) as model:
        shutil.copytree(predictor_dir, model.path_of(PREDICTOR_DIR))
    return ModelCard.of(bentoml.models.get(model.tag))


class ModelIntegrityError(RuntimeError):
    """The stored files are not the ones train.py saved, or were saved by other versions."""


def verify_model(card: ModelCard, allow_version_mismatch: bool = False) -> None:
    """Refuse, before anything is unpickled, files that changed or foreign library versions."""
    recorded = card.metadata.get("files_sha256")
    if not recorded:
        raise ModelIntegrityError(f"model {card.tag} has no file digests: retrain it with "
                                  "train.py (which records them)")
    actual = file_digests(card.predictor_path)
    changed = sorted(name for name in set(recorded) | set(actual)
                     if recorded.get(name) != actual.get(name))
    if changed:
        raise ModelIntegrityError(
            f"model {card.tag}: {len(changed)} file(s) differ from what train.py stored "
            f"(first: {changed[0]}); refusing to load pickles that may have been tampered with"
        )
    saved = card.metadata.get("versions", {})
    running = {"python": platform.python_version(),
               "autogluon.tabular": importlib.metadata.version("autogluon.tabular")}
    mismatched = [
        f"{name} {saved.get(name)} (saved) vs {version} (running)"
        for name, version in running.items()
        if not same_release(saved.get(name), version)
    ]
    if mismatched and not allow_version_mismatch:
        raise ModelIntegrityError(
            f"model {card.tag} was saved by other versions: {'; '.join(mismatched)}; retrain "
            "it, or set AGBENTO_ALLOW_VERSION_MISMATCH=true to load it anyway"
        )


def same_release(saved: str | None, running: str) -> bool:
    """Same major.minor (pickles of AutoGluon and Python are not portable across them)."""
    try:
        return Version(saved or "").release[:2] == Version(running).release[:2]
    except InvalidVersion:
        return False
