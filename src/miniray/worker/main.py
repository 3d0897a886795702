"""A worker process: connect to the node, then run call items until the node goes away.

    node ──exec/cancel/reply──► Inbox.dispatch ──exec──► calls queue ──► main thread: Executor.run
      ▲                            │ reply: resolves the waiting get/alloc                 │
      └────────────── started / done / put / refs / req  ◄─────────────────────────────────┘

Who reads the node's socket (``Inbox``): the main thread, when it has no call to run, reads the
next frame itself (polling for a moment first, framing.SPIN_S), so a call reaches it with no
thread hand-off.  While it runs a call, the reader thread reads instead (replies to the call's
own ``get``, ``cancel``, more calls); it is woken by edge-triggered epoll, once per arrival.  Both
read under one lock into one frame buffer.

Idle imports (``preload``).  Modules the driver had imported when it started us (numpy, if it had;
``MINIRAY_PRELOAD``, a comma-separated list, overrides, "" for none) are imported by the main
thread once it has waited PRELOAD_IDLE_S with no call and a CPU is free (``_cpu_free``: no more
runnable threads than CPUs, so it never slows a driver busy copying a put; when none is, it waits
twice as long, up to 0.5 s, and looks again).  The first task that unpickles an array then finds
numpy loaded (60 ms of the first call with an array argument otherwise), and a burst of calls
right after start is never held up by it.  Ray's workers also import numpy when idle.

Other threads: the main thread runs calls (``main``'s loop), or hands them to the actor's thread
pool or event loop (executor.py); a flusher sends ref drops and "started" notes that would
otherwise wait, and watches the parent process (``Parent``).  On ("stop",) or when the node's
socket closes the worker exits at once.  If the parent died without a clean stop (any signal),
the worker removes the session's shared memory and directory, so nothing is left in ``/dev/shm``.
"""
from __future__ import annotations

import functools
import importlib
import os
import queue
import select
import shutil
import signal
import socket
import sys
import threading
import time

from miniray import access, refs
from miniray.store.arena import Arena
from miniray.transport.framing import SPIN_S, Connection, ConnectionClosed, FrameReader

PRELOAD_IDLE_S = 0.05       # how long the main thread waits for a call before an idle import
PRELOAD_IDLE_MAX_S = 0.5    # ... at most, after finding every CPU busy
CPUS = len(os.sched_getaffinity(0))


def _cpu_free() -> bool:
    """Are there no more runnable threads on the machine (this one included) than CPUs we may use?"""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return True
    return running <= CPUS


