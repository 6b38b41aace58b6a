"""Manage API keys: `python -m agbento.keys create|list|revoke --file FILE`.

    python -m agbento.keys create --id analytics --owner "BI team" \\
        --permissions predict,model_info --expires 2027-06-30 --file keys.json

`create` prints the new key once, as its last line; the file keeps only its SHA-256.
A running service notices the file's changes within seconds (AGBENTO_API_KEYS_FILE).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from agbento.http.auth import (
    DATE_ONLY,
    ID_PATTERN,
    PERMISSIONS,
    ApiKey,
    digest,
    expiry_instant,
    load_keys,
    new_key,
    write_keys,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agbento.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key; prints it once")
    create.add_argument("--id", required=True, help="letters, digits, - and _ (shown in logs)")
    create.add_argument("--owner", default="", help="who holds it")
    create.add_argument("--permissions", required=True,
                        help=f"comma-separated: {', '.join(PERMISSIONS)}")
    create.add_argument("--expires", help="YYYY-MM-DD (valid through that day, UTC) or an "
                        "ISO datetime (UTC without an offset); default: never")
    listing = commands.add_parser("list", help="ids, owners, permissions, expiry (no secrets)")
    revoke = commands.add_parser("revoke", help="remove a key")
    revoke.add_argument("--id", required=True)
    for sub in (create, listing, revoke):
        sub.add_argument("--file", type=Path, required=True, help="the keys file (JSON)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        loaded = load_keys(args.file)
    except (ValueError, OSError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    keys, refused = loaded.keys, loaded.refused
    for entry in refused:
        print(f"warning: the service refuses entry {entry.name!r} of {args.file}: "
              f"{entry.problem}", file=sys.stderr)
    if args.command == "list":
        for key in keys.values():
            print(f"{key.id}\t{key.owner}\t{','.join(key.permissions)}\t"
                  f"{key.expires_at or 'never'}")
        return 0
    if args.command == "revoke":
        kept = [entry for entry in refused if entry.name != args.id]
        if keys.pop(args.id, None) is None and len(kept) == len(refused):
            print(f"error: no key {args.id!r} in {args.file}", file=sys.stderr)
            return 1
        write_keys(args.file, keys, keep=[entry.raw for entry in kept])
        print(f"revoked {args.id}")
        return 0
    permissions = tuple(p.strip() for p in args.permissions.split(",") if p.strip())
    problems = []
    if not ID_PATTERN.match(args.id):
        problems.append("--id: use 1-64 letters, digits, - or _")
    if args.id in keys or args.id in {entry.name for entry in refused}:
        problems.append(f"--id {args.id!r} exists; revoke it first")
    if not permissions or set(permissions) - set(PERMISSIONS):
        problems.append(f"--permissions: choose from {', '.join(PERMISSIONS)}")
    expires = None
    if args.expires:
        try:
            when = expiry_instant(args.expires)
        except ValueError as exc:
            problems.append(f"--expires: {exc}")
        else:  # a date stays a date: the file then reads as the person meant it
            expires = args.expires if DATE_ONLY.match(args.expires) else when.isoformat()
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    key = new_key(args.id)
    keys[args.id] = ApiKey(
        id=args.id, owner=args.owner, permissions=permissions, sha256=digest(key),
        expires_at=expires, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_keys(args.file, keys, keep=[entry.raw for entry in refused])
    print(f"created {args.id} ({','.join(permissions)}) in {args.file}; the key, shown once:")
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
