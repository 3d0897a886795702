"""Framing: one message = one pickled Python object behind a length header.

Byte layout of a frame on the wire:

    [u32 little-endian: payload length][payload: pickle protocol 5 of the message]

A message is a list of *items*, so one frame carries a whole batch (many task calls, many results):
batching is what makes tiny tasks cheap.  ``Connection.send`` is thread-safe; ``recv`` is for a single
reader thread; ``FrameReader`` parses frames for the node's select loop, reading without blocking.
"""
from __future__ import annotations

import os
import pickle
import socket
import struct
import threading

from miniray.transport.unloadable import load_frame

HEADER = struct.Struct("<I")
MAX_FRAME = 1 << 31

# A reader that expects a frame any moment (a driver in a ``get`` of one or two objects, a worker
# between calls) polls for this long, yielding the CPU between polls, before it sleeps: waking a
# sleeping process costs tens of microseconds on a VM, as much as a whole tiny call.
# MINIRAY_SPIN_US=0 turns it off.
SPIN_S = float(os.environ.get("MINIRAY_SPIN_US", "300")) / 1e6


class ConnectionClosed(EOFError):
    pass


class Connection:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._send_lock = threading.Lock()
        self._rbuf = bytearray()

    def send(self, items: list) -> None:
        payload = pickle.dumps(items, protocol=5)
        with self._send_lock:
            self.sock.sendall(HEADER.pack(len(payload)) + payload if len(payload) < 65536
                              else HEADER.pack(len(payload)))
            if len(payload) >= 65536:
                self.sock.sendall(payload)

    def recv(self) -> list:
        """Block until one whole frame has arrived; raise ConnectionClosed at EOF."""
        header = self._recv_exact(HEADER.size)
        (n,) = HEADER.unpack(header)
        return pickle.loads(self._recv_exact(n))

    def _recv_exact(self, n: int) -> bytes:
        buf = self._rbuf
        while len(buf) < n:
            chunk = self.sock.recv(max(65536, n - len(buf)))
            if not chunk:
                raise ConnectionClosed("peer closed the connection")
            buf += chunk
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class FrameReader:
    """Incremental parser: ``feed()`` after the socket is readable returns the complete messages."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buf = bytearray()

    def feed(self, block: bool = False) -> list:
        """The messages completed by all that can be read now ([] if none), or, with ``block``,
        waiting for the next arrival first.  Reads never block otherwise: another thread may have
        taken the bytes that made the socket readable."""
        flags = 0 if block else socket.MSG_DONTWAIT
        while True:
            try:
                chunk = self.sock.recv(1 << 20, flags)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise ConnectionClosed(str(exc)) from exc
            if not chunk:
                raise ConnectionClosed("peer closed the connection")
            self._buf += chunk
            if len(chunk) < 1 << 20:      # a short read: nothing more is waiting
                break
            flags = socket.MSG_DONTWAIT
        out, buf, pos = [], self._buf, 0
        while len(buf) - pos >= HEADER.size:
            (n,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - HEADER.size < n:
                break
            out.append(load_frame(memoryview(buf)[pos + HEADER.size:pos + HEADER.size + n]))
            pos += HEADER.size + n
        del buf[:pos]
        return out
