"""The node's waiters: ``get`` and ``wait`` requests not yet answered.

A client (a worker, a driver over TCP, or the in-process driver through ``LocalClient``) asks
("req", rid, "get"|"wait", (oids, ..., timeout)).  The answer goes back as ("reply", rid, True,
value) through the client's ``deliver``, once the objects are ready:

    _wait_for ──all ready / one failed (get) / k ready (wait)──► _answer ──► client.deliver
        │
        └─ otherwise: a Waiter under each missing oid ──store.on_ready(oid)──► _object_arrived
                      and, with a timeout, in ``timed`` ──deadline passed──► _expire_waiters

State: ``waiters`` (oid → [Waiter] still missing it) and ``timed`` (waiters with a deadline).  A
worker blocked in ``get`` gives its resources back meanwhile (``S.worker_blocked``), so nested calls
can run; they are taken again when it is answered.
"""
from __future__ import annotations

import threading
import time

from miniray.scheduler import state as S


class Waiter:
    """A ``get`` or ``wait`` request not yet answered: ``missing`` shrinks as objects arrive."""
    __slots__ = ("client", "rid", "kind", "oids", "k", "deadline", "missing", "answered", "inline")

    def __init__(self, client, rid, kind, oids, k, deadline):
        self.client, self.rid, self.kind, self.oids, self.k = client, rid, kind, oids, k
        self.deadline, self.missing, self.answered = deadline, set(), False

    def satisfied(self) -> bool:
        return len(set(self.oids)) - len(self.missing) >= self.k if self.kind == "wait" else not self.missing


class Waiters:
    """Mixed into ``Node``: the "get" and "wait" requests and their answers."""

    def _init_waiters(self):
        self.waiters: dict[str, list] = {}        # oid -> [Waiter] of gets and waits not yet answered
        self.timed: list = []

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
