"""Every subcommand module, imported once so each registers itself on `agbento.cli.app`."""

from agbento.cli import drift, keys, models, serve, train  # noqa: F401
