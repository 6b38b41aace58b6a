"""AGBENTO_* settings: parsed once, typed, loud about bad values, and documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agbento.core.settings import DEMO_MODEL_NAME, Settings, SettingsError, usable_cpus, variables

# The configuration page of the documentation site: its table is the reference for every
# AGBENTO_* variable and its default.
CONFIGURATION = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_defaults_serve_a_laptop() -> None:
    settings = Settings.from_env({})
    assert settings.model == f"{DEMO_MODEL_NAME}:latest"
    assert settings.max_rows == 10000
    assert settings.access_log is False
    assert settings.api_keys_file == ""


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {"AGBENTO_MODEL": "m:1", "AGBENTO_MAX_ROWS": "5", "AGBENTO_ACCESS_LOG": "yes",
         "AGBENTO_LOG_LEVEL": "debug", "AGBENTO_EXTRA_FIELDS": " Reject "}
    )
    assert (settings.model, settings.max_rows, settings.access_log) == ("m:1", 5, True)
    assert (settings.log_level, settings.extra_fields) == ("DEBUG", "reject")


def test_blank_means_default_and_other_variables_are_ignored() -> None:
    settings = Settings.from_env({"AGBENTO_MAX_ROWS": "  ", "OTHER": "x", "AGBENTO_NOPE": "1"})
    assert settings.max_rows == Settings.model_fields["max_rows"].default


@pytest.mark.parametrize(
    "env",
    [{"AGBENTO_MAX_ROWS": "many"}, {"AGBENTO_MAX_ROWS": "0"}, {"AGBENTO_ACCESS_LOG": "maybe"},
     {"AGBENTO_LOG_LEVEL": "loud"}, {"AGBENTO_EXTRA_FIELDS": "drop"},
     {"AGBENTO_PREDICTION_LOG_SAMPLE": "2"}, {"AGBENTO_CACHE_MAX_ROWS": "-1"}],
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


def test_every_setting_has_a_description() -> None:
    assert all(field.description for field in Settings.model_fields.values())


def documented_configuration() -> dict[str, str]:
    """variable -> its default cell, from the table of docs/configuration.md."""
    return {m[1]: m[2].strip() for m in re.finditer(r"^\| `(AGBENTO_\w+)` \|([^|]*)\|",
                                                      CONFIGURATION.read_text(), re.MULTILINE)}


def rendered(default: Any) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def test_docs_list_every_variable_with_its_default() -> None:
    documented = documented_configuration()
    assert sorted(documented) == sorted(variables())
    for name, default in variables().items():
        cell = documented[name]
        if default == "":
            assert cell.startswith("(none"), (name, cell)
        else:
            assert cell.split("`")[1] == rendered(default), (name, cell, default)


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(("files", "cpus"), [
    ({}, 8),  # no cgroup files: the affinity
    ({"cpu.max": "max 100000\n"}, 8),  # v2, unlimited
    ({"cpu.max": "200000 100000\n"}, 2),  # v2: a pod with 2 CPUs on a bigger node
    ({"cpu.max": "150000 100000\n"}, 1),  # 1.5 CPUs: one worker, not two throttled ones
    ({"cpu.max": "50000 100000\n"}, 1),  # at least one
    ({"cpu.max": "1600000 100000\n"}, 8),  # a quota above the affinity: the affinity
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 8),
    ({"cpu.max": "garbage"}, 8),  # unreadable: ignored
])
def test_usable_cpus_is_the_smallest_of_affinity_and_cgroup_quota(
        tmp_path: Path, files: dict[str, str], cpus: int) -> None:
    assert usable_cpus(cgroup(tmp_path, files), affinity=lambda: set(range(8))) == cpus
    assert usable_cpus(cgroup(tmp_path, files), affinity=lambda: {3}) == 1


def test_api_workers_follow_the_topology_unless_set() -> None:
    assert Settings.from_env({}).topology == "fused"
    assert Settings.from_env({"AGBENTO_TOPOLOGY": "fused"}).api_workers == usable_cpus()
    assert Settings.from_env({"AGBENTO_TOPOLOGY": " Split "}).api_workers == 1
    assert Settings.from_env({"AGBENTO_TOPOLOGY": "fused",
                              "AGBENTO_API_WORKERS": "3"}).api_workers == 3
    with pytest.raises(SettingsError, match="AGBENTO_TOPOLOGY"):
        Settings.from_env({"AGBENTO_TOPOLOGY": "both"})
