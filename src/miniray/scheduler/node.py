"""The node: one thread that owns the scheduler state, the object store and the worker processes.

    driver thread ──inbox+wakeup──┐                        ┌──► worker w1 (process)
                                  ▼                        │
    worker sockets ──frames──► Node step ── exec items ────┼──► worker w2
                                  │  ▲                     │
                                  ▼  └─── done/started ────┘
                        ObjectStore (shm arena)   EventLog

``Node`` is assembled from parts with one job each, mixed into one object (their methods share its
attributes, so the hot path pays no extra call for the split):

    scheduler/baton.py    who runs a step: the node thread's main loop, ``offer`` and ``drive`` on
                          the driver's thread, park/poke, the Ctrl-C hold
    scheduler/step.py     the step itself, and the {kind: handler} table of what clients send
    scheduler/pool.py     the worker processes: spawn (one place), forward prints, grow, kill, reap
    scheduler/waiters.py  "get" and "wait" of socket clients, answered by store Watches
    this module           a task's life: submit, place and send, done, retry or fail, cancel

The step changes ``state`` (scheduler/state.py), the actor table (scheduler/actors.py) and the node
table (scheduler/nodes.py); those tables call the node back only through its small public
interface (``TableSide`` in scheduler/actors.py: ``submit``, ``fail``, ``finish``, ``kill_worker``,
``worker_died``, ``descs_for``, ``placement_changed``, ``wake``, ``emit``, and the ``state``,
``store`` and ``conns`` it reads).  The store is shared with the driver thread under its lock.

A task's life here:  ("submit", spec) ──► ``submit`` ──► S.submit (waits for its arguments) ──►
S.assign places it ──► ``_send_exec`` ──► the worker ──► ("done", tid, Result) ──► ``_done``: a
retryable error with retries left goes back to S.submit (``S.retry``), else ``finish``
seals its values.  A worker that dies hands its calls to ``worker_died`` (``S.after_worker_lost``).

Workers are separate processes that connect to ``node.sock`` in the session directory.  As a
cluster's head (``miniray start --head``), the same Node also takes TCP connections from drivers,
joined nodes and their workers (``NodeTable.listen``); a worker of another node is a client like any
other, whose objects live in its own node's arena.

A client is anything that sends client items (transport/messages.py): the driver (in-process, through
``inbox``), a worker (through its socket) or a driver joined over TCP.  Each is known by a *holder*
name ("driver", "w3", "d1") that the store uses to count its refs and pins.
"""
from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from collections import deque

from miniray import exceptions as exc
from miniray.events import schema
from miniray.scheduler import state as S
from miniray.scheduler.actors import ActorTable
from miniray.scheduler.baton import PARK_S, Baton  # noqa: F401  (PARK_S: tests import it from here)
from miniray.scheduler.nodes import NodeTable
from miniray.scheduler.pool import Pool, WorkerConn
from miniray.scheduler.step import Step
from miniray.scheduler.waiters import Waiters
from miniray.store.serialization import Serialized, desc_size, error_desc
from miniray.transport.messages import Result


# the rows of the events every call makes (events.py), written without keyword arguments
_SUBMITTED = schema("task_id", "name", "type", "actor_id", "deps", "returns", "call_site", "resources")
_STARTED = schema("task_id", "worker_id", "pid", "node_id", "actor_id")
_FINISHED = schema("task_id", "state", "error", "worker_id", "pid")
_PAIRS: dict = {}   # id(a resources dict) -> (that dict, its pairs): calls share their options' dict


def _pairs(resources: dict) -> tuple:
    """A call's resources as the pairs its ``submitted`` event keeps (events.py): one tuple per
    shared dict, not one per call (a million queued calls)."""
    hit = _PAIRS.get(id(resources))
    if hit is not None and hit[0] is resources:
        return hit[1]
    if len(_PAIRS) > 1000:
        _PAIRS.clear()
    pairs = tuple(resources.items())
    _PAIRS[id(resources)] = (resources, pairs)
    return pairs


