"""Cluster authentication: a mutual proof of the token, bound to one TCP connection, and the keys
that authenticate every frame sent on it afterwards (framing.py).

Handshake transcript (every message fixed-size raw bytes, nothing parsed or unpickled):

    client                                              server (the head, or a node's DataServer)
      ──── MAGIC (8) ‖ nonce_c (32) ──────────────────►
      ◄─── nonce_s (32) ‖ proof_s (32) ─────────────────
      the client checks proof_s before it sends anything else; wrong → it hangs up
      ──── proof_c (32) ───────────────────────────────►  wrong → the server hangs up
      from here on: authenticated frames, each direction under its own key

    T       = MAGIC ‖ nonce_c ‖ nonce_s                    (the transcript: names both nonces)
    prk     = HMAC-SHA256(key=T, msg=token)                HKDF-Extract (RFC 5869), T as the salt
    K(label)= HMAC-SHA256(prk, label ‖ 0x01)               HKDF-Expand, one 32-byte block
    proof_s = HMAC-SHA256(K("miniray server proof"), T)
    proof_c = HMAC-SHA256(K("miniray client proof"), T)
    keys    = K("miniray client->server frames"), K("miniray server->client frames")

Why it holds:
- *Mutual and directed.*  Each side proves it knows the token over a transcript holding both fresh
  nonces, under a label naming its side, so a proof can be neither replayed (the other side's nonce
  is new each time) nor reflected (a server proof is no client proof).
- *Bound to the connection.*  Whoever sits in between (a fake server on a squatted port or a wrong
  ``MINIRAY_ADDRESS``) can pass the handshake along, but it never learns the frame keys: they come
  from the token, which never crosses the wire.  All it can do afterwards is forward the two
  parties' own frames unchanged; a frame of its own fails its MAC and the connection is closed
  before anything is unpickled.  So a relay gains nothing a router would not.
- *Why not TLS.*  TLS would add confidentiality, but Python 3.11's ``ssl`` has no pre-shared-key
  mode (so every cluster would need certificates made and handed out), an ``SSLSocket`` cannot be
  read with ``MSG_DONTWAIT`` as the node's select loop does, and it copies every byte through
  OpenSSL's buffers.  MACed frames give authentication and integrity with the stdlib and the
  existing zero-copy paths, which is what the threat model below needs.

What this does not give: confidentiality.  Frames are readable by anyone who can sniff the network
(task arguments, results, object bytes).  See docs/security.md.

The token: ``MINIRAY_TOKEN`` (at least 16 characters, ``check_token``) or the head's session file
``token`` (mode 0600, 32 random hex characters).  A short token could be guessed offline from one
recorded handshake.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import socket
import time

MAGIC = b"MNRAY\x00\x02\x00"       # protocol name and version (2: mutual, bound, MACed frames)
NONCE = 32
PROOF = 32
MIN_TOKEN = 16
HANDSHAKE_S = 5.0                   # the whole handshake, not each read, must fit in this
_SHA = hashlib.sha256

CLIENT_HELLO = len(MAGIC) + NONCE
SERVER_HELLO = NONCE + PROOF


class AuthenticationError(ConnectionError):
    pass


def check_token(token: str | bytes, where: str = "MINIRAY_TOKEN") -> bytes:
    """The token as bytes; a ValueError that says how to make a good one if it is too short."""
    raw = token.encode() if isinstance(token, str) else bytes(token)
    if len(raw) < MIN_TOKEN:
        raise ValueError(
            f"{where} is {len(raw)} characters long; miniray needs at least {MIN_TOKEN}, since a short "
            "token can be guessed offline from one recorded handshake. Make a random one with\n"
            "    export MINIRAY_TOKEN=$(python -c 'import secrets; print(secrets.token_hex(16))')\n"
            "or unset MINIRAY_TOKEN and let `miniray start --head` make one (it prints how to use it).")
    return raw


def _expand(prk: bytes, label: bytes) -> bytes:
    return hmac.digest(prk, label + b"\x01", _SHA)


def derive(token: bytes, nonce_c: bytes, nonce_s: bytes) -> dict:
    """Everything both sides compute from the token and the transcript (see the docstring)."""
    transcript = MAGIC + nonce_c + nonce_s
    prk = hmac.digest(transcript, token, _SHA)
    return {"server_proof": hmac.digest(_expand(prk, b"miniray server proof"), transcript, _SHA),
            "client_proof": hmac.digest(_expand(prk, b"miniray client proof"), transcript, _SHA),
            "c2s": _expand(prk, b"miniray client->server frames"),
            "s2c": _expand(prk, b"miniray server->client frames")}


class Channel:
    """One authenticated connection's keys and sequence numbers (framing.py uses them).  ``send_seq``
    is advanced under the connection's send lock, ``recv_seq`` by its one reader at a time."""
    __slots__ = ("send_key", "recv_key", "send_seq", "recv_seq")

    def __init__(self, send_key: bytes, recv_key: bytes):
        self.send_key, self.recv_key = send_key, recv_key
        self.send_seq = self.recv_seq = 0


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AuthenticationError("the peer was too slow to authenticate")
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise AuthenticationError("the peer closed the connection during authentication")
        buf += chunk
    return buf


