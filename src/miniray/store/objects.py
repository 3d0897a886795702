"""The node's object table: every object's state, location, size and who keeps it alive.

Runs in the node's process (the driver in local mode, the head in a cluster).  Changed in the
node's steps (on whichever thread holds the baton, scheduler/node.py) and by the driver's own put
and get, all under ``lock``.  Nothing here does I/O except spilling to disk.

An object's state machine (illegal moves raise, STYLE 5):

    PENDING ──seal──► READY ──spill──► SPILLED ──restore──► READY
       │                │                  │
       └──fail──► FAILED└────────free──────┴──► FREED   (FAILED ──free──► FREED too)

Who keeps an object alive (it is freed when all are zero and it is no longer PENDING):
    refs           processes holding ObjectRefs to it ("driver", "w3", ...):     LOCAL_REFERENCE
    uses           pending tasks that take it as an argument:                   USED_BY_PENDING_TASK
    captured       live objects whose pickled value contains a ref to it:       CAPTURED_IN_OBJECT
    pins[holder]   zero-copy views alive in a process (shm objects only):        PINNED_IN_MEMORY
Pinned objects are never spilled; their memory is mapped by a reader.

In a cluster this table, on the head, is also the object directory.  An shm object lives in some
node's arena: ``node`` names it (this node's id for the head's own arena), and ``copies`` lists
more copies pulled by readers on other nodes, as (node id, descriptor).  ``read_for`` hands a reader
the copy on its own node, or ("fetch", data address, ...) so it pulls one (cluster/transfer.py).
Freeing an object frees every copy: this arena's blocks here, other nodes' through ``free_remote``.
When a node dies, ``node_lost`` drops its copies and returns the objects that had no other:
the node re-runs their tasks (``reset`` back to PENDING) or fails them with ObjectLostError.
"""
from __future__ import annotations

import os
import threading
import time
import types
from collections import deque

from miniray.events import schema
from miniray.exceptions import ObjectStoreFullError
from miniray.store.arena import Arena
from miniray.store.serialization import Serialized, desc_size, error_desc, extent

PENDING, READY, FAILED, SPILLED, FREED = "PENDING", "READY", "FAILED", "SPILLED", "FREED"
_MOVES = {
    PENDING: {READY, FAILED, FREED},
    READY: {SPILLED, FREED, PENDING},      # READY -> PENDING: its only copy was lost; recomputing
    SPILLED: {READY, FREED},
    FAILED: {FREED},
    FREED: set(),
}


_DONE = (READY, FAILED, SPILLED)
_NO_PINS = types.MappingProxyType({})   # every unpinned Entry shares it: read-only, never mutated      # a get or wait takes these as ready
_ANSWER = "answer"   # an object id never sealed: a watch on it is set by its owner (``watch_answer``)
_STORED = schema("object_id", "size", "location", "call_site", "pid", "node_id", "task_id")  # and "put"
_FREED = schema("object_id")


class Entry:
    """One object's row.  A plain class with slots: the driver makes one per returned ref, so it
    must be cheap to create."""
    __slots__ = ("oid", "state", "desc", "size", "refs", "pins", "uses", "captured", "contains", "call_site",
                 "pid", "task_id", "last_access", "node", "copies")

    def __init__(self, oid: str):
        self.oid, self.state, self.desc, self.size = oid, PENDING, None, 0
        self.refs: tuple = ()           # a holder once per ref it counts (a client counts 0 or 1:
                                        # 48 bytes for the usual one holder, where a dict took 180)
        self.pins = _NO_PINS            # holder -> count; its own dict once pinned (few objects are)
        self.uses = self.captured = 0
        self.contains: tuple = ()
        self.call_site = self.task_id = self.node = ""
        self.pid, self.last_access = 0, 0.0
        self.copies: tuple = ()         # more copies: (node id, shm desc); ``desc`` is in ``node``

    @property
    def location(self) -> str:
        if self.state == SPILLED:
            return "spilled"
        if self.desc is None:
            return "pending"
        return "shared_memory" if self.desc[0] == "shm" else "inline"

    def move(self, new: str) -> None:
        if new not in _MOVES[self.state]:
            raise RuntimeError(f"object {self.oid}: illegal state change {self.state} -> {new}")
        self.state = new