class Node(Baton, Step, Pool, Waiters):
    def __init__(self, *, session_dir, node_id, total, store, events, num_workers, inline_max,
                 node_ip="127.0.0.1"):
        self.session_dir, self.node_id, self.node_ip = session_dir, node_id, node_ip
        self.store, self.events = store, events
        self.emit, self.add_event = events.emit, events.append    # append: ``trim`` keeps the cap
        self.state = S.new_state(total, node_id)
        self.actors = ActorTable(self)
        self.nodes = NodeTable(self)                 # joined nodes, heartbeats, lineage (cluster mode)
        self.num_workers, self.inline_max = max(1, num_workers), inline_max
        self.functions: dict[str, bytes] = {}
        self.clients: dict[str, object] = {}
        self.drivers: dict[str, WorkerConn] = {}     # drivers (and node agents) connected over TCP
        self.inbox: deque = deque()
        self.allocs: dict[str, set] = {}           # holder -> arena offsets handed out, not yet sealed
        self.cancelled: set = set()
        self.warned: set = set()
        self._feasible: dict = {}                  # resource shape -> can some node ever run it
        self._self_client = type("NodeItself", (), {"holder": "node", "deliver": lambda self, items: None})()
        self._seq = 0
        self._stopping = False
        self.pull_refs = None   # set by the driver runtime: flushes its pending ref deltas
        self._init_pool()
        self._init_waiters()
        self._init_baton()
        self._init_step()
        self.sock_path = os.path.join(session_dir, "node.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        self.listener.listen(256)
        self.listener.setblocking(False)       # the node thread and a driving driver both select
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self.selector.register(self._poke_r, selectors.EVENT_READ, self._drain_wake)

    def start(self):
        for _ in range(self.num_workers):
            self.spawn_on(self.node_id)
        self.thread.start()

    def adopt(self, sock, channel):
        """From the door's thread (nodes.py): an authenticated TCP connection, taken in a step."""
        self.inbox.append((None, [("adopt", sock, channel)]))
        self.wake()

    # A task's life ---------------------------------------------------------------------------------
    def submit(self, spec, ts):
        """A call arrives (from a client, the actor table restarting an actor, or lineage)."""
        if spec.deps or spec.nested:
            self.store.use(spec.deps + spec.nested, +1)
        self.add_event((_SUBMITTED, "submitted", ts, spec.task_id, spec.name, spec.type, spec.actor_id,
                        spec.deps + spec.nested, spec.returns, spec.call_site, _pairs(spec.resources)))
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

    def _send_exec(self, tid, wid):
        spec = self.state.specs[tid]
        failed = spec.deps and [o for o in spec.deps if self.store.entries.get(o) and self.store.entries[o].state == "FAILED"]
        if failed:
            desc = self.store.entries[failed[0]].desc
            S.task_done(self.state, tid)
            self.finish(spec, Result([(r, desc, ()) for r in spec.returns], time.time(), time.time(),
                                     error="dependency failed"), worker=wid)
            return
        wc = self.conns[wid]
        descs = self.descs_for(wc, spec.deps) if spec.deps else {}
        blob = None
        if spec.fn_id not in wc.fns and spec.type != "actor_method":
            blob = self.functions[spec.fn_id]
            wc.fns.add(spec.fn_id)
        wc.deliver_exec(("exec", spec, blob, descs, self.state.workers[wid].gpus))

    def _exec_failed(self, tid, wid, err):
        """A placed call could not be sent: it fails, and its worker is free again."""
        spec = self.state.specs.get(tid)
        S.task_done(self.state, tid)
        if spec is not None:
            self.fail(spec, err if isinstance(err, exc.RayError) else exc.RaySystemError(
                f"miniray could not start {spec.name}: {type(err).__name__}: {err}"), worker=wid)

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
            self.finish(spec, result, worker=wc.holder, seal=False)
            return
        if result.error and result.retryable and not result.cancelled \
                and S.retry(self.state, spec, self.store.ready):
            self._free_values(result, wc.holder)
            return
        S.task_done(self.state, tid, result.end - result.start)
        self.finish(spec, result, worker=wc.holder)

    def _free_values(self, result, worker):
        for _, desc, _ in result.values:
            if desc[0] in ("shm", "rshm"):
                self.store._release(*self._where(self.conns.get(worker), desc))

    def finish(self, spec, result: Result, worker="", seal=True):
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
        state = "CANCELLED" if result.cancelled else ("FAILED" if result.error else "FINISHED")
        self.add_event((_FINISHED, "finished", result.end, spec.task_id, state, result.error, worker,
                        getattr(self.conns.get(worker), "pid", None)))

    def fail(self, spec, err: BaseException, worker=""):
        """A call ends with ``err`` as the value of each of its returns."""
        now = time.time()
        self.finish(spec, Result([(r, error_desc(err), ()) for r in spec.returns], now, now,
                                 error=type(err).__name__, cancelled=isinstance(err, exc.TaskCancelledError)),
                    worker=worker)

    def worker_died(self, wc: WorkerConn):
        """A connection closed: a worker (its calls are retried or fail), a driver or a node."""
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
        self._reap(wid)
        slot = self.state.workers.get(wid)
        actor_id = slot.actor_id if slot else None
        lost = S.worker_gone(self.state, wid)
        self._drop_holder(wid)
        self._drop_waiters_of(wc)
        if self._stopping:
            return
        self.actors.owner_gone(wid)          # actors it created die with it, unless detached
        for outcome, spec in S.after_worker_lost(self.state, lost, self.cancelled):
            if outcome == "cancelled":
                self.fail(spec, exc.TaskCancelledError(spec.task_id), worker=wid)
            elif outcome == "creation_lost":
                self.actors.creation_lost(spec, wid)
            elif outcome == "failed":
                self.fail(spec, exc.WorkerCrashedError(
                    f"The worker running {spec.name} (pid {wc.pid}) died {spec.attempt + 1} time(s); "
                    f"max_retries={spec.max_retries} is used up. Did the task run out of memory or call "
                    "os._exit? Raise max_retries with .options(max_retries=...) if the crash is transient."),
                    worker=wid)
        if actor_id:
            self.actors.worker_lost(actor_id, wid, wc.pid)

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
                self.kill_worker(wid)
            else:
                self.conns[wid].deliver([("cancel", tid)])
        else:
            self.actors.cancel(tid)

    # Store callbacks ---------------------------------------------------------------------------------
    def _handles_gone(self, actor_id):
        """Called under the store lock, maybe from the driver thread: let the node thread act."""
        self.inbox.append((self._self_client, [("handles_gone", actor_id)]))
        self.wake()

    def _object_ready(self, oid):
        if oid in self.state.dependents:
            S.object_ready(self.state, oid)
        if oid in self.actors.blocked:
            self.actors.object_ready(oid)

    # Shutdown ------------------------------------------------------------------------------------------
    def stop(self):
        self._stopping = True
        self.wake()
        self._unpark()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)
        self.store.abort_watches()
        for wc in self.nodes.peers.values():      # a clean stop, not a crash: nodes leave quietly
            try:
                wc.conn.send([("bye",)])
            except OSError:
                pass
        self._stop_workers()
        self._close_baton()
        self.selector.close()
        self.listener.close()
