"""The one runtime object per process: ids, ref counts, put/get/wait, submit (STYLE 9).

    api.py / remote_function.py / actor.py
                 │ api.current_runtime()  (refs._current)
                 ▼
            Runtime  ── ids, ref counts, put/get/wait, submit ──► transport
                                                                 │
         driver (local mode): LocalTransport ── Node.offer ──► a step of the Node's loop (same process)
         worker:              SocketTransport ── node.sock ──► Node (the driver's or the head's process)
         worker of a joined node, driver joined over TCP (cluster/client.py):
                              SocketTransport ── TCP ──────► the head's Node

A process's role is fixed when its Runtime is built, by what it is given: the way it reaches
objects (``access``: one of access.py's four kinds), its transport, for a worker its executor
(``worker``: the current call's context, the hand-back before a blocking get), for the local driver
the node, store and event log.  The methods the hot path calls are chosen then, once (``submit``,
``add_local_ref``, ``put_serialized``, ``write_object``), so no call asks what this process is.
Who builds which: ``boot.local_driver`` (init()), ``worker/main.py``, ``cluster/client.connect``.

State owned: ``_counts`` (oid → live ObjectRef instances in this process), ``_pending`` (ref
changes and unpins not yet sent, in order; the driver's new refs go to its store at once),
``fns`` (functions already registered with the node), the id counter.  ``close`` stops what the
builder started (``closer``: for the local driver node thread, workers, arena, session directory).
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

SPIN_MAX_OBJECTS = 2
_LOOKING = {"list_objects", "summary", "events", "events_len", "resources"}

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


class Transport:
    """What both transports share: the requests sent and not yet answered, and reading replies."""

    def __init__(self):
        self._futures: dict[int, Future] = {}

    def expect(self, rid):
        fut = self._futures[rid] = Future()
        return fut

    def resolve(self, rid, ok, value):
        fut = self._futures.pop(rid, None)
        if fut is not None:
            fut.set_result(value) if ok else fut.set_exception(value)
        return fut is not None

    def take_replies(self, items) -> None:
        """The ("reply", rid, ok, value) items among ``items`` answer their requests."""
        for item in items:
            if item[0] == "reply":
                self.resolve(item[1], item[2], item[3])

    def fail_all(self, err) -> None:
        """Every request still waiting raises ``err`` (the other side is gone)."""
        for rid in list(self._futures):
            self.resolve(rid, False, err)


class LocalTransport(Transport):
    """The driver talking to the Node thread in its own process.  It is also the node's client for
    the driver (``holder``, ``deliver``): the node hands replies straight back to it."""
    holder = "driver"
    pid = None

    def __init__(self, node):
        super().__init__()
        self.node = node
        self.send = functools.partial(node.offer, self)    # ``send``, one call less per message

    deliver = Transport.take_replies


class SocketTransport(Transport):
    """A worker, or a driver joined over TCP, talking to its node over a connection; a reader
    thread (worker/main.py ``Inbox``, cluster/client.py) hands it the replies."""

    def __init__(self, conn):
        super().__init__()
        self.conn = conn
        self.send = conn.send


class RemoteEventLog:
    """The node's event log, for a process with none of its own: read over requests (the magics
    and timeline() of a joined driver); ``emit`` from a library here logs nothing."""

    def __init__(self, rt):
        self.rt = rt

    def since(self, seq: int = 0):
        return self.rt.request("events", seq)

    def __len__(self):
        return self.rt.request("events_len")

    def emit(self, kind, **fields) -> None:
        pass


class Runtime:
    def __init__(self, transport, holder: str, *, node_id: str, job_id: str, arena, inline_max: int,
                 access, worker=None, node=None, store=None, events=None, session_dir: str = "",
                 address=None, node_ip: str = "127.0.0.1", namespace: str = "default", job_env=None,
                 closer=None):
        """``access`` and ``worker`` are called with the runtime (they call back into it):
        ``access(rt)`` gives the object access (access.py), ``worker(rt)`` a worker's executor."""
        self.transport, self.holder, self.node_id, self.job_id = transport, holder, node_id, job_id
        self.arena, self.inline_max, self.node, self.store = arena, inline_max, node, store
        self.session_dir, self.address, self.node_ip = session_dir, address, node_ip
        self._prefix = os.urandom(5).hex()
        self._ids = itertools.count(1)
        self._rids = itertools.count(1)
        self._lock = threading.RLock()
        self._counts: dict[str, int] = {}
        self._pending: list = []      # ("refs", oid, -1) / ("unpin", oid), in order
        self.fns: set = set()            # function ids sent to the node already
        self.namespace = namespace
        self.job_env: dict = dict(job_env or {})   # init(runtime_env={"env_vars": ...}): every task and actor
        self.lost = ""                   # a remote driver: why the head is unreachable
        self.self_calls: set = set()     # worker: task ids of calls it made to its own actor
        self._closer = closer
        self.events = events if events is not None else RemoteEventLog(self)
        self.access = access(self)
        self.put_serialized = self.access.put          # the methods below, chosen once
        self.write_object = self.access.write
        self.alloc_block, self.free_block = self.access.alloc, self.access.free
        self.local_desc = self.access.desc
        self.add_local_ref = self._add_ref_in_store if store is not None else self._add_ref_pending
        if node is not None:
            self.request = self._request_driving
        self.worker = worker(self) if worker is not None else None
        if self.worker is None:
            self.blocking = None
        else:                            # a worker: calls to its own sequential actor are watched
            self.submit, self.context_of = self._submit_from_call, self.worker.context
            self.blocking, self.one_at_a_time = self.worker.blocking, self.worker.one_at_a_time

    def context_of(self):
        """The current call's context (worker/executor.py ``CallContext``); None outside a call."""
        return None

    def close(self) -> None:
        """Stop what the builder of this runtime started (``closer``)."""
        if self._closer is not None:
            self._closer(self)

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

    def _ask(self, kind: str, args) -> Future:
        if self.lost:
            raise exc.RaySystemError(self.lost)
        rid = next(self._rids)
        fut = self.transport.expect(rid)
        self.send([("req", rid, kind, args)], drops_first=kind in _LOOKING)
        return fut

    def request(self, kind: str, *args, timeout=None):
        """Ask the node and wait for its answer (``request`` of a process with no node of its own)."""
        return self._ask(kind, args).result(timeout)

    def _request_driving(self, kind: str, *args, timeout=None):
        """The local driver's ``request``: runs the node's loop here until the answer comes."""
        fut = self._ask(kind, args)
        if not fut.done():
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
    # ``add_local_ref`` is one of these two (``__init__``); a first ref is told before it counts:
    # a Ctrl-C between the two may leak a ref, never free one early
    def _add_ref_in_store(self, oid: str) -> None:
        """The local driver: its store takes the new ref at once."""
        with self._lock:
            n = self._counts.get(oid, 0)
            if n == 0:
                self.store.add_ref_soon(oid, self.holder)
            self._counts[oid] = n + 1

    def _add_ref_pending(self, oid: str) -> None:
        """Any other process: the new ref goes to the node with the next message."""
        with self._lock:
            n = self._counts.get(oid, 0)
            if n == 0:
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
                self.node.handle_all(self.transport, before + after)
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
        self.send([("submit", spec, time.time())])

    def _submit_from_call(self, spec) -> None:
        """A worker's ``submit``: remember calls to its own sequential actor (``_check_self_wait``)."""
        if spec.type == "actor_method":
            ctx = self.context_of()
            if ctx is not None and ctx.actor_id == spec.actor_id and self.one_at_a_time():
                self.self_calls.add(spec.task_id)
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
            from miniray.built import is_built, seal_if_built
            if is_built(value):
                ref = ObjectRef(oid)
                seal_if_built(self, value, oid, site)
                return ref
        ser = serialize(value)
        ref = ObjectRef(oid)
        self.put_serialized(oid, ser, site)
        return ref

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
        local = self.access.alloc_copy(size)
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
        self.access.record_copy(oid, copy)
        return deserialize(copy, self.arena, lambda: self.unpin(oid))

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

