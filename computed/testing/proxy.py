"""A TCP port in front of a broker that can fall silent, as a hung broker or network does."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

__all__ = ["SilentPort"]


class SilentPort:
    """A TCP port in front of a broker that can accept connections and never answer.

    Forwarding, it relays each connection to the broker. Silent, it accepts
    new connections and never says a word, and stops relaying the ones it
    has (their bytes are dropped), like a broker that hangs. Going back to
    forwarding resets the connections it kept silent.
    """

    def __init__(self, broker_port: int) -> None:
        self._broker_port = broker_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._forwarding = False
        self._silenced: list[socket.socket] = []
        self._relays: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/"

    def forward(self) -> None:
        with self._lock:
            self._forwarding = True
            silenced, self._silenced = self._silenced, []
        for sock in silenced:  # reset, as a restarted broker would
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _close(sock)

    def silence(self) -> None:
        with self._lock:
            self._forwarding = False
            relays, self._relays = self._relays, []
            self._silenced.extend(client for client, _ in relays)
        for _, upstream in relays:
            _close(upstream)

    def close(self) -> None:
        self.silence()
        self.forward()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                if not self._forwarding:
                    self._silenced.append(client)
                    continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._broker_port))
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._relays.append((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(source, target), daemon=True).start()

    def _relay(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self._lock:
                    silenced = source in self._silenced or target in self._silenced
                if not silenced:
                    target.sendall(data)


def _close(sock: socket.socket) -> None:
    """Close ``sock``, waking a thread blocked reading it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
