"""Cluster authentication: a mutual HMAC challenge on raw bytes, before anything is unpickled.

    client                                   head
      ──── MAGIC ───────────────────────────►      (8 bytes: protocol name and version)
      ◄─── nonce_h (32 random bytes) ────────
      ──── HMAC(token, nonce_h) ‖ nonce_c ──►      checked with hmac.compare_digest
      ◄─── OK ‖ HMAC(token, nonce_c) ────────      or FAIL, then the head closes
                                                    the client checks the head's proof too

Byte layout: every message is fixed-size (8, 32, 64, 2+32 bytes), so a peer sending garbage is
rejected by length or by digest, never parsed.  The token is a shared secret (``MINIRAY_TOKEN`` or
the session's ``token`` file, mode 0600); it never crosses the wire.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import socket

MAGIC = b"MNRAY\x00\x01\x00"
NONCE = 32
DIGEST = hashlib.sha256
OK, FAIL = b"OK", b"NO"


class AuthenticationError(ConnectionError):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise AuthenticationError("the peer closed the connection during authentication")
        buf += chunk
    return buf


def _mac(token: bytes, nonce: bytes) -> bytes:
    return hmac.new(token, nonce, DIGEST).digest()


def serve(sock: socket.socket, token: bytes, timeout: float = 5.0) -> None:
    """Head side; raises AuthenticationError (the caller closes the socket)."""
    sock.settimeout(timeout)
    try:
        if _recv_exact(sock, len(MAGIC)) != MAGIC:
            raise AuthenticationError("not a miniray client (bad greeting)")
        nonce_h = os.urandom(NONCE)
        sock.sendall(nonce_h)
        answer = _recv_exact(sock, 32 + NONCE)
        if not hmac.compare_digest(answer[:32], _mac(token, nonce_h)):
            sock.sendall(FAIL)
            raise AuthenticationError("wrong cluster token")
        sock.sendall(OK + _mac(token, answer[32:]))
    except OSError as err:
        raise AuthenticationError(str(err)) from err
    finally:
        sock.settimeout(None)


def connect(sock: socket.socket, token: bytes, timeout: float = 10.0) -> None:
    """Client side; raises AuthenticationError with what to do."""
    sock.settimeout(timeout)
    try:
        sock.sendall(MAGIC)
        nonce_h = _recv_exact(sock, NONCE)
        nonce_c = os.urandom(NONCE)
        sock.sendall(_mac(token, nonce_h) + nonce_c)
        verdict = _recv_exact(sock, 2)
        if verdict != OK:
            raise AuthenticationError(
                "authentication failed: the cluster refused our token. Set MINIRAY_TOKEN to the token "
                "the head printed at start (or in its session directory's 'token' file).")
        if not hmac.compare_digest(_recv_exact(sock, 32), _mac(token, nonce_c)):
            raise AuthenticationError("authentication failed: the head could not prove it knows the token")
    except (OSError, AuthenticationError) as err:
        if isinstance(err, AuthenticationError):
            raise
        raise AuthenticationError(f"authentication failed: {err}") from err
    finally:
        sock.settimeout(None)