class Watch:
    """The one way to wait for objects (``ObjectStore.watch``): set once all but ``slack`` of the
    objects in ``remaining`` are ready (a ``get``: all; a ``wait`` for k of n: n - k), or, with
    ``fail_fast`` (a ``get``), as soon as one has failed; or by the store closing (``aborted``).

    Who waits: the driver's own thread (``Runtime._await``: it runs the node's loop meanwhile, and
    ``poke``, set by Node.drive, wakes it when another thread set this), and the node on behalf of a
    socket client (scheduler/waiters.py: ``on_set`` answers the client, once).  The Event behind
    ``wait`` is made only if someone blocks on it (a driver that drives the node's loop never does)."""
    __slots__ = ("remaining", "slack", "fail_fast", "done", "aborted", "poke", "on_set", "_event")

    def __init__(self, slack=0, fail_fast=True, on_set=None):
        self.slack, self.fail_fast, self.on_set = slack, fail_fast, on_set
        self.done, self.aborted, self.poke, self._event = False, False, None, None

    def set(self):
        self.done = True
        if self._event is not None:
            self._event.set()
        if self.poke is not None:
            self.poke()
        if self.on_set is not None:
            on_set, self.on_set = self.on_set, None
            on_set(self)

    def is_set(self) -> bool:
        return self.done

    def wait(self, timeout=None) -> bool:
        if self.done:
            return True
        if self._event is None:
            self._event = threading.Event()     # made before ``done`` is read again: no lost set
        return self.done or self._event.wait(timeout)


class _StoreLock:
    """The store's re-entrant lock.  Whoever takes it first applies the ref increments queued
    without it (``add_ref_soon``), so every decision made under the lock sees them."""

    def __init__(self, store):
        self._lock, self._store = threading.RLock(), store

    def __enter__(self):
        self._lock.acquire()
        if self._store.ref_queue:
            try:
                self._store.drain_ref_queue()
            except BaseException:   # a Ctrl-C in the loop: ``with`` will not call __exit__
                self._lock.release()
                raise
        return self

    def __exit__(self, *exc_info):
        self._lock.release()