class ServerHandshake:
    """The server's side as a state machine fed by whatever bytes arrive, so that one thread can
    hold many handshakes at once (transport/door.py) and a slow peer holds no thread."""

    def __init__(self, token: bytes):
        self.token, self.buf, self.keys, self.channel = token, b"", None, None

    def want(self) -> int:
        return (CLIENT_HELLO if self.keys is None else PROOF) - len(self.buf)

    def feed(self, data: bytes) -> bytes | None:
        """Take bytes of the client's; return bytes to send back, or None.  Raises
        AuthenticationError on a bad greeting or proof; ``channel`` is set once the client proved."""
        self.buf += data
        if self.keys is None and len(self.buf) >= CLIENT_HELLO:
            hello, self.buf = self.buf[:CLIENT_HELLO], self.buf[CLIENT_HELLO:]
            if hello[:len(MAGIC)] != MAGIC:
                raise AuthenticationError("not a miniray client (bad greeting)")
            nonce_s = os.urandom(NONCE)
            self.keys = derive(self.token, hello[len(MAGIC):], nonce_s)
            return nonce_s + self.keys["server_proof"]
        if self.keys is not None and len(self.buf) >= PROOF:
            if len(self.buf) > PROOF:
                raise AuthenticationError("the client sent data before it was let in")
            if not hmac.compare_digest(self.buf, self.keys["client_proof"]):
                raise AuthenticationError("wrong cluster token")
            self.channel = Channel(self.keys["s2c"], self.keys["c2s"])
        return None


def serve(sock: socket.socket, token: bytes, timeout: float = HANDSHAKE_S) -> Channel:
    """Server side on a blocking socket, for one connection (tests, simple servers)."""
    deadline = time.monotonic() + timeout
    hs = ServerHandshake(token)
    try:
        while hs.channel is None:
            reply = hs.feed(_recv_exact(sock, hs.want(), deadline))
            if reply:
                sock.sendall(reply)
    except OSError as err:
        raise AuthenticationError(str(err)) from err
    finally:
        sock.settimeout(None)
    return hs.channel


def connect(sock: socket.socket, token: bytes, timeout: float = 10.0) -> Channel:
    """Client side; checks the server's proof before sending anything else.  Raises
    AuthenticationError with what to do."""
    deadline = time.monotonic() + timeout
    try:
        nonce_c = os.urandom(NONCE)
        sock.sendall(MAGIC + nonce_c)
        reply = _recv_exact(sock, SERVER_HELLO, deadline)
        keys = derive(token, nonce_c, reply[:NONCE])
        if not hmac.compare_digest(reply[NONCE:], keys["server_proof"]):
            raise AuthenticationError(
                "authentication failed: the server could not prove it knows our cluster token. Either "
                "MINIRAY_TOKEN differs from the head's (set it to the token `miniray start --head` "
                "printed, in its session directory's 'token' file), or what answers at this address "
                "is not the miniray head.")
        sock.sendall(keys["client_proof"])
    except AuthenticationError as err:
        if "authentication failed" in str(err):
            raise
        raise AuthenticationError(f"authentication failed: {err}") from err
    except OSError as err:
        raise AuthenticationError(f"authentication failed: {err}") from err
    finally:
        sock.settimeout(None)
    return Channel(keys["c2s"], keys["s2c"])
