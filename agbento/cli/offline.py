"""`agbento batch`, `agbento spark` and `agbento bench`: commands whose options are parsed
by their own modules (argparse, one-line usage errors); `--help` shows them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from agbento.cli import CliError, app

# The arguments go through untouched, --help included, to the command's own parser.
PASSED_THROUGH = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True,
                         "help_option_names": []},
    "add_help_option": False,
}


@app.command(**PASSED_THROUGH)  # type: ignore[arg-type]
def batch(ctx: typer.Context) -> None:
    """Score a CSV, Parquet or JSONL file of any size against a running service (or
    in-process with --local); resumable. `agbento batch --help` for its options."""
    from agbento.offline.batch import main

    raise typer.Exit(main(ctx.args, prog="agbento batch"))


@app.command(**PASSED_THROUGH)  # type: ignore[arg-type]
def spark(ctx: typer.Context) -> None:
    """Score a table with Spark where it lives, with the same stored model (pyspark,
    Java 17). `agbento spark --help` for its options."""
    from agbento.offline.spark import main

    raise typer.Exit(main(ctx.args, prog="agbento spark"))


@app.command(**PASSED_THROUGH)  # type: ignore[arg-type]
def bench(ctx: typer.Context) -> None:
    """The side-by-side benchmark (loadtests/bench.py of the project: run from a clone).
    `agbento bench --help` for its options."""
    script = Path("loadtests/bench.py")
    if not script.is_file():
        raise CliError("loadtests/bench.py is not here: the benchmark runs from a clone of "
                       "the project, in its directory", 2)
    raise typer.Exit(subprocess.call([sys.executable, str(script), *ctx.args]))
