"""A TCP proxy on 127.0.0.1 that can stop forwarding: a connection that hangs, not one that fails.

Its sockets stay open and the kernel keeps acknowledging packets, so neither TCP
keepalives nor ``tcp_user_timeout`` notice anything: only the client's own guard can.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress
from types import TracebackType


class BlackHoleProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``black_hole()`` drops everything from then on."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def black_hole(self) -> None:
        """From now on, read and drop what either side sends; accept new connections and forward nothing."""
        self._forwarding.clear()

    def close(self) -> None:
        """Close every connection (the server sees its clients go) and stop listening."""
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def __enter__(self) -> BlackHoleProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self._forwarding.is_set():
                try:
                    sink.sendall(data)
                except OSError:
                    return
