"""Object bytes between nodes: every node's store serves its arena over TCP, and a reader pulls
an object straight into its own node's arena.

    reader (a worker, or a driver)                        the node that holds the object
    ──────────────────────────────                        ──────────────────────────────
    fetch(addr, off, n, into) ──TCP + handshake (door)──►  DataServer: one thread per connection
        40-byte request: offset, length, seq, MAC ───────►   checks the MAC, then the range
        recv_into(into), 4 MiB at a time       ◄───────     sendall(arena view): no copy in Python
        16-byte MAC of the reply, checked      ◄───────     its MAC, hashed alongside the send
        before the object is used

Byte layouts (keys and sequence numbers of the connection's auth.Channel, as framing.py):

    request  [u64 off][u64 n][u64 seq][u8 mac?][MAC 16: HMAC-SHA256(c2s key, the first 25 bytes)]
    reply    [n bytes of the arena][MAC 16: HMAC-SHA256(s2c key, the request's first 25 bytes ‖ bytes)]
             (no reply MAC when the reader asked for none: ``mac?`` = 0)

The reply's MAC matters: the reader unpickles those bytes later, so bytes changed on the way
could run code in it.  It costs what hashing costs, though: HMAC-SHA256 (the fastest MAC in the
stdlib on this CPU, 1.5 GiB/s with its SHA instructions; keyed BLAKE2b does 0.64) is slower than
loopback TCP (2-4 GiB/s), so it is computed in a second thread while the bytes go out, and checked
in one while they come in (hashlib lets go of the GIL); on a real network, slower than the hash,
that hides it.  A reader on a network it trusts may set ``MINIRAY_TRANSFER_MAC=0`` to skip it
(requests stay authenticated); see docs/security.md.

``into`` is a view of the reader's arena (or, for a reader with no arena, one private buffer), so
no Python process ever holds an object twice, and nothing is pickled on this path.  Connections are
kept, one per (process, source), so a pull costs one round trip after the first.

Who knows the token: the head makes it; agents and remote drivers are given it; the head's own
workers inherit it through ``MINIRAY_TOKEN``.  The server checks it before reading anything.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import threading

from miniray.transport import auth
from miniray.transport.door import Door, RateLog

_REQ = struct.Struct("<QQQB")
_MAC = 16
MAC_REPLIES = os.environ.get("MINIRAY_TRANSFER_MAC", "1") != "0"     # this process, as a reader
HASH_ASIDE = 8 << 20        # replies this big are hashed in a second thread, alongside the socket
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
        self.log = RateLog("miniray: object transfers")
        self.door = Door(self.listener, token, self._start, name="miniray object server")

    def advertise(self, ip: str) -> tuple:
        """The address peers should dial: the node's IP with this server's port."""
        return (ip, self.address[1])

    def _start(self, sock, channel, peer):
        threading.Thread(target=self._serve, args=(sock, channel, peer), daemon=True,
                         name="miniray-data-conn").start()

    def _serve(self, sock, channel, peer):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
        try:
            while True:
                head = _recv_exact(sock, _REQ.size + _MAC)
                if head is None:
                    return
                off, n, seq, want_mac = _REQ.unpack_from(head)
                if seq != channel.recv_seq or not hmac.compare_digest(
                        head[_REQ.size:], hmac.digest(channel.recv_key, head[:_REQ.size], hashlib.sha256)[:_MAC]):
                    self.log.note(f"{peer[0]}: a request failed its integrity check; closing")
                    return
                channel.recv_seq += 1
                if off + n > self.arena.capacity:
                    self.log.note(f"{peer[0]} asked for bytes outside the store; closing")
                    return
                view = self.arena.view(off, n)
                try:
                    if want_mac:
                        _send_hashed(sock, view, hmac.new(channel.send_key, head[:_REQ.size], hashlib.sha256))
                    else:
                        sock.sendall(view)
                finally:
                    view.release()
        except OSError:
            return
        finally:
            sock.close()

    def close(self):
        self.door.close()


def _send_hashed(sock, view, mac):
    """Send ``view`` and then its MAC, hashing in a second thread for a big one."""
    if len(view) < HASH_ASIDE:
        mac.update(view)
        sock.sendall(view)
    else:
        hasher = threading.Thread(target=mac.update, args=(view,), name="miniray-mac")
        hasher.start()
        sock.sendall(view)
        hasher.join()
    sock.sendall(mac.digest()[:_MAC])


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
    channel = auth.connect(sock, token)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    sock.settimeout(30)
    return sock, channel


class _Checker:
    """Hashes the chunks of a reply as they land, in a second thread for a big reply."""

    def __init__(self, mac, into, n):
        self.mac, self.into = mac, into
        self.chunks = None
        if n >= HASH_ASIDE:
            import queue
            self.chunks = queue.SimpleQueue()
            self.thread = threading.Thread(target=self._run, name="miniray-mac")
            self.thread.start()

    def _run(self):
        while (span := self.chunks.get()) is not None:
            self.mac.update(self.into[span[0]:span[1]])

    def add(self, start, end):
        if self.chunks is None:
            self.mac.update(self.into[start:end])
        else:
            self.chunks.put((start, end))

    def digest(self):
        if self.chunks is not None:
            self.chunks.put(None)
            self.thread.join()
        return self.mac.digest()[:_MAC]


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
            sock, channel = entry[0]
            req = _REQ.pack(off, n, channel.send_seq, MAC_REPLIES)
            sock.sendall(req + hmac.digest(channel.send_key, req, hashlib.sha256)[:_MAC])
            channel.send_seq += 1
            checker = _Checker(hmac.new(channel.recv_key, req, hashlib.sha256), into, n) if MAC_REPLIES else None
            got = 0
            try:
                while got < n:
                    k = sock.recv_into(into[got:], min(CHUNK, n - got))
                    if k == 0:
                        raise ConnectionError(f"the node at {key[0]}:{key[1]} closed the transfer")
                    if checker is not None:
                        checker.add(got, got + k)
                    got += k
            finally:
                want = checker.digest() if checker is not None else None
            if want is not None and not hmac.compare_digest(want, _recv_exact(sock, _MAC) or b""):
                raise ConnectionError("the object's bytes failed their integrity check (altered on "
                                      "the way?)")
        except (OSError, auth.AuthenticationError) as err:
            if entry[0] is not None:
                entry[0][0].close()
                entry[0] = None
            raise ConnectionError(f"could not fetch from {key[0]}:{key[1]}: {err}") from None


def close_all() -> None:
    with _lock:
        for entry in _conns.values():
            if entry[0] is not None:
                entry[0][0].close()
        _conns.clear()
