"""The `agbento` command: one entry for every step a team takes with a model.

    agbento train --demo            agbento serve            agbento batch IN OUT --url URL
    agbento models list NAME        agbento drift ...        agbento keys create ...

Each subcommand lives in a module of its own here and registers itself on `app`; the work
is done by the library packages below. A failure a user can act on is one line on stderr
(`error: ...`) and a non-zero exit, never a traceback.

May import: every agbento package (this is the top floor).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from agbento.core.errors import StartupError

# `agbento --help` lists the commands in the order a team meets them.
ORDER = ("train", "serve", "batch", "spark", "models", "drift", "keys", "bench")


class _Commands(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        known = super().list_commands(ctx)
        return sorted(known, key=lambda name: ORDER.index(name) if name in ORDER else 99)


app = typer.Typer(
    name="agbento",
    cls=_Commands,
    help="AutoGluon tabular models in production on BentoML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: docstrings rewrapped to the terminal
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        from agbento import __version__

        typer.echo(f"agbento {__version__} (bentoml {version('bentoml')}, autogluon.tabular "
                   f"{version('autogluon.tabular')})")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="the versions and exit")] = False,
) -> None:
    """AutoGluon tabular models in production on BentoML."""


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on stderr; return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _register() -> None:
    # imported for their side effect: each adds its command(s) to `app`
    from agbento.cli import commands  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """The console script: `agbento ARGS`; returns the exit code."""
    _register()
    try:
        # not standalone, click answers a `typer.Exit(n)` by returning n (a command's own
        # return value otherwise: None)
        code = app(args=argv, prog_name="agbento", standalone_mode=False)
    except typer.Exit as done:
        return int(done.exit_code)
    except CliError as error:
        typer.echo(f"error: {error}", err=True)
        return error.code
    except StartupError as error:  # a setting or model the user must fix
        typer.echo(f"error: {error}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    except TyperException as error:  # usage errors: one line, not click's usage block
        if type(error).__name__ == "NoArgsIsHelpError":  # `agbento` alone: its help
            typer.echo(error.format_message())  # type: ignore[attr-defined]
            return 0
        typer.echo(f"error: {error.format_message()}", err=True)  # type: ignore[attr-defined]
        return int(getattr(error, "exit_code", 2))
    return code if isinstance(code, int) else 0


def run(argv: list[str]) -> None:
    """`python -m agbento.X ARGS`: the same as `agbento X ARGS`."""
    sys.exit(main(argv))
