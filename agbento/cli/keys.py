"""`agbento keys create|list|revoke --file FILE`: the API keys a service accepts.

    agbento keys create --id analytics --owner "BI team" \\
        --permissions predict,model_info --expires 2027-06-30 --file keys.json

`create` prints the new key once, as its last line; the file keeps only its SHA-256.
A running service notices the file's changes within seconds (AGBENTO_API_KEYS_FILE).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from agbento.cli import CliError, app
from agbento.http.auth import (
    DATE_ONLY,
    ID_PATTERN,
    PERMISSIONS,
    ApiKey,
    KeysFile,
    digest,
    expiry_instant,
    load_keys,
    new_key,
    write_keys,
)

keys = typer.Typer(help="Make, list and revoke API keys (the file keeps only digests).",
                   no_args_is_help=True)
app.add_typer(keys, name="keys")

KeysPath = Annotated[Path, typer.Option("--file", help="the keys file (JSON)")]


def _read(file: Path) -> KeysFile:
    try:
        loaded = load_keys(file)
    except (ValueError, OSError) as exc:
        raise CliError(f"cannot read {file}: {exc}") from None
    for entry in loaded.refused:
        typer.echo(f"warning: the service refuses entry {entry.name!r} of {file}: "
                   f"{entry.problem}", err=True)
    return loaded


@keys.command("list")
def list_keys(file: KeysPath) -> None:
    """Ids, owners, permissions and expiry (no secrets)."""
    for key in _read(file).keys.values():
        typer.echo(f"{key.id}\t{key.owner}\t{','.join(key.permissions)}\t"
                   f"{key.expires_at or 'never'}")


@keys.command()
def revoke(
    file: KeysPath,
    id: Annotated[str, typer.Option("--id", help="the key to remove")],  # noqa: A002
) -> None:
    """Remove a key."""
    loaded = _read(file)
    kept = [entry for entry in loaded.refused if entry.name != id]
    if loaded.keys.pop(id, None) is None and len(kept) == len(loaded.refused):
        raise CliError(f"no key {id!r} in {file}")
    write_keys(file, loaded.keys, keep=[entry.raw for entry in kept])
    typer.echo(f"revoked {id}")


@keys.command()
def create(
    file: KeysPath,
    id: Annotated[str, typer.Option(  # noqa: A002
        "--id", help="letters, digits, - and _ (shown in logs)")],
    permissions: Annotated[str, typer.Option(
        help=f"comma-separated: {', '.join(PERMISSIONS)}")],
    owner: Annotated[str, typer.Option(help="who holds it")] = "",
    expires: Annotated[str | None, typer.Option(
        help="YYYY-MM-DD (valid through that day, UTC) or an ISO datetime (UTC without an "
        "offset); default: never")] = None,
) -> None:
    """Make a key; prints it once, as the last line."""
    loaded = _read(file)
    granted = tuple(p.strip() for p in permissions.split(",") if p.strip())
    problems = []
    if not ID_PATTERN.match(id):
        problems.append("--id: use 1-64 letters, digits, - or _")
    if id in loaded.keys or id in {entry.name for entry in loaded.refused}:
        problems.append(f"--id {id!r} exists; revoke it first")
    if not granted or set(granted) - set(PERMISSIONS):
        problems.append(f"--permissions: choose from {', '.join(PERMISSIONS)}")
    expires_at = None
    if expires:
        try:
            when = expiry_instant(expires)
        except ValueError as exc:
            problems.append(f"--expires: {exc}")
        else:  # a date stays a date: the file then reads as the person meant it
            expires_at = expires if DATE_ONLY.match(expires) else when.isoformat()
    if problems:
        raise CliError("; ".join(problems), code=2)
    key = new_key(id)
    loaded.keys[id] = ApiKey(
        id=id, owner=owner, permissions=granted, sha256=digest(key),
        expires_at=expires_at, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_keys(file, loaded.keys, keep=[entry.raw for entry in loaded.refused])
    typer.echo(f"created {id} ({','.join(granted)}) in {file}; the key, shown once:")
    typer.echo(key)
