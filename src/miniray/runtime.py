"""The one runtime object per process, and the accessor that finds it (STYLE 9).

    api.py / remote_function.py / actor.py
                 │ current_runtime()
                 ▼
            Runtime  ── ids, ref counts, put/get/wait, submit ──► transport
                                                                 │
         driver (local mode): LocalTransport ── Node.offer ──► a step of the Node's loop (same process)
         worker:              SocketTransport ── node.sock ──► Node (the driver's or the head's process)
         worker of a joined node, driver joined over TCP (cluster/client.py):
                              SocketTransport ── TCP ──────► the head's Node

State owned: ``_counts`` (oid → live ObjectRef instances in this process), ``_pending`` (ref
changes and unpins not yet sent, in order; the driver's new refs go to its store at once),
``fns`` (functions already registered with the node), the id counter.  The driver's Runtime also
holds the Node, the store and the event log (``api.shutdown`` stops them in order: node thread,
workers, arena, session directory); a worker's gets ``context_of`` and ``blocking`` from its
Executor, a joined node's worker ``local_store`` (its node's allocator), a TCP driver ``close``.
"""
from __future__ import annotations

import functools
import itertools
import pickle
import os
import sys
import threading
import time
from concurrent.futures import Future

from miniray import exceptions as exc

_current = None   # the Runtime of this process, or None
SPIN_MAX_OBJECTS = 2
_LOOKING = {"list_objects", "summary", "events", "events_len", "resources"}


def current_runtime(auto_init: bool = True):
    """The runtime of this process; the first use with no ``init()`` starts a local one, as Ray does."""
    if _current is None:
        if not auto_init:
            raise RuntimeError("miniray is not running: call miniray.init() first.")
        from miniray import api
        api.init()
    return _current


_PKG = os.path.dirname(__file__)


def call_site(skip_miniray: bool = True) -> str:
    """``file:line`` of the user code that called into miniray."""
    f = sys._getframe(1)
    pkg = _PKG
    while f is not None and f.f_code.co_filename.startswith(pkg):
        f = f.f_back
    if f is None:
        return "?"
    key = (f.f_code, f.f_lineno)
    site = _SITES.get(key)
    if site is None:                 # one string per call site, not one per call (1M queued calls)
        if len(_SITES) > 10_000:
            _SITES.clear()
        site = _SITES[key] = f"{f.f_code.co_filename}:{f.f_lineno}"
    return site


_SITES: dict = {}


class LocalTransport:
    """The driver talking to the Node thread in its own process."""

    def __init__(self, node):
        self.node = node
        self._client = None
        self._futures: dict[int, Future] = {}

    @property
    def client(self):
        return self._client

    @client.setter
    def client(self, client):
        self._client = client
        self.send = functools.partial(self.node.offer, client)   # ``send``, one call less per message

    def send(self, items):
        self.node.offer(self.client, items)

    def expect(self, rid):
        fut = self._futures[rid] = Future()
        return fut

    def resolve(self, rid, ok, value):
        fut = self._futures.pop(rid, None)
        if fut is not None:
            fut.set_result(value) if ok else fut.set_exception(value)
        return fut is not None


class SocketTransport(LocalTransport):
    """A worker talking to its node over ``node.sock``; a reader thread calls ``resolve``."""

    def __init__(self, conn):
        self.conn = conn
        self._futures = {}

    def send(self, items):
        self.conn.send(items)


