"""The package floors of agbento/__init__.py: every import goes down, never up or sideways
into a floor that is not below (read from the source, so nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "agbento"
# bottom first; a package may import itself and the floors listed before it
FLOORS = ["core", "rows", "models", "monitoring", "explain", "runtime", "training", "http",
          "protocols", "offline", "cli"]
# beside the floors: imports only core
SIDE = {"ops": {"core"}}
# entry modules (python -m agbento.X): they start the command, nothing imports them
ENTRIES = {"__init__", "__main__", "batch", "keys", "spark", "drift"}


def allowed(package: str) -> set[str]:
    if package in SIDE:
        return SIDE[package] | {package}
    if package == FLOORS[-1]:  # the top floor uses every package
        return set(FLOORS) | set(SIDE)
    return set(FLOORS[: FLOORS.index(package) + 1])


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "agbento" and len(parts) > 1:
                found.add(parts[1])
    return found


def modules() -> list[tuple[str, Path]]:
    return [(path.parent.name, path) for path in sorted(PACKAGE.glob("*/*.py"))]


@pytest.mark.parametrize(("package", "path"), modules(), ids=lambda v: str(v))
def test_imports_run_down(package: str, path: Path) -> None:
    assert package in FLOORS or package in SIDE, f"{package}: not a floor in FLOORS"
    upward = imported_packages(path) - allowed(package) - {"__version__"}
    if path.name == "__main__.py":
        upward -= {"cli"}
    assert not upward, f"{path.relative_to(PACKAGE.parent)} imports {sorted(upward)} above it"


def test_every_package_says_what_it_holds_and_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"{init}: say what it may import"


def test_top_level_holds_only_entries() -> None:
    loose = {p.stem for p in PACKAGE.glob("*.py")} - ENTRIES
    assert not loose, f"modules outside a package: {sorted(loose)}"
