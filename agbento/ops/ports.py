"""Is the address a server is about to bind free? Asked before the model loads."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from agbento.core.errors import StartupError

# What `bentoml serve` binds without --host / --port (BentoML 1.4.39's defaults)
BENTOML_HOST, BENTOML_PORT = "0.0.0.0", 3000


def ensure_port_free(host: str, port: int) -> None:
    """Bind and release as the server will; a StartupError naming the address if it can't."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            why = ("is in use (another server? choose another with --port)"
                   if error.errno == errno.EADDRINUSE else f"cannot be bound: {error.strerror}")
            raise StartupError(f"{host}:{port} {why}") from None


def serve_address(args: Sequence[str]) -> tuple[str, int]:
    """--host/--port (or -p) of a `bentoml serve` command line, else BentoML's defaults."""
    host, port = BENTOML_HOST, BENTOML_PORT
    for i, arg in enumerate(args):
        name, _, inline = arg.partition("=")
        value = inline or (args[i + 1] if i + 1 < len(args) else "")
        if name == "--host" and value:
            host = value
        elif name in ("--port", "-p") and value.isdigit():
            port = int(value)
    return host, port
