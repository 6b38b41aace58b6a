"""The protocol-clients venv: made once, reused while requirements.txt is unchanged."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
# gitignored; survives between test sessions so only the first one pays the install
CACHE = HERE.parent.parent / ".cache" / "protocol-clients"
INSTALL_TIMEOUT_S = 900


def client_python() -> Path:
    """The venv's python, installing the clients first when the cached venv is missing."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = CACHE / digest
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if done.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True, timeout=INSTALL_TIMEOUT_S)
    done.touch()
    return python
