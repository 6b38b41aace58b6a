"""Manage API keys: `python -m agbento.keys create|list|revoke --file FILE`.

    python -m agbento.keys create --id analytics --owner "BI team" \\
        --permissions predict,model_info --expires 2027-06-30 --file keys.json

`create` prints the new key once, as its last line; the file keeps only its SHA-256.
A running service notices the file's changes within seconds (AGBENTO_API_KEYS_FILE).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from agbento.auth import PERMISSIONS, ApiKey, digest, new_key, read_keys, write_keys

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agbento.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key; prints it once")
    create.add_argument("--id", required=True, help="letters, digits, - and _ (shown in logs)")
    create.add_argument("--owner", default="", help="who holds it")
    create.add_argument("--permissions", required=True,
                        help=f"comma-separated: {', '.join(PERMISSIONS)}")
    create.add_argument("--expires", help="ISO date or datetime (UTC); default: never")
    listing = commands.add_parser("list", help="ids, owners, permissions, expiry (no secrets)")
    revoke = commands.add_parser("revoke", help="remove a key")
    revoke.add_argument("--id", required=True)
    for sub in (create, listing, revoke):
        sub.add_argument("--file", type=Path, required=True, help="the keys file (JSON)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        keys = read_keys(args.file)
    except (ValueError, KeyError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    if args.command == "list":
        for key in keys.values():
            print(f"{key.id}\t{key.owner}\t{','.join(key.permissions)}\t"
                  f"{key.expires_at or 'never'}")
        return 0
    if args.command == "revoke":
        if keys.pop(args.id, None) is None:
            print(f"error: no key {args.id!r} in {args.file}", file=sys.stderr)
            return 1
        write_keys(args.file, keys)
        print(f"revoked {args.id}")
        return 0
    permissions = tuple(p.strip() for p in args.permissions.split(",") if p.strip())
    problems = []
    if not ID_PATTERN.match(args.id):
        problems.append("--id: use 1-64 letters, digits, - or _")
    if args.id in keys:
        problems.append(f"--id {args.id!r} exists; revoke it first")
    if not permissions or set(permissions) - set(PERMISSIONS):
        problems.append(f"--permissions: choose from {', '.join(PERMISSIONS)}")
    expires = None
    if args.expires:
        try:
            when = datetime.fromisoformat(args.expires)
        except ValueError:
            problems.append(f"--expires {args.expires!r}: not an ISO date")
        else:
            expires = (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    key = new_key(args.id)
    keys[args.id] = ApiKey(
        id=args.id, owner=args.owner, permissions=permissions, sha256=digest(key),
        expires_at=expires, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_keys(args.file, keys)
    print(f"created {args.id} ({','.join(permissions)}) in {args.file}; the key, shown once:")
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
