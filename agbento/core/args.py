"""The argument parser of the commands that keep argparse (batch, spark; the benchmark):
a usage error is one line, `error: ... (see PROG --help)`, exit 2, as every agbento
command's errors are."""

from __future__ import annotations

import argparse

USAGE_EXIT = 2


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE_EXIT, f"error: {message} (see {self.prog} --help)\n")
