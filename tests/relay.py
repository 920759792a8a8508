"""A TCP relay the test controls, between a client and a server on 127.0.0.1: ``cut()``
resets every relayed connection and refuses new ones until ``restore()``, so a client
loses its connection for real (a browser's offline emulation only holds frames back)."""

from __future__ import annotations

import socket
import struct
import threading


class Relay:
    """Listens on an ephemeral 127.0.0.1 port and relays each connection to ``target``."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._up = True
        self._closed = False
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if not self._up or self._closed:
                    _reset(client)
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _reset(client)
                    continue
                upstream.settimeout(None)
                self._pairs.append((client, upstream))
                self.accepted += 1
            done = threading.Semaphore(0)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, done), daemon=True).start()
            threading.Thread(target=self._close_pair, args=(client, upstream, done), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, done: threading.Semaphore) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
            if self._up:  # pass a real EOF on; after cut() the close resets instead
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            done.release()

    @staticmethod
    def _close_pair(client: socket.socket, upstream: socket.socket, done: threading.Semaphore) -> None:
        # Close only once both pumps are out of recv(): a socket closed under a blocked
        # recv() in another thread is not closed by the kernel (no reset would be sent).
        done.acquire()
        done.acquire()
        client.close()
        upstream.close()

    def cut(self) -> None:
        """Reset every relayed connection (both sides) and refuse new ones."""
        with self._lock:
            self._up = False
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    # SO_LINGER 0: the close sends a reset; SHUT_RD wakes the pump's recv().
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.cut()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped network path looks to the peer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
