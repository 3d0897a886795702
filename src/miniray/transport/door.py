"""The TCP door: accepts connections and runs their handshakes, with every resource bounded, for
the head's listener and each node's DataServer.

    listener ──accept──► pending handshakes (one selector, one thread: ``Door.run``)
                           │  each: a socket, auth.ServerHandshake, a deadline
                           ├─ proved the token ──► on_ready(sock, channel, peer)   (blocking socket)
                           └─ failed, too slow, evicted ──► closed, counted, logged at a bounded rate

What an unauthenticated peer can cost, whoever it is:
- a descriptor and a few dozen bytes, for at most ``auth.HANDSHAKE_S`` in all (not per read);
- no thread: one thread serves all pending handshakes, whose messages are fixed-size;
- at most ``MAX_PENDING`` pending handshakes: one more evicts the oldest, so a legitimate peer
  (whose handshake takes one round trip) still gets in while slow ones pile up;
- accept failing (EMFILE when descriptors run out, ENOBUFS, ...) stops the door listening for a
  while, doubling up to ``BACKOFF_MAX`` s, instead of spinning on a listener that stays readable;
- refused connections are counted (``refused``) and logged at most once per ``LOG_EVERY`` s, with
  the count since the last line.
"""
from __future__ import annotations

import collections
import errno
import os
import selectors
import socket
import sys
import threading
import time

from miniray.transport import auth

MAX_PENDING = 64
BACKOFF_MIN, BACKOFF_MAX = 0.05, 1.0
LOG_EVERY = float(os.environ.get("MINIRAY_REFUSED_LOG_S", "10"))


class RateLog:
    """Counts events and writes at most one line per ``every`` seconds, saying how many there were."""

    def __init__(self, prefix: str, every: float = LOG_EVERY, out=None):
        self.prefix, self.every, self.out = prefix, every, out or sys.stderr
        self.count = self.total = 0
        self.last = -float("inf")

    def note(self, what: str) -> None:
        self.count += 1
        self.total += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            more = f" (and {self.count - 1} more in the last {self.every:.0f} s)" if self.count > 1 else ""
            try:
                self.out.write(f"{self.prefix}: {what}{more}\n")
                self.out.flush()
            except (OSError, ValueError):
                pass
            self.last, self.count = now, 0


class _Pending:
    __slots__ = ("sock", "peer", "hs", "deadline")

    def __init__(self, sock, peer, token):
        self.sock, self.peer, self.hs = sock, peer, auth.ServerHandshake(token)
        self.deadline = time.monotonic() + auth.HANDSHAKE_S


class Door:
    """``on_ready(sock, channel, peer)`` is called in the door's thread for each authenticated peer."""

    def __init__(self, listener: socket.socket, token: bytes, on_ready, name: str = "miniray head"):
        self.listener, self.token, self.on_ready = listener, token, on_ready
        self.log = RateLog(f"{name}: refused connections")
        self.errors = RateLog(f"{name}: cannot accept connections")
        listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.pending: collections.OrderedDict = collections.OrderedDict()     # fd -> _Pending
        self.backoff, self.listening_again = 0.0, None
        self.accepted = 0
        self._closed = False
        self.thread = threading.Thread(target=self.run, daemon=True, name=f"{name} door")
        self.thread.start()

    @property
    def refused(self) -> int:
        return self.log.total

    def run(self):
        # Main loop
        while not self._closed:
            timeout = self._next_timeout()
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    self._accept()
                elif key.data == "wake":
                    return
                else:
                    self._advance(key.data)
            self._expire()

    def _next_timeout(self):
        times = [p.deadline for p in self.pending.values()]
        if self.listening_again is not None:
            times.append(self.listening_again)
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _accept(self):
        for _ in range(64):                   # a burst, then the pending handshakes get a turn
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:            # EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: back off
                if self._closed or err.errno in (errno.EBADF, errno.EINVAL):
                    return
                self.backoff = min(BACKOFF_MAX, max(BACKOFF_MIN, self.backoff * 2))
                self.errors.note(f"{err}; not listening for {self.backoff:.2f} s")
                self.selector.unregister(self.listener)
                self.listening_again = time.monotonic() + self.backoff
                return
            self.backoff = 0.0
            self.accepted += 1
            sock.setblocking(False)
            if len(self.pending) >= MAX_PENDING:
                _, oldest = self.pending.popitem(last=False)
                self._refuse(oldest, f"{MAX_PENDING} handshakes in flight; dropped the oldest")
            p = _Pending(sock, peer, self.token)
            self.pending[sock.fileno()] = p
            self.selector.register(sock, selectors.EVENT_READ, p)

    def _advance(self, p: _Pending):
        try:
            data = p.sock.recv(p.hs.want())
            if not data:
                raise auth.AuthenticationError("the peer hung up during authentication")
            reply = p.hs.feed(data)
            if reply:
                p.sock.send(reply)            # 64 bytes into an empty socket buffer: never short
        except (OSError, auth.AuthenticationError) as err:
            if isinstance(err, BlockingIOError):
                return
            self._drop(p)
            self._refuse(p, str(err))
            return
        if p.hs.channel is not None:
            self._drop(p)
            p.sock.setblocking(True)
            try:
                self.on_ready(p.sock, p.hs.channel, p.peer)
            except Exception as err:  # the door must outlive any one peer
                self.errors.note(f"could not take an authenticated connection: {err!r}")
                p.sock.close()

    def _drop(self, p):
        self.pending.pop(p.sock.fileno(), None)
        try:
            self.selector.unregister(p.sock)
        except (KeyError, ValueError):
            pass

    def _refuse(self, p, why):
        try:
            self.selector.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        p.sock.close()
        self.log.note(f"{p.peer[0]}:{p.peer[1]}: {why}")

    def _expire(self):
        now = time.monotonic()
        while self.pending:
            fd, p = next(iter(self.pending.items()))   # oldest first: deadlines are in order
            if p.deadline > now:
                break
            self._drop(p)
            self._refuse(p, f"did not authenticate within {auth.HANDSHAKE_S:.0f} s")
        if self.listening_again is not None and now >= self.listening_again:
            self.listening_again = None
            self.selector.register(self.listener, selectors.EVENT_READ, None)

    def close(self):
        self._closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=2)
        for p in list(self.pending.values()):
            p.sock.close()
        self.pending.clear()
        self.selector.close()
        for s in (self._wake_r, self._wake_w):
            s.close()
        self.listener.close()
