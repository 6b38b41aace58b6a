"""Every subcommand module, imported once so each registers itself on `agbento.cli.app`."""

from agbento.cli import keys, models, serve, train  # noqa: F401
