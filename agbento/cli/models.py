"""`agbento models list|promote|rollback|history`: which version of a model serves.

    agbento models list churn                      # every version, its stage, score, size
    agbento models promote churn:2kx7... --reason "beats 1f3q... by 0.02 AUC"
    agbento models promote churn@staging           # staging's version to production
    agbento models rollback churn                  # production back to the one before
    agbento models history churn --json

One version of a name holds a stage (production unless `--stage`); every change records
who (AGBENTO_ACTOR, else user@host), when, what it replaced and why, in a history that
survives restarts (agbento/models/stages.py says where and how). A version is promoted
(or rolled back to) only when its files are the ones train.py stored and it loads and
scores its example rows. Servers with AGBENTO_MODEL=NAME@production serve the new version.

Exit codes: 0 done (also when the version already held the stage); 1 refused: not in the
store, tampered, does not load, nothing to roll back, the registry is busy or unreadable;
2 a malformed tag, stage or option.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from agbento.cli import CliError, app
from agbento.core.settings import get_settings
from agbento.models.stages import (
    PRODUCTION,
    ModelReference,
    StageError,
    StageRegistry,
    check_name,
    check_stage,
    resolve_tag,
)
from agbento.models.store import ModelCard, ModelIntegrityError, ModelNotFoundError
from agbento.runtime.trial import UnservableModelError, trial_load

models = typer.Typer(help="List, promote and roll back model versions (stages).",
                     no_args_is_help=True)
app.add_typer(models, name="models")

Stage = Annotated[str, typer.Option("--stage", help="the stage (production, staging, any "
                                    "name)")]
Reason = Annotated[str, typer.Option("--reason", help="why, for the history")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table")]


def _name(text: str) -> str:
    try:
        return check_name(text)
    except StageError as exc:
        raise CliError(str(exc), code=2) from None


def _stage(text: str) -> str:
    try:
        return check_stage(text)
    except StageError as exc:
        raise CliError(str(exc), code=2) from None


def _serves(card: ModelCard) -> None:
    """The check before a version takes a stage: it loads and scores its example rows."""
    trial_load(card, get_settings().allow_version_mismatch)


Done = TypeVar("Done")


def _change(action: str, run: Callable[[], Done]) -> Done:
    """Run a stage change; the failures a user can act on are one line, exit 1."""
    try:
        return run()
    except (StageError, ModelNotFoundError, ModelIntegrityError, UnservableModelError) as exc:
        raise CliError(f"{action} refused: {exc}") from None


def human_size(size: int | None) -> str:
    if not size:
        return "-"
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


@models.command("list")
def list_versions(name: str, as_json: AsJson = False) -> None:
    """Every stored version of NAME, newest first: stages, created, holdout score, size."""
    registry = StageRegistry.default()
    try:
        rows = registry.versions(_name(name))
    except StageError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([row.to_dict() for row in rows], indent=1))
        return
    if not rows:
        raise CliError(f"no version of {name} in the model store (train one with train.py)")
    table = [("VERSION", "STAGES", "CREATED", "SCORE", "SIZE")]
    for row in rows:
        score = (f"{row.eval_metric}={row.score:.4f}" if row.score is not None else "-")
        size = human_size(row.size_bytes)
        table.append((row.version, ",".join(row.stages) or "-", row.created_at, score, size))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths,
                                                                      strict=True)).rstrip())


@models.command()
def promote(
    tag: Annotated[str, typer.Argument(help="NAME:VERSION (or NAME@STAGE: that stage's "
                                       "version, or NAME:latest)")],
    stage: Stage = PRODUCTION,
    reason: Reason = "",
) -> None:
    """Put a version in a stage (production by default), after checking it loads."""
    stage = _stage(stage)
    try:
        reference = ModelReference.parse(tag)
    except StageError as exc:
        raise CliError(str(exc), code=2) from None
    registry = StageRegistry.default()
    concrete = _change("promote", lambda: resolve_tag(tag, registry))
    version = concrete.split(":", 1)[1]
    change = _change("promote", lambda: registry.promote(
        reference.name, version, stage, reason=reason, check=_serves,
        allow_version_mismatch=get_settings().allow_version_mismatch))
    if not change.changed:
        typer.echo(f"{concrete} is already in {stage}; nothing changed")
        return
    was = f" (was {reference.name}:{change.previous})" if change.previous else ""
    typer.echo(f"promoted {concrete} to {stage}{was} by {change.entry.by}")


@models.command()
def rollback(name: str, stage: Stage = PRODUCTION, reason: Reason = "") -> None:
    """Give a stage back to the version that held it before the current one."""
    name, stage = _name(name), _stage(stage)
    registry = StageRegistry.default()
    change = _change("rollback", lambda: registry.rollback(
        name, stage, reason=reason, check=_serves,
        allow_version_mismatch=get_settings().allow_version_mismatch))
    typer.echo(f"rolled {stage} back to {change.entry.tag} (was {name}:{change.previous}) "
               f"by {change.entry.by}")


@models.command()
def history(name: str, as_json: AsJson = False,
            stage: Annotated[str | None, typer.Option("--stage", help="one stage only")] = None,
            ) -> None:
    """Every promotion and rollback of NAME, oldest first."""
    name = _name(name)
    try:
        events = StageRegistry.default().history(name, _stage(stage) if stage else None)
    except StageError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([vars(event) for event in events], indent=1))
        return
    if not events:
        typer.echo(f"{name} has never been promoted: agbento models promote {name}:VERSION")
        return
    for event in events:
        was = event.previous or "-"
        why = f"  {event.reason}" if event.reason else ""
        typer.echo(f"{event.event:>4}  {event.at}  {event.stage}  {event.action:<8}  "
                   f"{event.version}  (was {was})  by {event.by}{why}")
