"""The `agbento` command: every subcommand answers --help, errors are one line with a
non-zero exit, and each `python -m agbento.X` is the same command as `agbento X`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agbento.cli import ORDER

ROOT = Path(__file__).resolve().parent.parent
AGBENTO = str(Path(sys.executable).with_name("agbento"))


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_command_lists_every_subcommand_in_order() -> None:
    done = run(AGBENTO, "--help")
    assert done.returncode == 0
    listed = [line.split()[0] for line in done.stdout.split("Commands:")[1].splitlines()
              if line.strip()]
    assert listed == list(ORDER)


@pytest.mark.parametrize("command", ORDER)
def test_every_subcommand_has_help(command: str) -> None:
    done = run(AGBENTO, command, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower() and command in done.stdout


@pytest.mark.parametrize(("argv", "expected"), [
    (["bogus"], "No such command 'bogus'"),
    (["serve", "--port", "many"], "'--port'"),
    (["keys", "list"], "Missing option '--file'"),
    (["batch", "only-input.csv"], "required: output"),
    (["spark", "--bogus"], "required"),
    (["models", "promote", "no-version"], ""),
    (["train", "--data", "x.csv"], "--label is required"),
])
def test_errors_are_one_line_and_non_zero(argv: list[str], expected: str) -> None:
    done = run(AGBENTO, *argv)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expected in lines[0]


@pytest.mark.parametrize("alias", ["batch", "keys", "spark", "drift", "models"])
def test_python_m_aliases_are_the_same_commands(alias: str) -> None:
    through_alias = run(sys.executable, "-m", f"agbento.{alias}", "--help")
    through_command = run(AGBENTO, alias, "--help")
    assert through_alias.returncode == through_command.returncode == 0
    assert through_alias.stdout == through_command.stdout


def test_train_py_is_agbento_train() -> None:
    assert run(sys.executable, "train.py", "--help").stdout == run(
        AGBENTO, "train", "--help").stdout


def test_the_command_alone_shows_its_help_and_version_says_what_runs() -> None:
    alone = run(AGBENTO)
    assert alone.returncode == 0 and "Commands:" in alone.stdout
    version = run(AGBENTO, "--version")
    assert version.returncode == 0 and version.stdout.startswith("agbento ")
    assert "bentoml 1.4" in version.stdout
