"""`agbento serve`: `bentoml serve` on 127.0.0.1, after the checks that fail fast.

    agbento serve                                  # the demo model on http://127.0.0.1:3000
    agbento serve --model churn@production --port 8080
    agbento serve --host 0.0.0.0 --keys secrets/keys.json   # reachable by others: keys on

Before BentoML starts, every setting is parsed, the model is looked up in the store and
the port is tried: each failure is one line naming what to change, exit 2, instead of a
traceback with the useful line last. Then `bentoml serve` replaces this process, so
signals (Ctrl-C, SIGTERM) reach it directly.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from agbento.cli import CliError, app
from agbento.core.errors import StartupError
from agbento.core.settings import Settings, SettingsError
from agbento.ops.ports import ensure_port_free

USAGE_EXIT = 2


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(
        help="model to serve: NAME:VERSION, NAME:latest or NAME@STAGE "
        "(default: $AGBENTO_MODEL, else agbento-demo:latest)")] = None,
    host: Annotated[str, typer.Option(
        help="address to bind; 0.0.0.0 makes it reachable from other machines")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 3000,
    keys: Annotated[Path | None, typer.Option(
        help="API keys file (agbento keys create ...); sets AGBENTO_API_KEYS_FILE")] = None,
    project: Annotated[Path, typer.Option(
        help="the directory holding bentofile.yaml and service.py, or a built Bento's")] = Path(),
) -> None:
    """Serve a stored model (more `bentoml serve` options may follow, e.g.
    --timeout-graceful-shutdown 60)."""
    env = dict(os.environ)
    if model:
        env["AGBENTO_MODEL"] = model
    if keys:
        env["AGBENTO_API_KEYS_FILE"] = str(keys.resolve())
    settings = check_settings(env)
    tag = check_model(settings.model)
    check_project(project)
    check_port(host, port)
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    command = [bentoml, "serve", str(project), "--host", host, "--port", str(port), *ctx.args]
    typer.echo(f"serving {tag} ({settings.model}) on http://{host}:{port} "
               f"({settings.topology}, {settings.api_workers} API worker(s))", err=True)
    sys.stderr.flush()
    os.execvpe(command[0], command, env)


def check_settings(env: dict[str, str]) -> Settings:
    try:
        return Settings.from_env(env)
    except SettingsError as error:
        raise CliError(str(error), USAGE_EXIT) from None


def check_model(reference: str) -> str:
    """The concrete tag `reference` (NAME@STAGE, NAME:latest...) names in the store."""
    from agbento.models.stages import resolve_tag
    from agbento.models.store import find_card

    try:
        return find_card(resolve_tag(reference)).tag
    except StartupError as error:
        raise CliError(str(error), USAGE_EXIT) from None


def check_project(project: Path) -> None:
    if not (project / "service.py").is_file() and not (project / "bento.yaml").is_file():
        raise CliError(f"{project.resolve()} holds no service.py (nor a built Bento): run "
                       "from the project's directory or pass --project", USAGE_EXIT)


def check_port(host: str, port: int) -> None:
    try:
        ensure_port_free(host, port)
    except StartupError as error:
        raise CliError(str(error), USAGE_EXIT) from None
