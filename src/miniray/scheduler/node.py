"""The node: one thread that owns the scheduler state, the object store and the worker processes.

    driver thread ──inbox+wakeup──┐                        ┌──► worker w1 (process)
                                  ▼                        │
    worker sockets ──frames──► Node.run()  ── exec items ──┼──► worker w2
                                  │  ▲                     │
                                  ▼  └─── done/started ────┘
                        ObjectStore (shm arena)   EventLog

Who runs where: one *step* of the loop (read what arrived, handle it, schedule, send) changes
``state`` (scheduler/state.py), the actor table (scheduler/actors.py), the node table
(scheduler/nodes.py) and the waiters, and a step runs only under ``baton``; the store is shared with
the driver thread under its lock.  Usually the node thread runs the steps.  In local mode the driver
thread runs them itself when it can, so a call needs no thread hand-off (Ray's direct calls, within
one process):

  - ``offer``: ``.remote()`` takes the baton if it is free and runs a step there and then, so the
    call goes straight from the driver thread to its worker's socket.  A call for a worker that is
    still busy with earlier calls waits in its outbox for the next step, so a burst of submissions
    goes out in batches.
  - ``drive``: a driver blocked in ``get`` selects on the node's sockets itself until its objects
    are ready; the node thread parks meanwhile, and the worker's reply wakes the driver directly.
    It polls for a moment before it sleeps (framing.SPIN_S), as a worker does between calls.

A KeyboardInterrupt never lands inside a step run by the driver (``_hold_interrupts``).

Workers are separate processes that connect to ``node.sock`` in the session directory.  As a cluster's head (``miniray start --head``), the same Node also takes
TCP connections from drivers, joined nodes and their workers (``NodeTable.listen``); a worker of
another node is a client like any other, whose objects live in its own node's arena.

A client is anything that sends client items (transport/messages.py): the driver (in-process, through
``inbox``), a worker (through its socket) or a driver joined over TCP.  Each is known by a *holder*
name ("driver", "w3", "d1") that the store uses to count its refs and pins.
"""
from __future__ import annotations

import _signal
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import deque

from miniray import exceptions as exc
from miniray.events import schema
from miniray.scheduler import state as S
from miniray.scheduler.actors import ActorTable
from miniray.scheduler.nodes import NodeTable
from miniray.store.objects import block_of
from miniray.store.serialization import Serialized, desc_size, error_desc
from miniray.transport.framing import SPIN_S, Connection, ConnectionClosed, FrameError, FrameReader
from miniray.transport.messages import Result


# the rows of the events every call makes (events.py), written without keyword arguments
_SUBMITTED = schema("task_id", "name", "type", "actor_id", "deps", "returns", "call_site", "resources")
_STARTED = schema("task_id", "worker_id", "pid", "node_id", "actor_id")
_FINISHED = schema("task_id", "state", "error", "worker_id", "pid")

PARK_S = 0.002          # the parked node thread looks this often whether the driver still drives,
LONG_DRIVE_S = 0.02     # for this long; after it, it sleeps until the drive's end wakes it
_MAIN_IDENT = threading.main_thread().ident


class Waiter:
    """A ``get`` or ``wait`` request not yet answered: ``missing`` shrinks as objects arrive."""
    __slots__ = ("client", "rid", "kind", "oids", "k", "deadline", "missing", "answered", "inline")

    def __init__(self, client, rid, kind, oids, k, deadline):
        self.client, self.rid, self.kind, self.oids, self.k = client, rid, kind, oids, k
        self.deadline, self.missing, self.answered = deadline, set(), False

    def satisfied(self) -> bool:
        return len(set(self.oids)) - len(self.missing) >= self.k if self.kind == "wait" else not self.missing


class WorkerConn:
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


class LocalClient:
    """The driver, living in this process: replies resolve its futures directly."""
    holder = "driver"

    def __init__(self, runtime):
        self.runtime = runtime

    def deliver(self, items):
        for item in items:
            if item[0] == "reply":
                self.runtime.transport.resolve(item[1], item[2], item[3])