class ObjectStore:
    """State: ``entries`` (oid → Entry) and the arena's allocation; ``lock`` guards both."""

    def __init__(self, arena: Arena, spill_dir: str, node_id: str, log):
        self.arena, self.spill_dir, self.node_id = arena, spill_dir, node_id
        self.emit, self.add_event = log.emit, log.append    # the node's steps keep the cap (trim)
        self.entries: dict[str, Entry] = {}
        self.ref_queue: deque = deque()    # (oid, holder): +1 refs from the driver thread, not yet applied
        self.lock = _StoreLock(self)
        self._rlock = self.lock._lock      # for ``seal`` and ``use``, the hot path: each drains
        # ``ref_queue`` itself, as ``lock`` would, without two Python-level calls per use
        self.spilled_bytes = 0
        self.watchers: dict = {}   # oid -> [Watch]: the gets and waits not yet answered (Watch)
        self.watches_closed = False
        self.addresses: dict = {}     # node id -> (ip, port) of its DataServer (cluster mode only)
        self.on_ready = self.on_handles_gone = self.free_remote = self.on_freed = self.reclaim = None

    def connect(self, *, on_ready, on_handles_gone, free_remote, on_freed) -> None:
        """The callbacks, connected once by whoever builds the node (session.start_node):
        ``on_ready(oid)`` each oid that became READY or FAILED; ``on_handles_gone(actor_id)`` an
        actor has no handle and no pending call; ``free_remote(node_id, block)`` a block of another
        node's arena to free; ``on_freed(oid)`` each oid freed.  ``reclaim()``, set by boot.py for the
        local driver, hands over the refs and views it dropped but has not reported yet (they may
        hold the room an alloc asks for), True if there were any."""
        self.on_ready, self.on_handles_gone = on_ready, on_handles_gone
        self.free_remote, self.on_freed = free_remote, on_freed

    # -- creation ------------------------------------------------------------------------------
    def entry(self, oid: str) -> Entry:
        e = self.entries.get(oid)
        if e is None:
            e = self.entries[oid] = Entry(oid)
        return e

    def seal(self, oid: str, desc: tuple, contained=(), *, call_site="", pid=0, task_id="", failed=False,
             node=""):
        """A value arrived (a put, a task's return, or an error to raise at ``get``); an shm value
        lives in ``node``'s arena (default: this one)."""
        node = node or self.node_id
        with self._rlock:               # the store's lock (``lock``) without its Python-level calls
            if self.ref_queue:
                self.drain_ref_queue()
            e = self.entries.get(oid) or self.entry(oid)
            if e.state != PENDING:  # a retried task's duplicate result: keep the first
                if desc[0] == "shm":
                    self._release(node, desc)
                return
            kind = desc[0]
            e.desc, e.size = desc, (len(desc[1]) if kind == "error" or (kind == "inline" and not desc[2])
                                    else desc_size(desc))
            e.node, e.copies = node, ()
            if contained:
                e.contains = tuple(contained)
                for c in e.contains:
                    self.entry(c).captured += 1
            e.call_site = e.call_site or call_site
            e.pid, e.task_id, e.last_access = pid, task_id, time.time()
            e.state = FAILED if failed else READY        # PENDING -> READY | FAILED (see _MOVES)
            if self.watchers:
                for w in self.watchers.pop(oid, ()):
                    w.remaining.discard(oid)
                    if not w.remaining or (failed and w.fail_fast) or (w.slack and len(w.remaining) <= w.slack):
                        w.set()                       # a get raises the first error at once
        self.add_event((_STORED, "put" if not task_id else "stored", time.time(), oid, e.size,
                        "shared_memory" if kind == "shm" else "inline", e.call_site, pid, self.node_id, task_id))
        if self.on_ready:
            self.on_ready(oid)
        if not e.refs:          # else it stays: the common case, checked here without a call
            self._maybe_free(e)

    def _release(self, node: str, desc: tuple) -> None:
        if node == self.node_id:
            self.arena.free(block_of(desc))
        elif self.free_remote is not None:
            self.free_remote(node, block_of(desc))

    def add_copy(self, oid: str, node: str, desc: tuple) -> None:
        """A reader on ``node`` pulled a copy into its arena; it is freed with the object."""
        with self.lock:
            e = self.entries.get(oid)
            if e is None or e.state not in (READY, SPILLED):
                self._release(node, desc)
                return
            e.copies += ((node, desc),)
        self.emit("copied", object_id=oid, node_id=node, size=e.size)

    def node_lost(self, node: str) -> list:
        """A node died: forget its copies; return the objects whose only copy was there."""
        lost = []
        with self.lock:
            for e in self.entries.values():
                if not e.copies and e.node != node:
                    continue
                e.copies = tuple((n, d) for n, d in e.copies if n != node)
                if e.node == node and e.state == READY and e.desc[0] == "shm":
                    if e.copies:
                        (e.node, e.desc), e.copies = e.copies[0], e.copies[1:]
                    else:
                        lost.append(e.oid)
        return lost

    def reset(self, oid: str) -> None:
        """A lost object will be computed again: back to PENDING, keeping its refs and uses."""
        with self.lock:
            e = self.entries.get(oid)
            if e is None or e.state != READY:
                return
            for c in e.contains:
                inner = self.entries.get(c)
                if inner is not None:
                    inner.captured -= 1
            e.desc, e.node, e.copies, e.contains = None, "", (), ()
            e.move(PENDING)

    def watch(self, oids: set, slack=0, fail_fast=True, on_set=None) -> Watch:
        """A Watch (above) on ``oids``, set at once if they are ready already.  Once the store is
        closed (``abort_watches``) every watch is set as aborted."""
        w = Watch(slack, fail_fast, on_set)
        with self.lock:
            entries = self.entries
            w.remaining = {o for o in oids if (e := entries.get(o)) is None or e.state not in _DONE}
            if self.watches_closed:
                w.aborted = True
                w.set()
                return w
            if not w.remaining or (fail_fast and self.any_failed(oids)) or (slack and len(w.remaining) <= slack):
                w.set()
                return w
            for o in w.remaining:
                self.watchers.setdefault(o, []).append(w)
        return w

    def watch_answer(self) -> Watch:
        """A Watch its owner sets (the answer to a driver's request came), or the store's closing."""
        return self.watch((_ANSWER,))

    def abort_watches(self) -> None:
        """The node stopped: nothing will be sealed any more; every watch, now or later, is set
        as aborted, so no waiter waits for ever."""
        with self.lock:
            self.watches_closed = True
            watches = [w for ws in self.watchers.values() for w in ws]
            self.watchers.clear()
        for w in watches:
            w.aborted = True
            w.set()

    def any_failed(self, oids) -> bool:
        entries = self.entries
        return any((e := entries.get(o)) is not None and e.state == FAILED for o in oids)

    def unwatch(self, oids: set, w) -> None:
        with self.lock:
            for o in oids:
                ws = self.watchers.get(o)
                if ws and w in ws:
                    ws.remove(w)
                    if not ws:
                        del self.watchers[o]

    # -- shared memory ---------------------------------------------------------------------------
    def alloc(self, size: int) -> int:
        """An arena offset for ``size`` bytes, spilling unpinned objects if needed, after the
        driver's unreported drops (``reclaim``) if those pin what could go."""
        with self.lock:
            if size > self.arena.capacity:
                raise ObjectStoreFullError(
                    f"An object of {size / 2**20:.1f} MiB cannot fit in the object store, whose whole "
                    f"capacity is {self.arena.capacity / 2**20:.1f} MiB. Start miniray with a larger "
                    f"store, e.g. miniray.init(object_store_memory={2 * size}), or split the object "
                    "into smaller pieces.")
            off = self.arena.alloc(size)
            while off is None:
                if not self._spill_one() and not (self.reclaim is not None and self.reclaim()):
                    used = self.arena.used
                    raise ObjectStoreFullError(
                        f"The object store is full: {used / 2**20:.1f} of {self.arena.capacity / 2**20:.1f}"
                        f" MiB are held by objects that are pinned (in use by a reader or a running task),"
                        f" and {size / 2**20:.1f} MiB more were asked for. Drop references you no longer "
                        "need (del ref), or start with a larger object_store_memory.")
                off = self.arena.alloc(size)
            return off

    def _spill_one(self) -> bool:
        victims = [e for e in self.entries.values()
                   if e.state == READY and e.desc[0] == "shm" and not e.pins and e.node == self.node_id
                   and not e.copies]
        if not victims:
            return False
        e = min(victims, key=lambda v: v.last_access)
        os.makedirs(self.spill_dir, exist_ok=True)
        path = self.spill_file(e.oid)
        off = e.desc[1]
        with open(path, "wb") as f:
            f.write(self.arena.view(off, _shm_extent(e.desc)))
        self.arena.free(block_of(e.desc))
        e.move(SPILLED)
        self.spilled_bytes += e.size
        self.emit("spilled", object_id=e.oid, size=e.size, path=path)
        return True

    def spill_file(self, oid: str) -> str:
        """Where a spilled object's bytes are while it is SPILLED."""
        return os.path.join(self.spill_dir, oid)

    def restore(self, e: Entry) -> None:
        with self.lock:
            if e.state != SPILLED:
                return
            extent = _shm_extent(e.desc)
            off = self.alloc(extent)
            with open(self.spill_file(e.oid), "rb") as f:
                f.readinto(self.arena.view(off, extent))
            os.unlink(self.spill_file(e.oid))
            e.desc = ("shm", off) + e.desc[2:4]
            self.spilled_bytes -= e.size
            e.move(READY)
        self.emit("restored", object_id=e.oid, size=e.size)

    def put_serialized(self, oid: str, ser: Serialized, inline_max: int, **info) -> None:
        """Store a value serialized in this process (the driver, or the node on a worker's behalf)."""
        if ser.size <= inline_max:
            desc = ser.inline()
        else:
            off = self.alloc(ser.shm_size)
            desc = ser.write_shm(self.arena, off)
        self.seal(oid, desc, ser.contained, **info)

    # -- keeping alive ----------------------------------------------------------------------------
    def add_refs(self, deltas, holder: str) -> None:
        """A client's ref counts changed: [(oid, +n or -n)], applied in order under one lock."""
        with self.lock:
            for oid, n in deltas:
                e = self.entries.get(oid) or self.entry(oid)
                if n > 0:
                    e.refs += (holder,) * n
                    continue
                for _ in range(-n):
                    if holder in e.refs:
                        i = e.refs.index(holder)
                        e.refs = e.refs[:i] + e.refs[i + 1:]
                if holder not in e.refs:
                    self._maybe_free(e)

    def add_ref_soon(self, oid: str, holder: str) -> None:
        """+1 ref without taking the lock (the driver's hot path): applied by the next lock holder,
        before anything that could free the object is decided."""
        self.ref_queue.append((oid, holder))

    def drain_ref_queue(self) -> None:
        queue, entries = self.ref_queue, self.entries
        while queue:
            oid, holder = queue[0]      # popped once applied: a Ctrl-C in between loses no ref
            e = entries.get(oid)
            if e is None:
                e = entries[oid] = Entry(oid)
            e.refs += (holder,)
            queue.popleft()

    def pin(self, oid: str, holder: str, n: int = 1) -> None:
        with self.lock:
            e = self.entries.get(oid)
            if e is None:
                return
            if not e.pins:
                e.pins = {}
            n = e.pins[holder] = e.pins.get(holder, 0) + n
            if n <= 0:
                del e.pins[holder]
                self._maybe_free(e)

    def use(self, oids, n: int) -> None:
        """Pending tasks taking (n=+1) or releasing (n=-1) these objects as arguments."""
        if not oids:
            return
        with self._rlock:                  # ``lock``, on the hot path (every actor call comes here)
            if self.ref_queue:
                self.drain_ref_queue()
            entries = self.entries
            for oid in oids:
                e = entries.get(oid) or self.entry(oid)
                e.uses += n
                if n < 0 and e.uses <= 0 and not e.refs:
                    self._maybe_free(e)

    def drop_holder(self, holder: str) -> None:
        """A process died: whatever it held is released."""
        with self.lock:
            for e in list(self.entries.values()):
                if holder in e.refs or holder in e.pins:
                    e.refs = tuple(h for h in e.refs if h != holder)
                    if holder in e.pins:
                        del e.pins[holder]
                    self._maybe_free(e)

    def _maybe_free(self, e: Entry) -> None:
        if e.refs or e.pins or e.uses > 0 or e.captured > 0:
            return
        if e.state == PENDING and e.oid.endswith("ah") and self.entries.get(e.oid) is e:
            del self.entries[e.oid]            # the last handle of an actor is gone
            if self.on_handles_gone:
                self.on_handles_gone(e.oid[:-2])
            return
        if e.state in (PENDING, FREED):
            return
        if e.state == READY and e.desc[0] == "shm":
            self._release(e.node, e.desc)
        for node, desc in e.copies:
            self._release(node, desc)
        if e.state == SPILLED:
            self.spilled_bytes -= e.size
            try:
                os.unlink(self.spill_file(e.oid))
            except FileNotFoundError:
                pass
        e.move(FREED)
        del self.entries[e.oid]
        self.add_event((_FREED, "freed", time.time(), e.oid))
        if self.on_freed is not None:
            self.on_freed(e.oid)
        for c in e.contains:
            inner = self.entries.get(c)
            if inner is not None:
                inner.captured -= 1
                self._maybe_free(inner)

    # -- reading -----------------------------------------------------------------------------------
    def ready(self, oid: str) -> bool:
        e = self.entries.get(oid)
        return e is not None and e.state in _DONE

    def read_for(self, oids, holder: str, node: str | None = "") -> dict:
        """oid -> the descriptor of each ready object in ``oids`` for a reader on ``node``
        (default: this one; None: a process with no arena), pinned for ``holder`` if it lives in
        shared memory.  An shm object with no copy on the reader's node comes as ("fetch",
        address, offset, meta_len, lens).  One lock for them all: a get of 10,000 refs reads here."""
        now = time.time()
        with self.lock:
            return {oid: self._read(oid, holder, node, now) for oid in oids}

    def _read(self, oid: str, holder: str, node, now: float) -> tuple:
        e = self.entries.get(oid)
        if e is None:
            from miniray.exceptions import ObjectFreedError
            return error_desc(ObjectFreedError(
                f"Object {oid} was freed: no reference to it was alive. Keep the ObjectRef "
                "(or the value) while you still need it."))
        if e.state == SPILLED:
            self.restore(e)
        e.last_access = now
        if e.desc[0] != "shm":
            return e.desc
        if not e.pins:
            e.pins = {}
        e.pins[holder] = e.pins.get(holder, 0) + 1
        node = self.node_id if node == "" else node
        for where, desc in ((e.node, e.desc), *e.copies):
            if where == node:
                return desc
        return ("fetch", self.addresses[e.node]) + e.desc[1:4]

    # -- observing ---------------------------------------------------------------------------------
    def list_objects(self) -> list[dict]:
        with self.lock:
            out = []
            for e in self.entries.values():
                if e.state == PENDING and (not e.refs or e.oid.endswith("ah")):
                    continue
                if e.pins:
                    kind = "PINNED_IN_MEMORY"
                elif e.uses > 0:
                    kind = "USED_BY_PENDING_TASK"
                elif e.refs:
                    kind = "LOCAL_REFERENCE"
                else:
                    kind = "CAPTURED_IN_OBJECT"
                out.append({"object_id": e.oid, "object_size": e.size, "reference_type": kind,
                            "location": e.location, "state": e.state, "node_id": e.node or self.node_id,
                            "copies": [n for n, _ in e.copies],
                            "call_site": e.call_site, "pid": e.pid, "task_id": e.task_id})
            return out

    def summary(self) -> dict:
        with self.lock:
            live = [e for e in self.entries.values() if e.state != PENDING]
            return {"node_id": self.node_id, "capacity": self.arena.capacity, "used": self.arena.used,
                    "spilled": self.spilled_bytes, "num_objects": len(live),
                    "num_spilled": sum(e.state == SPILLED for e in live),
                    "num_inline": sum(e.location == "inline" for e in live)}


def block_of(desc: tuple) -> int:
    """The arena block an shm object lives in (its offset, unless it was built in place)."""
    return desc[4] if len(desc) > 4 else desc[1]


def _shm_extent(desc: tuple) -> int:
    return extent(desc[2], desc[3])
