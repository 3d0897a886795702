"""A joined node's own object store: its arena, and the allocator its workers share.

    worker on this node ──store.sock──► NodeStore (threads in the agent process)
        ("alloc", size) ─► ("ok", offset) | ("full", None)      the worker writes the object there,
        ("keep", offset)    the block now belongs to an object the head knows about
        ("free", offset)    the worker gave the block up (a failed write)
    head ──agent's TCP connection──► ("free", [offsets])         the object was freed cluster-wide

The head keeps the directory (which node holds which object, and who still needs it); this store
only hands out memory and takes it back.  A block is *unkept* from ``alloc`` until ``keep``: if its
worker dies first, nobody else can know of it, and it is freed here.  There is no spilling on a
joined node: when its arena is full, the worker streams the object to the head's store instead
(runtime.py), which spills.

State: ``arena`` (its allocator is guarded by ``lock``) and ``unkept`` (offset -> connection).
"""
from __future__ import annotations

import os
import socket
import threading
import uuid

from miniray.store.arena import Arena
from miniray.transport.framing import Connection, ConnectionClosed


class NodeStore:
    def __init__(self, session_dir: str, capacity: int):
        self.arena = Arena.create(f"miniray_{os.getpid()}_{uuid.uuid4().hex[:8]}", capacity)
        self.lock = threading.Lock()
        self.unkept: dict[int, int] = {}
        self.sock_path = os.path.join(session_dir, "store.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        self.listener.listen(64)
        threading.Thread(target=self._accept_loop, daemon=True, name="miniray-nodestore").start()

    def _accept_loop(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(Connection(sock),), daemon=True,
                             name="miniray-nodestore-conn").start()

    def _serve(self, conn):
        me = id(conn)
        try:
            while True:
                for kind, arg in conn.recv():
                    if kind == "alloc":
                        with self.lock:
                            off = self.arena.alloc(arg)
                            if off is not None:
                                self.unkept[off] = me
                        conn.send([("ok", off) if off is not None else ("full", self.arena.capacity)])
                    elif kind == "keep":
                        with self.lock:
                            self.unkept.pop(arg, None)
                    elif kind == "free":
                        self.free([arg])
        except (ConnectionClosed, OSError):
            pass
        with self.lock:      # the worker is gone: blocks it never handed to the head go back
            for off in [o for o, who in self.unkept.items() if who == me]:
                del self.unkept[off]
                self.arena.free(off)
        conn.sock.close()

    def free(self, offsets) -> None:
        with self.lock:
            for off in offsets:
                self.unkept.pop(off, None)
                if off in self.arena._used:
                    self.arena.free(off)

    @property
    def used(self) -> int:
        with self.lock:
            return self.arena.used

    def close(self) -> None:
        self.listener.close()
        self.arena.unlink()
        self.arena.close()


class NodeStoreClient:
    """A worker's side of ``store.sock``: one request at a time, under a lock."""

    def __init__(self, sock_path: str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(sock_path)
        self.conn = Connection(sock)
        self.lock = threading.Lock()

    def alloc(self, size: int) -> int | None:
        """An offset in this node's arena, or None when it is full."""
        with self.lock:
            self.conn.send([("alloc", size)])
            status, off = self.conn.recv()[0]
        return off if status == "ok" else None

    def keep(self, off: int) -> None:
        self.conn.send([("keep", off)])

    def free(self, off: int) -> None:
        self.conn.send([("free", off)])
