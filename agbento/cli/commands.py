"""Every subcommand module, imported once so each registers itself on `agbento.cli.app`."""

from agbento.cli import drift, keys, models, offline, serve, train  # noqa: F401
