"""Framing: one message = one pickled Python object behind a length header.

Byte layout of a frame on a Unix socket inside the session directory (mode 0700: only this user
can connect, so nothing more is needed, and the local hot path pays for nothing more):

    [u32 little-endian: payload length][payload: pickle protocol 5 of the message]

On a TCP connection, after the handshake (auth.py), each frame is authenticated under that
connection's key for its direction (``Channel``), and checked before it is unpickled:

    0                           16        20                28
    [MAC: 16 bytes             ][u32 len ][u64 seq         ][payload: len bytes]
    MAC = keyed BLAKE2b-128(key of this direction, bytes 16.. to the end of the payload)
    seq = 0, 1, 2, ... per direction: a frame dropped, replayed, reordered or moved to another
          connection fails, as does any changed byte

The MAC comes first so that what it covers is one contiguous run of bytes, hashed in place.
Keyed BLAKE2b is a MAC by design (RFC 7693) and, for the small frames that make up the hot path,
costs about half of HMAC-SHA256 in CPython here (2.6 against 4.8 us for 300 bytes); object
transfers, which are all bulk, use HMAC-SHA256 instead, which runs at twice BLAKE2b's speed on
this CPU's SHA instructions (cluster/transfer.py).

A frame that fails, or a length over ``MAX_FRAME`` (on any connection), raises ``FrameError``, a
``ConnectionClosed``: the reader drops that one connection as if the peer had hung up.

A message is a list of *items*, so one frame carries a whole batch (many task calls, many results):
batching is what makes tiny tasks cheap.  ``Connection.send`` is thread-safe; ``recv`` is for a single
reader thread; ``FrameReader`` parses frames for the node's select loop, reading without blocking.
"""
from __future__ import annotations

import hmac
import os
import pickle
import socket
import struct
import threading
from hashlib import blake2b as _blake2b

from miniray.transport.unloadable import load_frame

HEADER = struct.Struct("<I")
MAC_LEN = 16
LEN_SEQ = struct.Struct("<IQ")          # after the MAC: length, seq
MAC_HDR = MAC_LEN + LEN_SEQ.size
# The largest message one frame may carry.  Big objects never travel in frames (the store streams
# them in 4 MiB pieces), so a bigger length is a bug or an attack, and is refused before any
# memory is set aside for it.
MAX_FRAME = int(os.environ.get("MINIRAY_MAX_FRAME_MIB", "512")) << 20

# A reader that expects a frame any moment (a driver in a ``get`` of one or two objects, a worker
# between calls) polls for this long, yielding the CPU between polls, before it sleeps: waking a
# sleeping process costs tens of microseconds on a VM, as much as a whole tiny call.
# MINIRAY_SPIN_US=0 turns it off.
SPIN_S = float(os.environ.get("MINIRAY_SPIN_US", "300")) / 1e6


class ConnectionClosed(EOFError):
    pass


class FrameError(ConnectionClosed):
    """A frame too long, or one that fails its MAC or sequence check: that connection is closed."""


def too_long(n: int) -> FrameError:
    return FrameError(f"a frame of {n:,} bytes is over miniray's limit of {MAX_FRAME:,} bytes "
                      "(MINIRAY_MAX_FRAME_MIB); closing that connection")


def seal(channel, payload) -> bytes:
    """The 28 header bytes of the next frame of ``payload`` (caller holds the send lock)."""
    head = LEN_SEQ.pack(len(payload), channel.send_seq)
    channel.send_seq += 1
    if len(payload) < 65536:
        return _blake2b(head + payload, key=channel.send_key, digest_size=MAC_LEN).digest() + head
    mac = _blake2b(head, key=channel.send_key, digest_size=MAC_LEN)
    mac.update(payload)
    return mac.digest() + head


def check(channel, buf, pos: int, n: int):
    """The payload of the frame at ``buf[pos:]`` (its header already read: length ``n``) if its
    sequence number and MAC are right; FrameError if not."""
    view = memoryview(buf)
    want = _blake2b(view[pos + MAC_LEN:pos + MAC_HDR + n], key=channel.recv_key, digest_size=MAC_LEN).digest()
    if (not hmac.compare_digest(want, view[pos:pos + MAC_LEN])
            or LEN_SEQ.unpack_from(buf, pos + MAC_LEN)[1] != channel.recv_seq):
        raise FrameError("a frame failed its integrity check (forged, altered, replayed or out of "
                         "order); closing that connection")
    channel.recv_seq += 1
    return view[pos + MAC_HDR:pos + MAC_HDR + n]


class Connection:
    """``channel`` (auth.Channel): this is a TCP connection past the handshake, MACed frames."""

    def __init__(self, sock: socket.socket, channel=None):
        self.sock, self.channel = sock, channel
        self._send_lock = threading.Lock()
        self._rbuf = bytearray()

    def send(self, items: list) -> None:
        payload = pickle.dumps(items, protocol=5)
        if len(payload) > MAX_FRAME:
            raise ValueError(f"a message of {len(payload):,} bytes is over miniray's frame limit of "
                             f"{MAX_FRAME:,} bytes: pass large data as an object (miniray.put, or a "
                             "task's return value) rather than inside a function or its arguments")
        with self._send_lock:
            header = (HEADER.pack(len(payload)) if self.channel is None
                      else seal(self.channel, payload))
            if len(payload) < 65536:
                self.sock.sendall(header + payload)
            else:
                self.sock.sendall(header)
                self.sock.sendall(payload)

    def recv(self) -> list:
        """Block until one whole frame has arrived; raise ConnectionClosed at EOF."""
        if self.channel is not None:
            header = self._recv_exact(MAC_HDR)
            (n, _) = LEN_SEQ.unpack_from(header, MAC_LEN)
            if n > MAX_FRAME:
                raise too_long(n)
            return pickle.loads(check(self.channel, header + self._recv_exact(n), 0, n))
        header = self._recv_exact(HEADER.size)
        (n,) = HEADER.unpack(header)
        if n > MAX_FRAME:
            raise too_long(n)
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

    def __init__(self, sock: socket.socket, channel=None):
        self.sock, self.channel = sock, channel
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
        if self.channel is not None:
            return self._parse_macced()
        out, buf, pos = [], self._buf, 0
        while len(buf) - pos >= HEADER.size:
            (n,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - HEADER.size < n:
                if n > MAX_FRAME:
                    raise too_long(n)
                break
            out.append(load_frame(memoryview(buf)[pos + HEADER.size:pos + HEADER.size + n]))
            pos += HEADER.size + n
        self._consumed(pos)
        return out

    def _consumed(self, pos: int) -> None:
        """Drop the first ``pos`` bytes, parsed.  If something still holds a view of the buffer (an
        object kept by the code a frame ran while unpickling, say an exception whose traceback
        holds the frame), resizing it would raise BufferError: leave it to that holder, go on in a
        new one."""
        try:
            del self._buf[:pos]
        except BufferError:
            self._buf = bytearray(self._buf[pos:])

    def _parse_macced(self) -> list:
        out, buf, pos = [], self._buf, 0
        while len(buf) - pos >= MAC_HDR:
            (n, _) = LEN_SEQ.unpack_from(buf, pos + MAC_LEN)
            if n > MAX_FRAME:
                raise too_long(n)
            if len(buf) - pos - MAC_HDR < n:
                break
            out.append(load_frame(check(self.channel, buf, pos, n)))
            pos += MAC_HDR + n
        self._consumed(pos)
        return out
