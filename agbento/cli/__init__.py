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

import typer
from typer.exceptions import TyperException

app = typer.Typer(
    name="agbento",
    help="AutoGluon tabular models in production on BentoML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    except TyperException as error:  # usage errors: one line, not click's usage block
        typer.echo(f"error: {error.format_message()}", err=True)  # type: ignore[attr-defined]
        return int(getattr(error, "exit_code", 2))
    return code if isinstance(code, int) else 0


def run(argv: list[str]) -> None:
    """`python -m agbento.X ARGS`: the same as `agbento X ARGS`."""
    sys.exit(main(argv))