def _dead(pid: int) -> bool:
    """No such process, or a zombie (killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


class Parent:
    """The process that started us (the driver, a head or a node agent) and what to do when it dies.

    Not PR_SET_PDEATHSIG: that signal follows the *thread* that forked us, and the node forks
    workers on whichever thread runs its step (a user's short-lived thread, too).  Instead the
    worker exits when the node's socket closes, and the flusher looks at ``getppid`` every 50 ms,
    which changes the moment the parent process dies (zombie or not), even while some other
    process keeps the socket open.  A parent that died without a clean stop leaves its shared
    memory and session directory to us: we remove them, so nothing stays in /dev/shm."""

    def __init__(self, pid: int, arena_path: str, session_dir: str, remote: bool):
        self.pid, self.arena_path, self.session_dir, self.remote = pid, arena_path, session_dir, remote
        # else we were not started by it (rely on the socket), or it died while we started up
        self.watch = os.getppid() == pid or _dead(pid)
        self.stopping = False                 # the node said ("stop",): a clean shutdown

    def gone(self) -> bool:
        return self.watch and os.getppid() != self.pid

    def check(self) -> None:
        """From the flusher: the parent died, though our socket may still be open."""
        if self.gone():
            self.exit()

    def node_closed(self) -> None:
        """The node's socket closed.  A clean stop: just go.  Else the node died or cut us off; a
        parent on its way out closes its sockets a moment before it stops being our parent, so
        look for a few seconds (a head that dropped a joined node's worker stays: no wait)."""
        if not self.stopping and not self.remote:
            deadline = time.monotonic() + 5.0
            while self.watch and not self.gone() and time.monotonic() < deadline:
                time.sleep(0.02)
        self.exit()

    def exit(self) -> None:
        if not self.stopping and self.gone() and self.arena_path != "-":
            try:
                os.unlink(self.arena_path)
            except FileNotFoundError:
                pass
            shutil.rmtree(self.session_dir, ignore_errors=True)
        os._exit(0)


class Inbox:
    """The node's socket, read by whichever of two threads is free (see the module docstring)."""

    def __init__(self, conn, rt, calls, executor, parent):
        self.conn, self.rt, self.calls, self.executor, self.parent = conn, rt, calls, executor, parent
        self.on_close = parent.node_closed
        self.reader = FrameReader(conn.sock, conn.channel)
        self.lock = threading.Lock()
        self.preload = [m.strip() for m in os.environ.get("MINIRAY_PRELOAD", "").split(",") if m.strip()]
        self.idle_wait = PRELOAD_IDLE_S

    def next_call(self):
        """Main thread: the next call to run, reading the socket itself while there is none.
        Only this thread takes calls out, so one it saw queued is still there."""
        while self.calls.empty():
            with self.lock:
                spin_until = time.perf_counter() + SPIN_S      # see framing.SPIN_S
                while self.calls.empty() and time.perf_counter() < spin_until:
                    self._read(block=False)
                    os.sched_yield()
                idle = self.preload and self.calls.empty() and not self._readable(self.idle_wait)
                if idle and not _cpu_free():
                    self.idle_wait = min(2 * self.idle_wait, PRELOAD_IDLE_MAX_S)
                    continue
                while self.calls.empty() and not idle:
                    self._read(block=True)
            if idle:                # outside the lock: a call arriving now is read and queued
                self._import_one()
        return self.calls.get_nowait()

    def _readable(self, timeout: float) -> bool:
        return bool(select.select([self.conn.sock], [], [], timeout)[0])

    def _import_one(self) -> None:
        try:
            importlib.import_module(self.preload.pop(0))
        except Exception:        # not installed here, or broken: the call that needs it will say
            pass

    def reader_thread(self):
        """Reads while the main thread runs a call; an arrival while it reads for itself is its own."""
        ep = select.epoll()
        ep.register(self.conn.sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)
        try:
            while True:
                ep.poll()
                with self.lock:    # waits out a read by the main thread, then takes what is left
                    self._read(block=False)
        except BaseException:      # a worker that cannot read would hang its calls: die loudly,
            import traceback       # so the node fails or retries them
            traceback.print_exc()
            os._exit(70)

    def _read(self, block: bool):
        try:
            frames = self.reader.feed(block=block)
        except ConnectionClosed:
            self.on_close()
            return
        for items in frames:
            self.dispatch(items)

    def dispatch(self, items):
        transport, executor = self.rt.transport, self.executor
        for item in items:
            kind = item[0]
            if kind == "exec":
                if executor.blocked and executor.sequential:
                    executor.hand_back([item])          # don't queue behind a blocked get
                else:
                    self.calls.put(item)
            elif kind == "reply":
                transport.resolve(item[1], item[2], item[3])
            elif kind == "cancel":
                executor.cancel(item[1])
            elif kind == "terminate":                   # the node ends this actor gracefully
                _end_gracefully(executor)
            elif kind == "unloadable":
                self._unloadable(item)
            elif kind == "stop":                        # shutdown: an actor's hooks run first
                self.parent.stopping = True
                if executor.instance is not None and not executor.exiting:
                    _end_gracefully(executor, limit=0.8)   # the node waits 1 s for its workers
                os._exit(0)

    def _unloadable(self, item):
        """A call that could not be unpickled here (transport/unloadable.py) fails alone."""
        _, why, inner = item
        if inner is None or inner[0] != "exec":
            sys.stderr.write(f"miniray worker: dropped a message from the node: {why}\n")
            return
        from miniray import exceptions as exc
        spec = inner[1]
        for oid, desc in inner[3].items():
            if desc[0] in ("shm", "fetch"):
                self.rt.unpin(oid)
        err = exc.RaySystemError(f"{spec.name} could not start in its worker: {why}")
        self.rt.send([("done", spec.task_id, self.executor._failed(spec, err, time.time()))])


def _end_gracefully(executor, limit=5.0):
    """Run the actor's shutdown hooks (executor.end_actor), at most ``limit`` s, then exit."""
    if executor.instance is not None:
        threading.Timer(limit, os._exit, (0,)).start()
        try:
            executor.end_actor()
        except BaseException:   # a hook that raises or exits: we exit anyway
            pass
    os._exit(0)


def _flush_loop(rt, executor, parent):
    while True:
        time.sleep(0.05)
        parent.check()
        try:
            executor.flush_started()
            rt.flush()
        except OSError:
            return


def main(argv=None):
    sock_path, wid, arena_path, capacity, session_dir, node_id, driver_pid, inline_max = (argv or sys.argv[1:])[:8]
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C in the terminal is the driver's business
    parent = Parent(int(driver_pid), arena_path, session_dir, remote=sock_path.startswith("tcp:"))
    channel = None
    try:
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
            arena = Arena.attach(arena_path, int(capacity))
    except OSError:                 # the node is gone (or going) before we could join it
        if not parent.gone():       # else our stderr, a pipe to it, is closed too
            import traceback
            traceback.print_exc()
        parent.node_closed()
    conn = Connection(sock, channel)
    from miniray.runtime import Runtime, SocketTransport
    from miniray.worker.executor import Executor

    if arena is None:                        # a joined node's worker that maps no arena
        reach = access.NoArena
    elif sock_path.startswith("tcp:"):       # a joined node's worker: its node's own store (nodestore.py)
        from miniray.cluster.nodestore import NodeStoreClient
        reach = functools.partial(access.NodeArena, local_store=NodeStoreClient(os.environ["MINIRAY_STORE_SOCK"]))
    else:
        reach = access.HeadArena
    calls: queue.SimpleQueue = queue.SimpleQueue()
    rt = Runtime(SocketTransport(conn), wid, node_id=node_id, job_id="01000000", arena=arena,
                 inline_max=int(inline_max), session_dir=session_dir, access=reach,
                 worker=functools.partial(Executor, wid=wid, node_id=node_id, calls=calls))
    refs.set_current(rt)
    executor = rt.worker
    conn.send([("hello", wid, os.getpid(), node_id)])
    inbox = Inbox(conn, rt, calls, executor, parent)
    threading.Thread(target=inbox.reader_thread, daemon=True, name="miniray-reader").start()
    threading.Thread(target=_flush_loop, daemon=True, name="miniray-flusher",
                     args=(rt, executor, parent)).start()
    # Main loop
    while True:
        item = inbox.next_call()
        executor.run(*item[1:])


if __name__ == "__main__":
    main()