class Runtime:
    def __init__(self, transport, holder: str, *, node_id: str, job_id: str, arena, inline_max: int,
                 node=None, store=None, events=None, session_dir: str = "", address=None):
        self.transport, self.holder, self.node_id, self.job_id = transport, holder, node_id, job_id
        self.arena, self.inline_max, self.node, self.store, self.events = arena, inline_max, node, store, events
        self.session_dir, self.address = session_dir, address
        self._prefix = os.urandom(5).hex()
        self._ids = itertools.count(1)
        self._rids = itertools.count(1)
        self._lock = threading.RLock()
        self._counts: dict[str, int] = {}
        self._pending: list = []      # ("refs", oid, -1) / ("unpin", oid), in order
        self.fns: set = set()            # function ids sent to the node already
        self.namespace = "default"
        self.job_env: dict = {}          # init(runtime_env={"env_vars": ...}): for every task and actor
        self.lost = ""                   # a remote driver: why the head is unreachable
        self.close = lambda: None
        self.context_of = lambda: None   # worker: the current call's context (worker/executor.py)
        self.blocking = None             # worker: hands back queued calls before a blocking get
        self.one_at_a_time = None        # worker: True while it is a sequential actor (main.py)
        self.self_calls: set = set()     # worker: task ids of calls it made to its own actor
        self.local_store = None          # worker on a joined node: its node's store (cluster/nodestore.py)

    # -- ids ------------------------------------------------------------------------------------
    def new_task_id(self) -> str:
        return f"{self._prefix}{next(self._ids):011x}"

    # -- sending, with pending ref changes first -------------------------------------------------
    def send(self, items: list, drops_first: bool = False) -> None:
        """Send items; new refs (+1) go before them, dropped refs and unpins after them.

        Moving a drop later only delays a free, and it must: the items may hold the very refs that
        were dropped (a result that captured them), and the node must see the capture first.
        Requests that only look (``list_objects``) carry no refs, so drops go first: the answer
        then reflects a ``del`` made just before."""
        with self._lock:
            if not self._pending:
                self.transport.send(items)
                return
            before, after = self._take_pending()
            if drops_first:
                before, after = before + after, []
            self.transport.send(before + items + after)

    def flush(self) -> None:
        with self._lock:
            before, after = self._take_pending()
            if before or after:
                self.transport.send(before + after)

    def _take_pending(self):
        if not self._pending:
            return [], []
        added, dropped, unpins = [], [], []
        for kind, oid, delta in self._pending:
            if kind == "unpin":
                unpins.append(oid)
            else:
                (added if delta > 0 else dropped).append((oid, delta))
        self._pending = []
        after = ([("refs", dropped)] if dropped else []) + ([("unpin", unpins)] if unpins else [])
        return ([("refs", added)] if added else []), after

    def request(self, kind: str, *args, timeout=None):
        if self.lost:
            raise exc.RaySystemError(self.lost)
        rid = next(self._rids)
        fut = self.transport.expect(rid)
        self.send([("req", rid, kind, args)], drops_first=kind in _LOOKING)
        if self.node is None:
            return fut.result(timeout)
        if not fut.done():            # the driver: run the node's loop here until the answer comes
            answered = self.store.watch_answer()
            fut.add_done_callback(lambda _: answered.set())
            try:
                if not self._await(answered, None if timeout is None else time.monotonic() + timeout):
                    return fut.result(0)      # TimeoutError, unless it came just now
            finally:
                self.store.unwatch(answered.remaining, answered)
        return fut.result()

    def _await(self, watch, deadline, spin=True) -> bool:
        """Driver: wait until ``watch`` is set (True) or ``deadline`` passes (False), running the
        node's loop on this thread unless another thread already does.  ``spin``: poll a moment
        before sleeping (framing.SPIN_S), for a wait on one answer, where it saves a wake-up."""
        driven = self.node.drive(watch, deadline, spin)
        if driven is None:      # another thread drives: the watch is set by a seal, or aborted
            driven = watch.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if watch.aborted:       # the node stopped (store.abort_watches)
            raise exc.RaySystemError(exc.NODE_STOPPED)
        return driven

    # -- reference counting --------------------------------------------------------------------
    def add_local_ref(self, oid: str) -> None:
        with self._lock:
            n = self._counts.get(oid, 0)
            if n == 0:      # told first: a Ctrl-C between the two may leak a ref, never free early
                if self.store is not None:
                    self.store.add_ref_soon(oid, self.holder)
                else:
                    self._pending.append(("refs", oid, +1))
            self._counts[oid] = n + 1

    def remove_local_ref(self, oid: str) -> None:
        with self._lock:
            n = self._counts.get(oid, 0) - 1
            if n > 0:
                self._counts[oid] = n
                return
            self._counts.pop(oid, None)
            self._pending.append(("refs", oid, -1))

    def reclaim(self) -> bool:
        """Driver: the store needs room; report our dropped refs and views now (store.reclaim).
        Called under the store's lock, so it only tries ours: a thread holding ours may be waiting
        for the store's."""
        if not self._pending or not self._lock.acquire(blocking=False):
            return False
        try:
            if self.node.inbox:     # items of ours wait ahead of the drops: keep the order (``send``)
                self.flush()
            else:                   # handled here and now: the alloc asking may be in a node step,
                before, after = self._take_pending()     # which could not take a message first
                self.node.handle_all(self.transport.client, before + after)
        finally:
            self._lock.release()
        return True

    def flush_pending_to_node(self) -> None:
        """Driver only, called in each step of the node's loop: queue our ref drops and unpins,
        in order.  Only if our lock is free: a thread holding it is in ``send``, which takes the
        pending changes along, and a step must not wait for it, holding the baton that very
        ``send`` may be about to ask for."""
        if self._pending and self._lock.acquire(blocking=False):
            try:
                self.flush()
            finally:
                self._lock.release()

    def unpin(self, oid: str) -> None:
        with self._lock:
            self._pending.append(("unpin", oid, 0))

    # -- functions --------------------------------------------------------------------------------
    def ensure_function(self, fn_id: str, make_blob) -> None:
        if fn_id not in self.fns:
            self.send([("fn", fn_id, make_blob())])
            self.fns.add(fn_id)

    def submit(self, spec) -> None:
        if spec.type == "actor_method" and self.one_at_a_time is not None:
            ctx = self.context_of()
            if ctx is not None and ctx.actor_id == spec.actor_id and self.one_at_a_time():
                self.self_calls.add(spec.task_id)      # a call to our own sequential actor
        self.send([("submit", spec, time.time())])

    def _check_self_wait(self, oids) -> None:
        """A sequential actor's call waiting for a call to that same actor would wait for ever:
        the later call runs only once this one returns.  Say so instead of hanging."""
        mine = [o for o in oids if o[:-2] in self.self_calls]
        if mine and self.one_at_a_time():
            ctx = self.context_of()
            name = ctx.name if ctx is not None else "this actor method"
            raise RuntimeError(
                f"{name} waits in get() for a call to its own actor, which can only start after {name} "
                "returns (an actor runs one call at a time): this would hang. Call the method directly "
                "(self.method(...)), return the ref instead of getting it, or create the actor with "
                ".options(max_concurrency=2) or more.")

    # -- objects ----------------------------------------------------------------------------------
    def put(self, value, site: str = ""):
        from miniray.refs import ObjectRef
        if isinstance(value, ObjectRef):
            raise TypeError("miniray.put() of an ObjectRef is not allowed: pass the ref itself to tasks, "
                            "or put the value it stands for.")
        from miniray.store.serialization import serialize
        oid = self.new_task_id() + "00"
        if type(value).__module__ == "numpy":
            from miniray.util.arrays import is_built, seal_if_built
            if is_built(value):
                ref = ObjectRef(oid)
                seal_if_built(self, value, oid, site)
                return ref
        ser = serialize(value)
        ref = ObjectRef(oid)
        self.put_serialized(oid, ser, site)
        return ref

    def put_serialized(self, oid: str, ser, site: str) -> None:
        if self.store is not None:     # the driver: write into the store directly
            self.store.put_serialized(oid, ser, self.inline_max, call_site=site, pid=os.getpid())
            return
        self.send([("put", oid, self.write_object(ser), ser.contained, site)])

    def write_object(self, ser) -> tuple:
        """Where a value this process made goes, as the descriptor the head will record:
        inline bytes; ("shm", ...) in the head's arena; ("rshm", ...) in this joined node's own arena;
        or, for a process with no arena or a full one, streamed into the head's store."""
        if ser.size <= self.inline_max:
            return ser.inline()
        if self.arena is None:
            return self.send_to_head_store(ser)
        try:
            off = self.alloc_block(ser.shm_size)
        except exc.ObjectStoreFullError:
            if self.local_store is None:
                raise
            return self.send_to_head_store(ser)       # this node is full: the head's store spills
        return self.local_desc(ser.write_shm(self.arena.view(off, ser.shm_size), off))

    def send_to_head_store(self, ser) -> tuple:
        """For a process that cannot map the head's arena: reserve a block there, then send the
        object in 4 MiB pieces written straight into it, so no process holds the whole thing twice.
        Byte layout as in store/serialization.py: meta, then each buffer at a 64-byte boundary."""
        from miniray.store.arena import _round
        off = self.request("alloc", ser.shm_size)
        pieces, pos = [(0, memoryview(ser.meta))], len(ser.meta)
        for b in ser.buffers:
            pos = _round(pos)
            pieces.append((pos, b))
            pos += b.nbytes
        chunk = 4 << 20
        for start, mv in pieces:
            for i in range(0, mv.nbytes, chunk):
                self.send([("write", off + start + i, bytes(mv[i:i + chunk]))])
        return ("shm", off, len(ser.meta), tuple(b.nbytes for b in ser.buffers))

    def get_descs(self, oids: list, timeout):
        store = self.store
        if store is not None:   # the driver: wait on the store itself, no round trip to the node
            descs = self._wait_in_store(oids, timeout)
        else:
            if self.self_calls:
                self._check_self_wait(oids)
            if self.blocking is not None:
                self.blocking(True)
            try:
                descs = self.request("get", list(oids), timeout, self.arena is None)
            finally:
                if self.blocking is not None:
                    self.blocking(False)
        if descs is None:
            raise exc.GetTimeoutError(
                f"get() timed out after {timeout} s: {len(set(oids))} object(s) asked for, some not ready. "
                "The tasks may still finish; call get() again, or use miniray.wait() to take what is ready.")
        return descs

    def _wait_in_store(self, oids, timeout):
        store, want = self.store, set(oids)
        deadline = None if timeout is None else time.monotonic() + timeout
        event = store.watch(want)
        # a get of many objects is a burst: the CPU a poll would take is the workers', and one
        # wake-up more or less is nothing beside the batch; a get of one or two is a round trip
        if not event.is_set() and not self._await(event, deadline, spin=len(want) <= SPIN_MAX_OBJECTS):
            store.unwatch(want, event)
            return None
        if event.remaining:            # woken by a failure: only the ready ones (``get`` raises)
            store.unwatch(want, event)
            want = {o for o in want if store.ready(o)}
        return store.read_for(want, self.holder)

    def value_of(self, oid: str, desc: tuple):
        if desc[0] == "error":
            raise pickle.loads(desc[1])
        from miniray.store.serialization import deserialize
        if desc[0] == "shm":
            return deserialize(desc, self.arena, lambda: self.unpin(oid))
        if desc[0] == "fetch":
            return self._fetch(oid, desc)
        return deserialize(desc)

    def _fetch(self, oid, desc):
        """An object held by another node: pull its bytes into this node's arena (or, with no arena
        or a full one, into one private buffer), record the new copy with the head, and build the
        value on it zero-copy.  The head pinned the object for us; the value's release unpins it."""
        from miniray.cluster import transfer
        from miniray.store.serialization import buffer_views, deserialize, extent
        _, addr, off, meta_len, lens = desc[:5]
        size = extent(meta_len, lens)
        local = self._alloc_copy(size)
        try:
            into = self.arena.view(local, size) if local is not None else memoryview(bytearray(size))
            transfer.fetch(addr, off, size, into)
        except ConnectionError as err:
            if local is not None:
                self.free_block(local)
            self.unpin(oid)
            raise exc.ObjectLostError(
                f"Object {oid} could not be fetched from the node at {addr[0]}:{addr[1]}: {err}. The node "
                "holding it may have died; tasks that made it are re-run from lineage, so retry the "
                "get, or re-create the object if it came from put().") from None
        if local is None:            # a private copy: no pin needed once the bytes are here
            self.unpin(oid)
            return pickle.loads(into[:meta_len], buffers=buffer_views(into, meta_len, lens))
        copy = ("shm", local, meta_len, lens)
        if self.store is not None:               # the head's own driver
            self.store.add_copy(oid, self.node_id, copy)
        else:
            self.send([("copy", oid, self.local_desc(copy))])
        return deserialize(copy, self.arena, lambda: self.unpin(oid))

    def _alloc_copy(self, extent):
        if self.arena is None:
            return None
        try:
            return self.alloc_block(extent)
        except exc.ObjectStoreFullError:
            return None

    def alloc_block(self, size: int) -> int:
        """A block of this node's arena (the head's, or a joined node's own); ObjectStoreFullError
        when there is no room."""
        if self.store is not None:
            return self.store.alloc(size)
        if self.local_store is not None:
            off = self.local_store.alloc(size)
            if off is None:
                raise exc.ObjectStoreFullError(
                    f"This node's object store has no room for {size / 2**20:.1f} MiB. Start the node "
                    "with a larger --object-store-memory, or drop references you no longer need.")
            return off
        return self.request("alloc", size)

    def free_block(self, off: int) -> None:
        """Give back a block from ``alloc_block`` that never became an object."""
        if self.store is not None:
            with self.store.lock:
                self.store.arena.free(off)
        elif self.local_store is not None:
            self.local_store.free(off)
        else:
            self.send([("free_block", off)])

    def local_desc(self, desc: tuple) -> tuple:
        """The descriptor to report for an object this process wrote into its node's arena: a
        joined node's worker marks it ("rshm") so the head records where it lives."""
        if self.local_store is None:
            return desc
        from miniray.store.objects import block_of
        self.local_store.keep(block_of(desc))
        return ("rshm",) + desc[1:]

    def get(self, oids: list, timeout=None) -> list:
        descs = self.get_descs(oids, timeout)
        if len(descs) != len(oids) and len(descs) < len(set(oids)):   # one failed first: raise it
            for o, d in descs.items():
                if d[0] in ("shm", "fetch"):
                    self.unpin(o)
            raise pickle.loads(next(d[1] for d in descs.values() if d[0] == "error"))
        values = {}
        try:
            for o in oids:
                if o not in values:
                    d = descs[o]
                    values[o] = pickle.loads(d[1], buffers=d[2]) if d[0] == "inline" else self.value_of(o, d)
        finally:
            for o, d in descs.items():   # pins of values we never built
                if d[0] in ("shm", "fetch") and o not in values:
                    self.unpin(o)
        return [values[o] for o in oids]

    def wait(self, oids: list, num_returns: int, timeout):
        return self.request("wait", list(oids), num_returns, timeout)

    def resources(self):
        return self.request("resources")