class Node:
    def __init__(self, *, session_dir, node_id, total, store, events, num_workers, inline_max,
                 node_ip="127.0.0.1"):
        self.session_dir, self.node_id, self.store, self.events = session_dir, node_id, store, events
        self.node_ip = node_ip
        self.emit, self.add_event = events.emit, events.append    # append: ``trim`` keeps the cap
        self.state = S.new_state(total, node_id)
        self.actors = ActorTable(self)
        self.nodes = NodeTable(self)                 # joined nodes, heartbeats, lineage (cluster mode)
        self.num_workers, self.inline_max = max(1, num_workers), inline_max
        self.functions: dict[str, bytes] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.conns: dict[str, WorkerConn] = {}
        self.clients: dict[str, object] = {}
        self.drivers: dict[str, WorkerConn] = {}     # drivers (and node agents) connected over TCP
        self.spawning: dict[str, int] = {}           # node_id -> workers asked of its agent, not yet here
        self.inbox: deque = deque()
        self.waiters: dict[str, list] = {}        # oid -> [Waiter] of gets and waits not yet answered
        self.timed: list = []
        self.allocs: dict[str, set] = {}           # holder -> arena offsets handed out, not yet sealed
        self.cancelled: set = set()
        self.warned: set = set()
        self._feasible: dict = {}                  # resource shape -> can some node ever run it
        self.submitted_at: dict[str, float] = {}
        self._partial: dict = {}                   # (pid, stream) -> bytes of an unfinished line
        self._self_client = type("NodeItself", (), {"holder": "node", "deliver": lambda self, items: None})()
        self._seq = 0
        self._stopping = False
        self.wake_pending = False
        self.sock_path = os.path.join(session_dir, "node.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        self.listener.listen(256)
        self.listener.setblocking(False)       # the node thread and a driving driver both select
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self.baton = threading.RLock()         # held for each step, by whichever thread runs it
        self._stepping, self._stepper = False, None
        self.driving = False                   # the driver thread runs the loop (``drive``)
        self._drive_start = 0.0
        self._driver_ident = None
        self._drive_lock = threading.Lock()
        self._park = threading.Condition(threading.Lock())
        self._poke_r, self._poke_w = socket.socketpair()    # wakes a driving driver (``_poke``)
        self._poke_r.setblocking(False)
        self._poke_w.setblocking(False)
        self.selector.register(self._poke_r, selectors.EVENT_READ, self._drain_wake)
        self._sigint = None                    # (signal, frame) of a Ctrl-C held during a step
        self._sigint_prev, self._holding = None, False
        self._guard = self._sigint_guard       # one bound method, so ``is`` can recognise it
        self.thread = threading.Thread(target=self.run, name="miniray-node", daemon=True)
        self.pull_refs = None   # set by the driver runtime: flushes its pending ref deltas

    def start(self):
        for _ in range(self.num_workers):
            self._spawn()
        self.thread.start()

    def wake(self):
        if self.wake_pending:
            return
        self.wake_pending = True
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    # Main loop ---------------------------------------------------------------------------------
    def run(self):
        while not self._stopping:
            events = self.selector.select(self._next_deadline())
            if self.driving:            # the driver runs the steps while it waits; it saw these too
                with self._park:        # looked at every PARK_S, not woken when a short drive
                    while self.driving and not self._stopping:     # ends: a driver making round
                        long = time.monotonic() - self._drive_start > LONG_DRIVE_S   # trips would
                        self._park.wait(None if long else PARK_S)  # hand it the GIL each time
                continue
            with self.baton:
                self._step(events)

    def _step(self, events=(), inline=False):
        """One turn of the loop, under the baton.  ``events`` come from a select made without it,
        so another thread may have served them since: a key no longer registered is skipped, and
        every read is non-blocking."""
        self._stepping, self._stepper = True, threading.get_ident()
        try:
            if events:
                live = self.selector.get_map()
                for key, _ in events:
                    if live.get(key.fd) is key:
                        self._guarded(key.data, key.fileobj)
            if self.pull_refs:
                self._guarded(self.pull_refs)
            if self.inbox:               # the stages below cost a call each: skip those with nothing to do
                self._guarded(self._drain_inbox)
            if self.timed:
                self._guarded(self._expire_waiters)
            if self.nodes.peers:
                self._guarded(self.nodes.check_heartbeats)
            self._guarded(self._schedule)
            self._guarded(self._flush, inline)
            self.events.trim()
        finally:
            self._stepping, self._stepper = False, None

    def offer(self, client, items):
        """Items from the driver (any of its threads): handled at once on the caller's thread when
        the baton is free, else by the node thread, woken for them."""
        self.inbox.append((client, items))
        if self._stopping or not self.baton.acquire(blocking=False):
            self.wake()
            return
        try:
            if not self._stepping:       # not re-entered from a step (which drains the inbox itself)
                self._step_holding_interrupts((), inline=True)
        finally:
            self.baton.release()

    def drive(self, event, deadline, spin=True) -> bool | None:
        """Run the loop on this thread until ``event`` is set (True) or ``deadline`` passes (False).
        None: another thread is driving already, so wait on the event instead."""
        me = threading.get_ident()
        if me in (self.thread.ident, self._stepper) or not self._drive_lock.acquire(blocking=False):
            return None            # the node thread, a step (a __del__ run by GC inside one) or a second driver
        self._driver_ident, event.poke = me, self._poke
        self._drive_start = time.monotonic()
        self.driving = True
        try:
            while not event.is_set():
                if self._stopping or not self.thread.is_alive():
                    raise exc.RaySystemError(exc.NODE_STOPPED)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                limits = [1.0, self._next_deadline(), None if deadline is None else deadline - now]
                # the node thread may select on the same epoll too: level-triggered, an event that
                # wakes it wakes us as well, and it parks without touching it
                events = self.selector.select(0)
                spin_until = time.perf_counter() + (SPIN_S if spin else 0.0)   # poll, then sleep
                while not events and time.perf_counter() < spin_until:
                    os.sched_yield()
                    events = self.selector.select(0)
                if not events:
                    events = self.selector.select(min(t for t in limits if t is not None))
                if event.is_set():
                    break
                with self.baton:
                    self._step_holding_interrupts(events)
            return True
        finally:
            event.poke = self._driver_ident = None
            if time.monotonic() - self._drive_start > LONG_DRIVE_S:   # ``run`` waits to be told
                with self._park:
                    self.driving = False
                    self._park.notify_all()
            else:
                self.driving = False    # the node thread sees it within PARK_S (see ``run``)
            self._drive_lock.release()

    def _poke(self):
        """An object the driving thread waits for became ready in another thread's step."""
        if threading.get_ident() != self._driver_ident:
            try:
                self._poke_w.send(b"\0")
            except OSError:
                pass

    def _step_holding_interrupts(self, events, inline=False):
        """A step on the driver's thread, with a Ctrl-C held to its end (``_hold_interrupts``)."""
        held = self._hold_interrupts()
        try:
            self._step(events, inline)
        finally:
            if held:
                self._release_interrupts()

    def _hold_interrupts(self) -> bool:
        """Hold a Ctrl-C that arrives during a step on the main thread, and raise it after
        (``_release_interrupts``, when this returned True): a step cut in half would leave the
        scheduler's state half changed.  ``_sigint_guard`` is installed in front of the user's
        handler once (again if someone replaced it, as IPython does per cell); outside steps it
        passes Ctrl-C straight on.  Plain methods, not a context manager: this runs per call."""
        if threading.get_ident() != _MAIN_IDENT:
            return False
        current = _signal.getsignal(signal.SIGINT)      # the C call: no enum conversion per step
        if current is not self._guard:
            if not callable(current):
                return False
            self._sigint_prev = current
            _signal.signal(signal.SIGINT, self._guard)
        self._holding = True
        return True

    def _release_interrupts(self) -> None:
        self._holding = False
        held, self._sigint = self._sigint, None
        if held is not None:
            self._sigint_prev(*held)

    def _sigint_guard(self, sig, frame):
        if self._holding:
            self._sigint = (sig, frame)
        else:
            self._sigint_prev(sig, frame)

    def _guarded(self, step, *args):
        """One step of the loop; a bug in it is reported, and the node keeps serving."""
        try:
            step(*args)
        except Exception:  # the node must outlive any single bad message or step
            self._report_internal_error()

    @staticmethod
    def _report_internal_error():
        import traceback
        sys.stderr.write("miniray node: internal error (the runtime keeps running):\n"
                         + traceback.format_exc())

    def _accept(self, listener):
        try:
            sock, _ = listener.accept()
        except BlockingIOError:          # the other thread took it
            return
        sock.setblocking(True)
        conn = WorkerConn(sock)
        self.selector.register(sock, selectors.EVENT_READ, lambda s, c=conn: self._read_worker(c))

    def _drain_wake(self, sock):
        try:
            sock.recv(65536)
        except BlockingIOError:
            pass

    def _drain_inbox(self):
        self.wake_pending = False
        while self.inbox:
            client, items = self.inbox.popleft()
            if client is None:      # an authenticated TCP connection to adopt
                conn = WorkerConn(*items[0][1:])
                self.selector.register(conn.conn.sock, selectors.EVENT_READ,
                                       lambda s, c=conn: self._read_worker(c))
                continue
            self.handle_all(client, items)

    def handle_all(self, client, items):
        """Handle a batch of items; a bug in one is reported, and the rest are still handled."""
        start = 0
        while start < len(items):
            try:
                for start in range(start, len(items)):
                    self._handle(client, items[start])
                return
            except Exception:  # the node must outlive any single bad message
                self._report_internal_error()
                start += 1

    def _read_worker(self, wc: WorkerConn):
        try:
            frames = wc.reader.feed()
        except ConnectionClosed as err:
            if isinstance(err, FrameError):     # one per connection, and only after the handshake
                sys.stderr.write(f"miniray node: {err} (peer {wc.holder or 'not yet introduced'})\n")
            self._worker_died(wc)
            return
        for items in frames:
            if wc.holder is not None:          # past the hello: the hot path
                self.handle_all(wc, items)
                continue
            for item in items:
                if item[0] == "hello_driver":
                    self._driver_hello(wc, item[1])
                    continue
                if item[0] == "hello_node":
                    self.nodes.hello(wc, *item[1:])
                    continue
                if item[0] != "hello":
                    self._guarded(self._handle, wc, item)
                    continue
                if item[0] == "hello":
                    wc.holder, wc.pid = item[1], item[2]
                    if len(item) > 3 and item[3] != self.node_id:      # a worker of a joined node
                        wc.remote, wc.home = True, item[3]
                        self.state.workers[wc.holder] = S.Slot(node=item[3])
                        if self.spawning.get(item[3]):
                            self.spawning[item[3]] -= 1
                    self.conns[wc.holder] = wc
                    self.clients[wc.holder] = wc
                    slot = self.state.workers.get(wc.holder)
                    if slot is not None and slot.state == "starting":
                        slot.state = "idle"

    def _owns_block(self, holder, off, n) -> bool:
        used = self.store.arena._used
        return any(b <= off and off + n <= b + used.get(b, 0) for b in self.allocs.get(holder, ()))

    def _driver_hello(self, wc, pid):
        self._seq += 1
        wc.holder, wc.pid, wc.is_driver = f"d{self._seq}", pid, True
        self.drivers[wc.holder] = wc
        self.clients[wc.holder] = wc
        wc.deliver([("welcome", wc.holder, self.node_id, self.store.arena.path, self.store.arena.capacity,
                     self.inline_max, self.session_dir, self.node_ip)])

    def _driver_gone(self, wc):
        """A driver disconnected: its refs, pins and unsealed blocks go, and so do the actors it
        owned (not detached)."""
        self.drivers.pop(wc.holder, None)
        self.clients.pop(wc.holder, None)
        for off in self.allocs.pop(wc.holder, ()):
            self.store.arena.free(off)
        self.store.drop_holder(wc.holder)
        self._drop_waiters_of(wc)
        self.actors.owner_gone(wc.holder)

    def _flush(self, inline=False):
        """Send every outbox.  In a step run by ``offer``, an outbox of calls only, for a worker
        that still has earlier calls in hand, waits: that worker's next report brings a step that
        sends it, batched with the calls submitted meanwhile."""
        if self.nodes.frees:
            self.nodes.flush_frees()
        for wc in [*self.drivers.values(), *self.conns.values()]:
            if wc.outbox:
                if inline and wc.unsent == len(wc.outbox) and self._in_hand(wc) > wc.unsent:
                    continue
                items, wc.outbox, wc.unsent = wc.outbox, [], 0
                try:
                    wc.conn.send(items)
                except OSError:
                    pass  # its death arrives as EOF on the read side

    def _in_hand(self, wc) -> int:
        """Calls placed on this worker and not reported done (sent or still in its outbox)."""
        slot = self.state.workers.get(wc.holder)
        if slot is None:
            return 0
        if slot.actor_id is not None:
            actor = self.actors.actors.get(slot.actor_id)
            return len(actor.inflight) if actor is not None else 0
        return len(slot.queue)

    # Client items ------------------------------------------------------------------------------
    def _handle(self, client, item):
        kind = item[0]
        if kind == "done":                 # the most frequent kinds first
            if len(item) > 3:              # it started and ended within one batch from the worker
                self._started(client, item[1], item[2].start)
            self._done(client, item[1], item[2])
        elif kind == "submit":
            self._submit(item[1], item[2])
        elif kind == "refs":
            self.store.add_refs(item[1], client.holder)
        elif kind == "started":
            self._started(client, item[1], item[2])
        elif kind == "fn":
            self.functions[item[1]] = item[2]
        elif kind == "unpin":
            for oid in item[1]:
                self.store.pin(oid, client.holder, -1)
        elif kind == "put":
            _, oid, desc, contained, call_site = item
            if desc[0] == "shm":
                self.allocs.get(client.holder, set()).discard(block_of(desc))
            elif desc[0] == "inline" and desc_size(desc) > self.inline_max:
                ser = Serialized(desc[1], [memoryview(b).cast("B") for b in desc[2]], list(contained))
                self.store.put_serialized(oid, ser, self.inline_max, call_site=call_site, pid=client.pid or 0)
                return
            node, desc = self._where(client, desc)
            self.store.seal(oid, desc, contained, call_site=call_site, pid=getattr(client, "pid", 0) or 0,
                            node=node)
        elif kind == "copy":                  # a reader pulled an object into its node's arena
            _, oid, desc = item
            if desc[0] == "shm":
                self.allocs.get(client.holder, set()).discard(block_of(desc))
            node, desc = self._where(client, desc)
            self.store.add_copy(oid, node, desc)
        elif kind == "heartbeat":
            self.nodes.heartbeat(client, item)
        elif kind == "write":                 # a piece of an object streamed from another node
            _, off, data = item
            if not self._owns_block(client.holder, off, len(data)):
                raise ValueError(f"{client.holder} wrote outside the blocks it was given")
            self.store.arena.view(off, len(data))[:] = data
        elif kind == "pin":
            self.store.pin(item[1], client.holder, +1)
        elif kind == "free_block":
            self.allocs.get(client.holder, set()).discard(item[1])
            self.store.arena.free(item[1])
        elif kind == "handles_gone":
            self.actors.handles_gone(item[1])
        elif kind == "requeue":
            S.hand_back(self.state, client.holder, item[1])
        elif kind == "unloadable":
            self._unloadable(client, item[1], item[2])
        elif kind == "req":
            _, rid, what, args = item
            try:
                handler = getattr(self, "_req_" + what)
                handler(client, rid, *args)
            except Exception as err:  # a bad request fails that request, never the node
                client.deliver([("reply", rid, False, err)])

    def _unloadable(self, client, why, inner):
        """An item this process could not unpickle (transport/unloadable.py): a call fails alone,
        a request gets the error as its answer."""
        err = exc.RaySystemError(why)
        if inner is not None and inner[0] == "submit":
            err = exc.RaySystemError(f"{inner[1].name} could not be scheduled: {why}")
            for oid in inner[1].returns:
                self.store.seal(oid, error_desc(err), failed=True)
        elif inner is not None and inner[0] == "req":
            client.deliver([("reply", inner[1], False, err)])
        else:
            sys.stderr.write(f"miniray node: dropped a message from {client.holder}: {why}\n")

    def _submit(self, spec, ts):
        self.submitted_at[spec.task_id] = ts
        if spec.deps or spec.nested:
            self.store.use(spec.deps + spec.nested, +1)
        self.add_event((_SUBMITTED, "submitted", ts, spec.task_id, spec.name, spec.type, spec.actor_id,
                        spec.deps + spec.nested, spec.returns, spec.call_site, tuple(spec.resources.items())))
        if spec.type == "actor_method":
            self.actors.enqueue(spec)
            return
        need = S.placement_need(spec)
        shape = tuple(need.items())
        ok = self._feasible.get(shape)
        if ok is None:       # cached until a node joins or leaves
            ok = self._feasible[shape] = S.feasible(self.state, need)
        if not ok:
            key = (spec.name, tuple(sorted(need.items())))
            if key not in self.warned:
                self.warned.add(key)
                exc.warn_infeasible(spec.name, need, self.state.total, spec.call_site)
        unready = {o for o in spec.deps if not self.store.ready(o)} if spec.deps else set()
        S.submit(self.state, spec, unready)

    def placement_changed(self):
        """A node joined or left: what can run somewhere may have changed."""
        self._feasible.clear()

    def _handles_gone(self, actor_id):
        """Called under the store lock, maybe from the driver thread: let the node thread act."""
        self.inbox.append((self._self_client, [("handles_gone", actor_id)]))
        self.wake()

    def _object_ready(self, oid):
        if oid in self.state.dependents:
            S.object_ready(self.state, oid)
        if oid in self.actors.blocked:
            self.actors.object_ready(oid)
        if oid in self.waiters:
            for w in self.waiters.pop(oid):
                self._object_arrived(w, oid)

    # Scheduling --------------------------------------------------------------------------------
    def _schedule(self):
        # a call that fails without running (a failed dependency) frees its worker and may make
        # more calls ready at once: assign again until nothing more can be placed
        placed = S.assign(self.state)
        while placed:
            for tid, wid in placed:
                try:
                    self._send_exec(tid, wid)
                except Exception as err:   # e.g. a spilled argument that cannot be restored
                    self._exec_failed(tid, wid, err)
            placed = S.assign(self.state)
        self._grow_pool()

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
            if sum(s.state != "actor" for s in slots) >= 4 * int(res["total"].get("CPU", 1)) + 64:
                continue
            if node_id == self.node_id:
                self._spawn()
            elif node_id in self.nodes.peers:
                self.spawning[node_id] = self.spawning.get(node_id, 0) + 1   # until its hello
                self.nodes.peers[node_id].deliver([("spawn",)])
            return

    def _exec_failed(self, tid, wid, err):
        """A placed call could not be sent: it fails, and its worker is free again."""
        spec = self.state.specs.get(tid)
        S.task_done(self.state, tid)
        if spec is not None:
            self.fail(spec, err if isinstance(err, exc.RayError) else exc.RaySystemError(
                f"miniray could not start {spec.name}: {type(err).__name__}: {err}"), worker=wid)

    def _send_exec(self, tid, wid):
        spec = self.state.specs[tid]
        failed = spec.deps and [o for o in spec.deps if self.store.entries.get(o) and self.store.entries[o].state == "FAILED"]
        if failed:
            desc = self.store.entries[failed[0]].desc
            S.task_done(self.state, tid)
            self._finish(spec, Result([(r, desc, ()) for r in spec.returns], time.time(), time.time(),
                                      error="dependency failed"), worker=wid)
            return
        wc = self.conns[wid]
        descs = self.descs_for(wc, spec.deps) if spec.deps else {}
        blob = None
        if spec.fn_id not in wc.fns and spec.type != "actor_method":
            blob = self.functions[spec.fn_id]
            wc.fns.add(spec.fn_id)
        wc.deliver_exec(("exec", spec, blob, descs, self.state.workers[wid].gpus))

    def descs_for(self, wc, oids) -> dict:
        """Argument descriptors for a worker, pinned for it: the copy on its own node, or
        ("fetch", ...) for it to pull one there (cluster/transfer.py)."""
        node = wc.home if wc.remote else self.node_id
        return self.store.read_for(set(oids), wc.holder, node) if oids else {}

    def _where(self, client, desc) -> tuple:
        """(node, desc) of an object a client reports: ("rshm", ...) is in its own node's arena."""
        if desc[0] == "rshm":
            return getattr(client, "home", None) or "?", ("shm",) + desc[1:]
        return self.node_id, desc

    def _spawn(self):
        self._seq += 1
        wid = f"w{self._seq}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        env["PYTHONUNBUFFERED"] = "1"
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

    # Worker reports ----------------------------------------------------------------------------
    def _started(self, wc, tid, ts):
        spec = self.state.specs.get(tid) or self.actors.inflight_spec(tid)
        self.add_event((_STARTED, "started", ts, tid, wc.holder, wc.pid, self.node_id,
                        spec.actor_id if spec else None))

    def _done(self, wc, tid, result: Result):
        for _, desc, _ in result.values:
            if desc[0] == "shm":
                self.allocs.get(wc.holder, set()).discard(desc[1])
        if tid in self.actors.calls:
            self.actors.done(tid, result, wc)
            return
        spec = self.state.specs.get(tid)
        if spec is None:
            return
        if spec.type == "actor_creation":
            S.task_done(self.state, tid, result.end - result.start)
            self.actors.created(spec, result, wc)
            self._finish(spec, result, worker=wc.holder, seal=False)
            return
        if result.error and result.retryable and spec.attempt < spec.max_retries and not result.cancelled:
            spec.attempt += 1
            self._free_values(result, wc.holder)
            S.task_done(self.state, tid)
            S.submit(self.state, spec, {o for o in spec.deps if not self.store.ready(o)})
            return
        S.task_done(self.state, tid, result.end - result.start)
        self._finish(spec, result, worker=wc.holder)

    def _free_values(self, result, worker):
        for _, desc, _ in result.values:
            if desc[0] in ("shm", "rshm"):
                self.store._release(*self._where(self.conns.get(worker), desc))

    def _finish(self, spec, result: Result, worker="", seal=True):
        """A call is over for good: seal its values, release its arguments, log it."""
        if seal:
            elsewhere = False
            for oid, desc, contained in result.values:
                if desc[0] == "inline" and (desc[2] or len(desc[1]) > self.inline_max) \
                        and desc_size(desc) > self.inline_max:                  # from another node
                    ser = Serialized(desc[1], [memoryview(b).cast("B") for b in desc[2]], list(contained))
                    self.store.put_serialized(oid, ser, self.inline_max, call_site=spec.call_site,
                                              task_id=spec.task_id)
                    continue
                node = self.node_id
                if desc[0] == "rshm":
                    node, desc = self._where(self.conns.get(worker), desc)
                    elsewhere |= node != self.node_id
                self.store.seal(oid, desc, contained, call_site=spec.call_site, task_id=spec.task_id,
                                failed=desc[0] == "error", node=node)
            if elsewhere and spec.type == "task":
                self.nodes.keep_lineage(spec)
        if spec.deps or spec.nested:
            self.store.use(spec.deps + spec.nested, -1)
        self.cancelled.discard(spec.task_id)
        self.submitted_at.pop(spec.task_id, None)
        state = "CANCELLED" if result.cancelled else ("FAILED" if result.error else "FINISHED")
        self.add_event((_FINISHED, "finished", result.end, spec.task_id, state, result.error, worker,
                        getattr(self.conns.get(worker), "pid", None)))

    def fail(self, spec, err: BaseException, worker=""):
        now = time.time()
        self._finish(spec, Result([(r, error_desc(err), ()) for r in spec.returns], now, now,
                                  error=type(err).__name__, cancelled=isinstance(err, exc.TaskCancelledError)),
                     worker=worker)

    def _worker_died(self, wc: WorkerConn):
        try:
            self.selector.unregister(wc.conn.sock)
        except (KeyError, ValueError):
            pass
        wc.conn.close()
        wid = wc.holder
        if wid is None:
            return
        if wc.node is not None:
            self.nodes.gone(wc)
            return
        if wc.is_driver:
            self._driver_gone(wc)
            return
        self.conns.pop(wid, None)
        self.clients.pop(wid, None)
        proc = self.procs.pop(wid, None)
        if proc is not None:
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                proc.kill()
        slot = self.state.workers.get(wid)
        actor_id = slot.actor_id if slot else None
        lost = S.worker_gone(self.state, wid)
        for off in self.allocs.pop(wid, ()):
            self.store.arena.free(off)
        self.store.drop_holder(wid)
        self._drop_waiters_of(wc)
        if self._stopping:
            return
        self.actors.owner_gone(wid)          # actors it created die with it, unless detached
        for tid in lost:
            spec = self.state.specs.get(tid)
            if spec is None:
                continue
            if tid in self.cancelled:
                S.forget(self.state, tid)
                self.fail(spec, exc.TaskCancelledError(tid), worker=wid)
            elif spec.type == "actor_creation":
                S.forget(self.state, tid)
                self.actors.creation_lost(spec, wid)
            elif spec.attempt < spec.max_retries:
                spec.attempt += 1
                S.requeue_front(self.state, [tid])
            else:
                S.forget(self.state, tid)
                self.fail(spec, exc.WorkerCrashedError(
                    f"The worker running {spec.name} (pid {wc.pid}) died {spec.attempt + 1} time(s); "
                    f"max_retries={spec.max_retries} is used up. Did the task run out of memory or call "
                    "os._exit? Raise max_retries with .options(max_retries=...) if the crash is transient."),
                    worker=wid)
        if actor_id:
            self.actors.worker_lost(actor_id, wid, wc.pid)

    # Requests ----------------------------------------------------------------------------------
    def _req_get(self, client, rid, oids, timeout, inline=False):
        self._wait_for(client, rid, "get", list(oids), len(set(oids)), timeout, inline)

    def _req_wait(self, client, rid, oids, k, timeout):
        self._wait_for(client, rid, "wait", list(oids), k, timeout)

    def _wait_for(self, client, rid, kind, oids, k, timeout, inline=False):
        w = Waiter(client, rid, kind, oids, k, None if timeout is None else time.monotonic() + timeout)
        w.inline = inline
        w.missing = {o for o in set(oids) if not self.store.ready(o)}
        if w.satisfied() or (kind == "get" and w.missing and self.store.any_failed(oids)):
            self._answer(w)
            return
        for o in w.missing:
            self.waiters.setdefault(o, []).append(w)
        if w.deadline is not None:
            self.timed.append(w)
            if threading.get_ident() != self.thread.ident:
                self.wake()          # a step on another thread: the node thread's sleep may be too long
        if kind == "get" and client.holder in self.state.workers:
            S.worker_blocked(self.state, client.holder)

    def _object_arrived(self, w, oid):
        if w.answered:
            return
        w.missing.discard(oid)
        if w.satisfied() or (w.kind == "get" and self.store.any_failed((oid,))):   # raise it at once
            self._answer(w)

    def _answer(self, w, timed_out=False):
        w.answered = True
        client = w.client
        if w.kind == "get":
            node = None if w.inline else (client.home if getattr(client, "remote", False) else self.node_id)
            value = None if timed_out else self.store.read_for(set(w.oids) - w.missing, client.holder, node)
            if client.holder in self.state.workers:
                S.worker_unblocked(self.state, client.holder)
        else:
            value = [o for o in w.oids if o not in w.missing]
        client.deliver([("reply", w.rid, True, value)])

    def _expire_waiters(self):
        if not self.timed:
            return
        now = time.monotonic()
        keep = []
        for w in self.timed:
            if w.answered:
                continue
            if w.deadline <= now:
                self._answer(w, timed_out=True)
            else:
                keep.append(w)
        self.timed = keep

    def _next_deadline(self):
        """How long a select may sleep: until the first timed wait ends, and at most 50 ms in the
        driver's process (its dropped refs wake nobody) or 1 s with joined nodes (heartbeats)."""
        if self.inbox:
            return 0
        cap = 0.05 if self.pull_refs else (1.0 if self.nodes.peers else None)
        live = [w.deadline for w in self.timed if not w.answered]
        if not live:
            return cap
        until = max(0.0, min(live) - time.monotonic())
        return until if cap is None else min(cap, until)

    def _drop_waiters_of(self, client):
        for ws in self.waiters.values():
            for w in ws:
                if w.client is client:
                    w.answered = True

    def _req_alloc(self, client, rid, size):
        off = self.store.alloc(size)
        self.allocs.setdefault(client.holder, set()).add(off)
        client.deliver([("reply", rid, True, off)])

    def _req_cancel(self, client, rid, oid, force, recursive=True):
        tid = oid[:-2]
        for t in S.descendants(self.state, tid) if recursive else ():   # what it submitted, first
            self._cancel(t, force)
        self._cancel(tid, force)
        client.deliver([("reply", rid, True, None)])

    def _cancel(self, tid, force):
        spec = self.state.specs.get(tid)
        if spec is not None and tid not in self.state.placed:
            S.forget(self.state, tid)
            self.fail(spec, exc.TaskCancelledError(tid))
        elif tid in self.state.placed:
            self.cancelled.add(tid)
            wid = self.state.placed[tid]
            if force:
                self._kill_worker(wid)
            else:
                self.conns[wid].deliver([("cancel", tid)])
        else:
            self.actors.cancel(tid)

    def _kill_worker(self, wid):
        """SIGKILL a worker here; a worker on another node is cut off, and exits at once."""
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

    def _req_resources(self, client, rid):
        avail = {k: max(0.0, v) for k, v in self.state.available.items()}
        client.deliver([("reply", rid, True, (dict(self.state.total), avail))])

    def _req_create_actor(self, client, rid, spec, ts):
        client.deliver([("reply", rid, True, self.actors.create(spec, ts))])

    def _req_get_actor(self, client, rid, name, namespace):
        client.deliver([("reply", rid, True, self.actors.lookup(name, namespace))])

    def _req_named_actors(self, client, rid, namespace, all_namespaces):
        client.deliver([("reply", rid, True, self.actors.named(namespace, all_namespaces))])

    def _req_kill(self, client, rid, actor_id, no_restart):
        self.actors.kill(actor_id, no_restart)
        client.deliver([("reply", rid, True, None)])

    def _req_list_objects(self, client, rid):
        client.deliver([("reply", rid, True, self.store.list_objects())])

    def _req_summary(self, client, rid):
        client.deliver([("reply", rid, True, self.store.summary())])

    def _req_nodes(self, client, rid):
        client.deliver([("reply", rid, True, self.nodes.listing())])

    def _req_events(self, client, rid, since):
        client.deliver([("reply", rid, True, self.events.since(since))])

    def _req_events_len(self, client, rid):
        client.deliver([("reply", rid, True, len(self.events))])

    def _req_ping(self, client, rid):
        client.deliver([("reply", rid, True, "pong")])

    # Shutdown ----------------------------------------------------------------------------------
    def stop(self):
        self._stopping = True
        self.wake()
        with self._park:
            self._park.notify_all()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)
        for wc in self.nodes.peers.values():      # a clean stop, not a crash: nodes leave quietly
            try:
                wc.conn.send([("bye",)])
            except OSError:
                pass
        for wc in self.conns.values():
            try:
                wc.conn.send([("stop",)])     # a clean stop: the worker exits, leaving the arena be
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
        if (threading.get_ident() == threading.main_thread().ident
                and _signal.getsignal(signal.SIGINT) is self._guard):
            _signal.signal(signal.SIGINT, self._sigint_prev)
        self.selector.close()
        self.listener.close()
        for sock in (self._wake_r, self._wake_w, self._poke_r, self._poke_w):
            sock.close()
