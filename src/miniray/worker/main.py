"""A worker process: connect to the node, then run call items until the node goes away.

    node ──exec/cancel/reply──► Inbox.dispatch ──exec──► calls queue ──► main thread: Executor.run
      ▲                            │ reply: resolves the waiting get/alloc                 │
      └────────────── started / done / put / refs / req  ◄─────────────────────────────────┘

Who reads the node's socket (``Inbox``): the main thread, when it has no call to run, reads the
next frame itself (polling for a moment first, framing.SPIN_S), so a call reaches it with no
thread hand-off.  While it runs a call, the reader thread reads instead (replies to the call's
own ``get``, ``cancel``, more calls); it is woken by edge-triggered epoll, once per arrival.  Both
read under one lock into one frame buffer.

Other threads: the main thread runs calls (``main``'s loop), or hands them to the actor's thread
pool or event loop (executor.py); a flusher sends ref drops and "started" notes that would
otherwise wait.  When the node's socket closes the worker exits at once: its parent is gone.  If
the driver itself died (SIGKILL), the worker removes the session's shared memory and directory,
so nothing is left in ``/dev/shm``.
"""
from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import sys
import threading
import time

from miniray import runtime as rt_mod
from miniray.store.arena import Arena
from miniray.transport.framing import SPIN_S, Connection, ConnectionClosed, FrameReader


def _driver_alive(pid: int) -> bool:
    from miniray.session import pid_alive
    return pid_alive(pid)


def _die_with_parent():
    """Linux: get SIGKILL when the process that started us dies, even if the socket stays open."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Inbox:
    """The node's socket, read by whichever of two threads is free (see the module docstring)."""

    def __init__(self, conn, rt, calls, executor, on_close):
        self.conn, self.rt, self.calls, self.executor, self.on_close = conn, rt, calls, executor, on_close
        self.reader = FrameReader(conn.sock, conn.channel)
        self.lock = threading.Lock()

    def next_call(self):
        """Main thread: the next call to run, reading the socket itself while there is none.
        Only this thread takes calls out, so one it saw queued is still there."""
        if self.calls.empty():
            with self.lock:
                spin_until = time.perf_counter() + SPIN_S      # see framing.SPIN_S
                while self.calls.empty() and time.perf_counter() < spin_until:
                    self._read(block=False)
                    os.sched_yield()
                while self.calls.empty():
                    self._read(block=True)
        return self.calls.get_nowait()

    def reader_thread(self):
        """Reads while the main thread runs a call; an arrival while it reads for itself is its own."""
        import select
        ep = select.epoll()
        ep.register(self.conn.sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)
        while True:
            ep.poll()
            with self.lock:        # waits out a read by the main thread, then takes what is left
                self._read(block=False)

    def _read(self, block: bool):
        try:
            frames = self.reader.feed(block=block)
        except ConnectionClosed:
            self.on_close()
            return
        for items in frames:
            self.dispatch(items)

    def dispatch(self, items):
        rt, executor = self.rt, self.executor
        for item in items:
            kind = item[0]
            if kind == "exec":
                if executor.blocked and executor.sequential:
                    executor.hand_back([item])          # don't queue behind a blocked get
                else:
                    self.calls.put(item)
            elif kind == "reply":
                rt.transport.resolve(item[1], item[2], item[3])
            elif kind == "cancel":
                executor.cancel(item[1])
            elif kind == "terminate":                   # the node ends this actor gracefully
                _end_gracefully(executor)


def _end_gracefully(executor):
    """Run the actor's shutdown hooks (executor.end_actor), at most 5 s, then exit."""
    if executor.instance is not None:
        threading.Timer(5.0, os._exit, (0,)).start()
        try:
            executor.end_actor()
        except BaseException:   # a hook that raises or exits: we exit anyway
            pass
    os._exit(0)


def _node_gone(arena_path, session_dir, driver_pid, executor=None):
    """The node's socket closed: our parent is gone.  If the driver died too (SIGKILL), nobody else
    will remove the session's shared memory and directory.  An actor that is still alive (the
    driver called shutdown) ends gracefully first."""
    driver_alive = _driver_alive(driver_pid)
    if driver_alive and executor is not None and executor.instance is not None and not executor.exiting:
        threading.Timer(0.8, os._exit, (0,)).start()   # the node waits 1 s for its workers
        try:
            executor.end_actor()
        except BaseException:
            pass
    if not driver_alive and arena_path != "-":
        try:
            os.unlink(arena_path)
        except FileNotFoundError:
            pass
        shutil.rmtree(session_dir, ignore_errors=True)
    os._exit(0)


# the first worker faults in this much of the arena, off the hot path (MINIRAY_PREFAULT_MIB=0: none)
PREFAULT = int(os.environ.get("MINIRAY_PREFAULT_MIB", "256")) * 2**20


def _prefault(arena):
    """Touch the arena's first pages once, in the background, so early puts run at memcpy speed
    (a fresh /dev/shm page costs ~8x a warm copy on a small VM).  The store allocates first-fit
    from the bottom, so these pages are the ones reused first."""
    length = min(PREFAULT, arena.capacity)
    if length <= 0:
        return
    try:
        arena.mmap.madvise(23, 0, length)   # MADV_POPULATE_WRITE (Linux 5.14+): the kernel does it
    except (OSError, ValueError, AttributeError):
        pass


def _flush_loop(rt, executor, stop):
    while not stop.wait(0.05):
        try:
            executor.flush_started()
            rt.flush()
        except OSError:
            return


def main(argv=None):
    sock_path, wid, arena_path, capacity, session_dir, node_id, driver_pid, inline_max = (argv or sys.argv[1:])[:8]
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C in the terminal is the driver's business
    _die_with_parent()
    if sock_path.startswith("tcp:"):               # a worker of a joined node: the head is remote
        from miniray.transport import auth
        host, port = sock_path[4:].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        channel = auth.connect(sock, os.environ["MINIRAY_TOKEN"].encode())
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        arena = None if arena_path == "-" else Arena.attach(arena_path, int(capacity))
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(sock_path)
        arena, channel = Arena.attach(arena_path, int(capacity)), None
    conn = Connection(sock, channel)
    from miniray.runtime import Runtime, SocketTransport
    from miniray.worker.executor import Executor

    rt = Runtime(SocketTransport(conn), wid, node_id=node_id, job_id="01000000", arena=arena,
                 inline_max=int(inline_max), session_dir=session_dir)
    rt_mod._current = rt
    if sock_path.startswith("tcp:") and arena is not None:     # its node's own store (cluster/nodestore.py)
        from miniray.cluster.nodestore import NodeStoreClient
        rt.local_store = NodeStoreClient(os.environ["MINIRAY_STORE_SOCK"])
    conn.send([("hello", wid, os.getpid(), node_id)])
    calls: queue.SimpleQueue = queue.SimpleQueue()
    executor = Executor(rt, wid, node_id, calls)
    inbox = Inbox(conn, rt, calls, executor,
                  lambda: _node_gone(arena_path, session_dir, int(driver_pid), executor))
    threading.Thread(target=inbox.reader_thread, daemon=True, name="miniray-reader").start()
    threading.Thread(target=_flush_loop, daemon=True, name="miniray-flusher",
                     args=(rt, executor, threading.Event())).start()
    if wid == "w1" or (arena is not None and wid.endswith("-w1")):
        threading.Thread(target=_prefault, args=(arena,), daemon=True, name="miniray-prefault").start()
    # Main loop
    while True:
        item = inbox.next_call()
        executor.run(*item[1:])


if __name__ == "__main__":
    main()
