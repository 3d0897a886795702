"""Object bytes between nodes: every node's store serves its arena over TCP, and a reader pulls
an object straight into its own node's arena.

    reader (a worker, or a driver)                        the node that holds the object
    ──────────────────────────────                        ──────────────────────────────
    fetch(addr, off, n, into) ──TCP + token challenge──►  DataServer: one thread per connection
        16-byte request: offset, length        ───────►     checks the range is in the arena
        recv_into(into), 4 MiB at a time       ◄───────     sendall(arena view): no copy in Python

``into`` is a view of the reader's arena (or, for a reader with no arena, one private buffer), so
no Python process ever holds an object twice, and nothing is pickled on this path.  Connections are
kept, one per (process, source), so a pull costs one round trip after the first.

Who knows the token: the head makes it; agents and remote drivers are given it; the head's own
workers inherit it through ``MINIRAY_TOKEN``.  The server checks it before reading anything.
"""
from __future__ import annotations

import os
import socket
import struct
import sys
import threading

from miniray.transport import auth

_REQ = struct.Struct("!QQ")
CHUNK = 4 << 20
BUF = 4 << 20       # socket buffers: fewer wake-ups per object (the kernel caps it at its rmem/wmem_max)


class DataServer:
    """Serves ranges of one arena to authenticated peers, on its own threads."""

    def __init__(self, arena, token: bytes, host: str):
        self.arena, self.token = arena, token
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.address = (host if host != "0.0.0.0" else "127.0.0.1", self.listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True, name="miniray-data").start()

    def advertise(self, ip: str) -> tuple:
        """The address peers should dial: the node's IP with this server's port."""
        return (ip, self.address[1])

    def _accept_loop(self):
        while not self._closed:
            try:
                sock, peer = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock, peer), daemon=True,
                             name="miniray-data-conn").start()

    def _serve(self, sock, peer):
        try:
            auth.serve(sock, self.token)
        except (auth.AuthenticationError, OSError) as err:
            sys.stderr.write(f"miniray: refused an object transfer to {peer[0]}: {err}\n")
            sock.close()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
        try:
            while True:
                head = _recv_exact(sock, _REQ.size)
                if head is None:
                    return
                off, n = _REQ.unpack(head)
                if off + n > self.arena.capacity:
                    sys.stderr.write(f"miniray: {peer[0]} asked for bytes outside the store; closing\n")
                    return
                view = self.arena.view(off, n)
                try:
                    sock.sendall(view)
                finally:
                    view.release()
        except OSError:
            return
        finally:
            sock.close()

    def close(self):
        self._closed = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            return None
        buf += part
    return bytes(buf)


_conns: dict = {}
_lock = threading.Lock()
_token: bytes | None = None


def set_token(token: bytes) -> None:
    global _token
    _token = token


def _connect(addr: tuple, token: bytes | None):
    token = token or _token or os.environ.get("MINIRAY_TOKEN", "").encode()
    if not token:
        raise ConnectionError("this process has no cluster token (MINIRAY_TOKEN) to fetch objects with")
    sock = socket.create_connection(tuple(addr), timeout=10)
    auth.connect(sock, token)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    sock.settimeout(30)
    return sock


def fetch(addr: tuple, off: int, n: int, into: memoryview, token: bytes | None = None) -> None:
    """Copy ``n`` bytes at ``off`` of the arena served at ``addr`` into ``into``.  Raises
    ConnectionError when the source is gone or the transfer breaks (the caller reports the object
    lost); one process runs one transfer per source at a time."""
    key = (*addr, token)
    with _lock:
        entry = _conns.get(key)
        if entry is None:
            entry = _conns[key] = [None, threading.Lock()]
    with entry[1]:
        try:
            if entry[0] is None:
                entry[0] = _connect(tuple(addr), token)
            sock = entry[0]
            sock.sendall(_REQ.pack(off, n))
            got = 0
            while got < n:
                k = sock.recv_into(into[got:], min(CHUNK, n - got))
                if k == 0:
                    raise ConnectionError(f"the node at {key[0]}:{key[1]} closed the transfer")
                got += k
        except (OSError, auth.AuthenticationError) as err:
            if entry[0] is not None:
                entry[0].close()
                entry[0] = None
            raise ConnectionError(f"could not fetch from {key[0]}:{key[1]}: {err}") from None


def close_all() -> None:
    with _lock:
        for entry in _conns.values():
            if entry[0] is not None:
                entry[0].close()
        _conns.clear()
