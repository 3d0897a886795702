"""The node's worker pool: start workers, forward what they print, grow the pool, kill and reap.

Workers are separate processes (``python -m miniray.worker.main``) that connect back to
``node.sock`` and introduce themselves with ("hello", wid, pid[, node_id]).  Every worker is started
from one place, ``spawn_on(node_id)``: here as a child process (``_spawn``), or on a joined node by
asking its agent (("spawn",)), which counts in ``spawning`` until that worker's hello arrives.

    start ──num_workers × spawn_on(here)──►  w1 … wn  ("starting" slots in the scheduler state)
    _grow_pool: a ready call fits a node whose workers are all busy or blocked ──► spawn_on(that node)
    kill_worker: SIGKILL (here) or cut the connection (another node's) ──► its EOF ──► worker_died

State: ``procs`` (wid → Popen, this node's children), ``conns`` (wid → WorkerConn, every worker
connected, here or remote), ``spawning`` (node_id → workers asked of its agent, not yet here) and
``_partial`` (an unfinished line a worker printed).
"""
from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time

from miniray.scheduler import state as S
from miniray.transport.framing import Connection, FrameReader


class WorkerConn:
    """One connection: a worker, a driver over TCP or a joined node's agent."""

    def __init__(self, sock, channel=None):      # channel: a TCP peer's keys (transport/auth.py)
        self.conn, self.reader = Connection(sock, channel), FrameReader(sock, channel)
        self.holder, self.pid, self.outbox, self.fns = None, None, [], set()
        self.unsent = 0            # "exec" items in the outbox (see Node._flush)
        self.is_driver = False
        self.remote = False        # a worker on another node (``home``): it maps that node's arena
        self.home = None
        self.node = None           # an agent: the node id it speaks for

    def deliver(self, items):
        self.outbox.extend(items)

    def deliver_exec(self, item):
        self.outbox.append(item)
        self.unsent += 1


PRELOAD = ("numpy",)    # imported by an idle worker if the driver has them (worker/main.py)


class Pool:
    """Mixed into ``Node``: its worker processes."""

    MAX_EXTRA = 64          # workers a node may start beyond 4 per CPU (blocked in nested gets)

    def _init_pool(self):
        self.procs: dict[str, subprocess.Popen] = {}
        self.conns: dict[str, WorkerConn] = {}
        self.spawning: dict[str, int] = {}           # node_id -> workers asked of its agent, not yet here
        self._partial: dict = {}                     # (pid, stream) -> bytes of an unfinished line

    def spawn_on(self, node_id):
        """Start one more worker on ``node_id``: the one place workers are started."""
        if node_id == self.node_id:
            self._spawn()
        elif node_id in self.nodes.peers:
            self.spawning[node_id] = self.spawning.get(node_id, 0) + 1   # until its hello
            self.nodes.peers[node_id].deliver([("spawn",)])

    def _spawn(self):
        self._seq += 1
        wid = f"w{self._seq}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("MINIRAY_PRELOAD", ",".join(m for m in PRELOAD if m in sys.modules))
        if self.nodes.token:                 # to pull objects from other nodes (cluster/transfer.py)
            env["MINIRAY_TOKEN"] = self.nodes.token.decode()
        cmd = [sys.executable, "-m", "miniray.worker.main", self.sock_path, wid, self.store.arena.path,
               str(self.store.arena.capacity), self.session_dir, self.node_id, str(os.getpid()),
               str(self.inline_max)]
        proc = subprocess.Popen(cmd, env=env, cwd=os.getcwd(), start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs[wid] = proc
        for pipe, sink in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            os.set_blocking(pipe.fileno(), False)
            self.selector.register(pipe, selectors.EVENT_READ,
                                   lambda f, w=wid, p=proc.pid, k=sink: self._forward(f, w, p, k))
        self.state.workers[wid] = S.Slot(node=self.node_id)
        return wid

    def _grow_pool(self):
        """A ready call fits a node whose workers are all busy or blocked: start one more there."""
        st = self.state
        first = S.first_queued(st)
        if first is None:
            return
        spec = st.specs.get(first)
        if spec is None:
            return
        need = S.placement_need(spec)
        for node_id, res in st.nodes.items():
            if not S.fits(res["available"], need):
                continue
            slots = [s for s in st.workers.values() if s.node == node_id]
            if any(s.state in ("idle", "starting") and S.usable(s, need) for s in slots) \
                    or self.spawning.get(node_id):
                return
            if sum(s.state != "actor" for s in slots) >= 4 * int(res["total"].get("CPU", 1)) + self.MAX_EXTRA:
                continue
            self.spawn_on(node_id)
            return

    def _worker_hello(self, wc, wid, pid, node_id=None):
        """("hello", wid, pid[, node_id]): a worker connected, here or on a joined node."""
        wc.holder, wc.pid = wid, pid
        if node_id is not None and node_id != self.node_id:      # a worker of a joined node
            wc.remote, wc.home = True, node_id
            self.state.workers[wid] = S.Slot(node=node_id)
            if self.spawning.get(node_id):
                self.spawning[node_id] -= 1
        self.conns[wid] = wc
        self.clients[wid] = wc
        slot = self.state.workers.get(wid)
        if slot is not None and slot.state == "starting":
            slot.state = "idle"

    def _forward(self, pipe, wid, pid, sink):
        """Print what a worker printed, in the driver (so it shows in a notebook), as Ray does:
        each line prefixed with the task or actor that printed it."""
        try:
            data = os.read(pipe.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(pipe)
            pipe.close()
            return
        buf = self._partial.get((pid, sink), b"") + data
        *lines, rest = buf.split(b"\n")
        self._partial[(pid, sink)] = rest
        if not lines:
            return
        slot = self.state.workers.get(wid)
        spec = self.state.specs.get(slot.queue[0]) if slot and slot.queue else None
        who = spec.name if spec else (self.actors.actors[slot.actor_id].class_name
                                      if slot and slot.actor_id in self.actors.actors else "worker")
        out = sys.stdout if sink == "stdout" else sys.stderr
        try:
            out.write("".join(f"({who} pid={pid}) {line.decode(errors='replace')}\n" for line in lines))
            out.flush()
        except (OSError, ValueError):
            pass

    def kill_worker(self, wid):
        """SIGKILL a worker here; a worker on another node is cut off, and exits at once.  Either
        way its connection's EOF brings ``worker_died``."""
        proc = self.procs.get(wid)
        if proc is not None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        elif wid in self.conns:
            try:
                self.conns[wid].conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _reap(self, wid):
        """A worker's connection closed: forget it, and collect its process."""
        self.conns.pop(wid, None)
        self.clients.pop(wid, None)
        proc = self.procs.pop(wid, None)
        if proc is not None:
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _stop_workers(self):
        """A clean stop: each worker is told to exit (leaving the arena be), then collected."""
        for wc in self.conns.values():
            try:
                wc.conn.send([("stop",)])
            except OSError:
                pass
        for wc in list(self.conns.values()) + list(self.drivers.values()):
            wc.conn.close()
        self.nodes.close()
        deadline = time.monotonic() + 1.0
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                try:
                    pipe.close()
                except OSError:
                    pass
