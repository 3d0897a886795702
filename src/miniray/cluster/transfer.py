"""Object bytes between nodes: every node's store serves its arena over TCP, and a reader pulls
an object straight into its own node's arena.

    reader (a worker, or a driver)                        the node that holds the object
    ──────────────────────────────                        ──────────────────────────────
    fetch(addr, off, n, into) ──TCP + handshake (door)──►  DataServer: one thread per connection
        41-byte request: offset, length, seq, MAC ───────►   checks the MAC, then the range
        recv_into(into), 4 MiB at a time       ◄───────     sendall(arena view), 4 MiB at a time:
        each piece MACed as it lands                          each MACed just before; no copy
        16-byte MAC of the reply, checked      ◄───────     the MAC
        before the object is used

Byte layouts (keys and sequence numbers of the connection's auth.Channel, as framing.py):

    request  [u64 off][u64 n][u64 seq][u8 mac?][MAC 16: HMAC-SHA256(c2s key, the first 25 bytes)]
    reply    [n bytes of the arena][MAC 16 of (the request's first 25 bytes ‖ the bytes)]
      mac? = 2  AES-256-GMAC, key HMAC-SHA256(s2c key, "miniray transfer reply AES-GMAC"),
                nonce "mrt1" ‖ u64 seq: the default
      mac? = 1  HMAC-SHA256(s2c key) cut to 16 bytes: a reader without `cryptography`
      mac? = 0  no reply MAC (``MINIRAY_TRANSFER_MAC=0``)

The reply's MAC matters: the reader unpickles those bytes later, so bytes changed on the way
could run code in it.  Its cost is what hashing costs, twice (sender and reader), on a path where
loopback TCP moves 2-4 GiB/s: HMAC-SHA256, the fastest MAC in the stdlib (1.5 GiB/s here, keyed
BLAKE2b 0.64), made transfers 4x the CPU.  GMAC (GCM's polynomial hash over carry-less multiplies,
then one AES block as a one-time pad) runs at 15-20 GiB/s with PCLMULQDQ/VPCLMULQDQ, and Poly1305
(the other fast Carter-Wegman MAC, in the same package) at 10-11; both are as strong as HMAC as
long as a (key, nonce) pair is never used twice, which the per-connection key and the request's
sequence number guarantee (the server only answers the next sequence number).  Each 4 MiB piece
is MACed in the same thread right next to its socket call, while it is in cache; a second thread
buys nothing when, as here, both ends share two cores.  `cryptography` is imported on the first
transfer only, so ``import miniray`` stays light.  A reader on a network it trusts may set
``MINIRAY_TRANSFER_MAC=0`` to skip the reply MAC (requests stay authenticated); see
docs/security.md.

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
NO_MAC, HMAC_SHA256, AES_GMAC = 0, 1, 2     # the request's ``mac?`` byte: what the reply carries
CHUNK = 4 << 20     # bytes MACed then sent, or received then MACed, at a time
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
        gmac_key = None
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
                if off + n > self.arena.capacity or want_mac > AES_GMAC:
                    self.log.note(f"{peer[0]} asked for bytes outside the store or an unknown MAC; closing")
                    return
                if want_mac == AES_GMAC and gmac_key is None:
                    if _gmac_missing():
                        self.log.note(f"{peer[0]} asked for an AES-GMAC reply, which needs the "
                                      "`cryptography` package on this node (pip install cryptography)")
                        return
                    gmac_key = _gmac_key(channel.send_key)
                view = self.arena.view(off, n)
                try:
                    if want_mac == NO_MAC:
                        sock.sendall(view)
                    else:
                        mac = _reply_mac(want_mac, channel.send_key, gmac_key, head[:_REQ.size], seq)
                        for i in range(0, n, CHUNK):     # hashed just before the kernel copies it
                            mac.update(view[i:i + CHUNK])
                            sock.sendall(view[i:i + CHUNK])
                        sock.sendall(mac.digest())
                finally:
                    view.release()
        except OSError:
            return
        finally:
            sock.close()

    def close(self):
        self.door.close()


class _Gmac:
    """AES-256-GMAC (NIST SP 800-38D: GCM over authenticated data only) of a stream of chunks."""

    def __init__(self, key: bytes, nonce: bytes):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        self._enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        self.update = self._enc.authenticate_additional_data

    def digest(self) -> bytes:
        self._enc.finalize()
        return self._enc.tag


_gmac_state: list = []


def _gmac_missing() -> bool:
    """Whether this process cannot make AES-GMACs (no `cryptography`); imported on first use only."""
    if not _gmac_state:
        try:
            import cryptography.hazmat.primitives.ciphers  # noqa: F401
            _gmac_state.append(False)
        except ImportError:
            _gmac_state.append(True)
    return _gmac_state[0]


def _gmac_key(direction_key: bytes) -> bytes:
    """The AES key for one direction of one connection's replies, apart from its frame keys."""
    return hmac.digest(direction_key, b"miniray transfer reply AES-GMAC", hashlib.sha256)


def _reply_mac(mode: int, direction_key: bytes, gmac_key, req: bytes, seq: int):
    """The MAC of one reply, fed the request's 25 bytes first: AES-GMAC with the request's sequence
    number as the nonce (used once per key: a connection's requests never repeat one), or, for a
    reader without `cryptography`, HMAC-SHA256."""
    mac = (_Gmac(gmac_key, struct.pack("<4sQ", b"mrt1", seq)) if mode == AES_GMAC
           else _Hmac(direction_key))
    mac.update(req)
    return mac


class _Hmac:
    """HMAC-SHA256 cut to 16 bytes, with _Gmac's two methods."""

    def __init__(self, key: bytes):
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self.update = self._mac.update

    def digest(self) -> bytes:
        return self._mac.digest()[:_MAC]


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
    return sock, channel, _gmac_key(channel.recv_key)


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
            sock, channel, gmac_key = entry[0]
            mode = NO_MAC if not MAC_REPLIES else HMAC_SHA256 if _gmac_missing() else AES_GMAC
            seq = channel.send_seq
            req = _REQ.pack(off, n, seq, mode)
            sock.sendall(req + hmac.digest(channel.send_key, req, hashlib.sha256)[:_MAC])
            channel.send_seq += 1
            mac = _reply_mac(mode, channel.recv_key, gmac_key, req, seq) if mode else None
            got = 0
            while got < n:
                k = sock.recv_into(into[got:], min(CHUNK, n - got))
                if k == 0:
                    raise ConnectionError(f"the node at {key[0]}:{key[1]} closed the transfer")
                if mac is not None:
                    mac.update(into[got:got + k])       # hashed while the kernel's copy is in cache
                got += k
            if mac is not None and not hmac.compare_digest(mac.digest(), _recv_exact(sock, _MAC) or b""):
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
