"""A driver joining a running head over TCP: find the address and token, authenticate, say hello.

    init(address="auto" | "HOST:PORT")
        │ address: the argument, then MINIRAY_ADDRESS, then this user's newest live head on this machine
        │ token:   MINIRAY_TOKEN, then the head's session directory (same machine only)
        ▼
    TCP connect ─► auth.connect (mutual handshake, then MACed frames) ─► ("hello_driver", pid)
        ─► ("welcome", holder, ...)
        ▼
    Runtime(SocketTransport, access=HeadArena | NoArena) + a reader thread (replies) + a flusher
    thread (ref drops); ``close`` stops both

On the head's machine the driver maps the head's arena and reads objects zero-copy; elsewhere it asks
for copies.  If the head goes away, every waiting call fails with RaySystemError saying so.
"""
from __future__ import annotations

import os
import socket
import threading

from miniray import exceptions as exc
from miniray.transport import auth
from miniray.transport.framing import Connection, ConnectionClosed


def resolve_address(address: str | None) -> tuple[str, str | None]:
    """(host:port, session_dir or None) for "auto" or an explicit address."""
    from miniray.session import live_heads
    if address in (None, "auto"):
        env = os.environ.get("MINIRAY_ADDRESS")
        if env:
            return env, None
        heads = live_heads()
        if not heads:
            raise ConnectionError("init(address='auto') found no running miniray head: set MINIRAY_ADDRESS, "
                                  "or start one with `miniray start --head`.")
        return heads[0]["address"], heads[0]["session_dir"]
    for head in live_heads():
        if head["address"] == address:
            return address, head["session_dir"]
    return address, None


def find_token(session_dir: str | None) -> bytes:
    token = os.environ.get("MINIRAY_TOKEN")
    if token:
        try:
            return auth.check_token(token)
        except ValueError as err:
            raise ConnectionError(str(err)) from None
    if session_dir and os.path.exists(os.path.join(session_dir, "token")):
        with open(os.path.join(session_dir, "token"), "rb") as f:
            return f.read().strip()
    raise ConnectionError("No cluster token: set MINIRAY_TOKEN to the token `miniray start --head` printed.")


def connect(address: str | None, namespace: str = "default", job_env=None):
    from miniray import access
    from miniray.runtime import Runtime, SocketTransport
    from miniray.store.arena import Arena

    addr, session_dir = resolve_address(address)
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"init(address={address!r}): give 'HOST:PORT', 'auto' or 'local'.")
    token = find_token(session_dir)
    try:
        sock = socket.create_connection((host, int(port)), timeout=10)
    except OSError as err:
        raise ConnectionError(f"Could not reach a miniray head at {addr}: {err}. Is `miniray start --head` "
                              "running there, and is the port open?") from err
    try:
        channel = auth.connect(sock, token)
    except auth.AuthenticationError:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    from miniray.cluster import transfer
    transfer.set_token(token)           # to pull objects from the nodes that hold them
    conn = Connection(sock, channel)
    conn.send([("hello_driver", os.getpid())])
    _, holder, node_id, arena_path, capacity, inline_max, head_session, node_ip = conn.recv()[0]
    arena = Arena.attach(arena_path, capacity) if os.path.exists(arena_path) else None
    stop = threading.Event()
    rt = Runtime(SocketTransport(conn), holder, node_id=node_id, job_id="01000000", arena=arena,
                 inline_max=inline_max, access=access.HeadArena if arena is not None else access.NoArena,
                 session_dir=head_session, address=addr, node_ip=node_ip, namespace=namespace,
                 job_env=job_env, closer=lambda rt: _close(rt, conn, stop))
    threading.Thread(target=_read_loop, args=(rt, conn, addr), daemon=True, name="miniray-client").start()
    threading.Thread(target=_flush_loop, args=(rt, stop), daemon=True, name="miniray-flusher").start()
    return rt


def _read_loop(rt, conn, addr):
    try:
        while True:
            rt.transport.take_replies(conn.recv())
    except (ConnectionClosed, OSError):
        pass
    rt.lost = f"Lost the connection to the miniray head at {addr}: it stopped or the network failed."
    rt.transport.fail_all(exc.RaySystemError(rt.lost))


def _flush_loop(rt, stop):
    while not stop.wait(0.05):
        try:
            rt.flush()
        except OSError:
            return


def _close(rt, conn, stop):
    stop.set()
    try:
        rt.flush()
    except OSError:
        pass
    conn.close()
    if rt.arena is not None:
        rt.arena.close()
