"""A loopback TCP proxy that breaks chosen requests' connections, as a worker killed with
them in flight does: the request reaches the server, then the client's connection is closed
without an answer (FIN: "Server disconnected without sending a response") or reset (RST).

The server behind it is the real one; only the connections the test names are broken.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Literal
from urllib.parse import urlsplit

Break = Literal["close", "reset"]


class BreakingProxy:
    """Forwards 127.0.0.1:`port` to `target_url`. `breaks` lists, in order, a request-line
    prefix (b"POST /predict") and how to break the connection of the next request that
    starts with it; each is used once. `pending` holds those not used yet."""

    def __init__(self, target_url: str, breaks: list[tuple[bytes, Break]]) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.pending = list(breaks)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()

    def __enter__(self) -> BreakingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        except OSError:
            pass
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            broken = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, broken),
                             daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, broken),
                             daemon=True).start()

    def _break_for(self, data: bytes) -> Break | None:
        with self._lock:
            for i, (prefix, how) in enumerate(self.pending):
                if data.startswith(prefix):
                    del self.pending[i]
                    return how
        return None

    def _up(self, client: socket.socket, upstream: socket.socket,
            broken: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                how = self._break_for(data)
                if how is not None:
                    broken.set()  # first: no answer goes back on this connection
                upstream.sendall(data)
                if how is not None:
                    if how == "reset":  # close with linger 0: the kernel sends RST
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                          struct.pack("ii", 1, 0))
                    client.close()
                    return
        except OSError:
            pass
        finally:
            upstream.close()

    def _down(self, upstream: socket.socket, client: socket.socket,
              broken: threading.Event) -> None:
        try:
            while (data := upstream.recv(65536)) and not broken.is_set():
                client.sendall(data)
        except OSError:
            pass
        finally:
            if not broken.is_set():
                try:
                    client.shutdown(socket.SHUT_RDWR)  # wakes `_up`
                except OSError:
                    pass
                client.close()
