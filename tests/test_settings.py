"""AGBENTO_* settings: parsed once, typed, and loud about bad values."""

from __future__ import annotations

import pytest

from agbento.settings import DEMO_MODEL_NAME, Settings, SettingsError


def test_defaults_serve_a_laptop() -> None:
    settings = Settings.from_env({})
    assert settings.model == f"{DEMO_MODEL_NAME}:latest"
    assert settings.max_rows == 10000
    assert settings.access_log is False


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {"AGBENTO_MODEL": "m:1", "AGBENTO_MAX_ROWS": "5", "AGBENTO_ACCESS_LOG": "yes"}
    )
    assert (settings.model, settings.max_rows, settings.access_log) == ("m:1", 5, True)


@pytest.mark.parametrize(
    "env",
    [{"AGBENTO_MAX_ROWS": "many"}, {"AGBENTO_MAX_ROWS": "0"}, {"AGBENTO_ACCESS_LOG": "maybe"}],
)
def test_bad_values_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_max_cells_follows_max_rows_unless_set() -> None:
    assert Settings.from_env({}).max_cells == 100 * 10_000
    assert Settings.from_env({"AGBENTO_MAX_ROWS": "50"}).max_cells == 5_000
    assert Settings.from_env({"AGBENTO_MAX_ROWS": "50", "AGBENTO_MAX_CELLS": "7"}).max_cells == 7
    with pytest.raises(SettingsError, match="AGBENTO_MAX_CELLS"):
        Settings.from_env({"AGBENTO_MAX_CELLS": "0"})
