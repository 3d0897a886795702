"""The node's side of ``get`` and ``wait`` for socket clients: a store Watch that answers them.

There is one waiting mechanism for objects: the store's ``Watch`` (store/objects.py), set by
``seal`` once the objects are ready.  The driver in the node's process waits on one itself
(``Runtime._wait_in_store``); for a client over a socket (a worker, a driver over TCP) the node
makes one whose ``on_set`` answers the client:

    ("req", rid, "get"|"wait", (oids, ..., timeout)) ──► _wait_for ──► store.watch(oids, on_set)
        seal of the last object needed (or of a failed one, for a get) ──► Watch.set ──► _answer
        a timeout passed (``timed``, looked at in each step) ────────────────────────► _answer
    _answer ──► ("reply", rid, True, descs | ready oids | None) ──► client.deliver

State: ``open_waits`` (the requests not answered yet, to drop a client's when it goes) and
``timed`` (those with a deadline).  A worker blocked in ``get`` gives its resources back meanwhile
(``S.worker_blocked``), so nested calls can run; they are taken again when it is answered.
"""
from __future__ import annotations

import threading
import time

from miniray.scheduler import state as S


class Waiter:
    """A ``get`` or ``wait`` request of a socket client, and the store Watch that answers it."""
    __slots__ = ("client", "rid", "kind", "oids", "deadline", "inline", "watch", "answered", "blocked")

    def __init__(self, client, rid, kind, oids, deadline, inline):
        self.client, self.rid, self.kind, self.oids = client, rid, kind, oids
        self.deadline, self.inline = deadline, inline
        self.watch, self.answered, self.blocked = None, False, False


class Waiters:
    """Mixed into ``Node``: the "get" and "wait" requests and their answers."""

    def _init_waiters(self):
        self.open_waits: dict = {}      # Waiter -> None, in arrival order
        self.timed: list = []

    def _req_get(self, client, rid, oids, timeout, inline=False):
        self._wait_for(client, rid, "get", list(oids), len(set(oids)), timeout, inline)

    def _req_wait(self, client, rid, oids, k, timeout):
        self._wait_for(client, rid, "wait", list(oids), k, timeout)

    def _wait_for(self, client, rid, kind, oids, k, timeout, inline=False):
        w = Waiter(client, rid, kind, oids, None if timeout is None else time.monotonic() + timeout, inline)
        want = set(oids)
        self.open_waits[w] = None
        w.watch = self.store.watch(want, slack=len(want) - k if kind == "wait" else 0,
                                   fail_fast=kind == "get", on_set=lambda watch: self._answer(w, watch))
        if w.answered:                 # ready already: answered within ``watch``
            return
        if w.deadline is not None:
            self.timed.append(w)
            if threading.get_ident() != self.thread.ident:
                self.wake()          # a step on another thread: the node thread's sleep may be too long
        if kind == "get" and client.holder in self.state.workers:
            S.worker_blocked(self.state, client.holder)
            w.blocked = True

    def _answer(self, w, watch, timed_out=False):
        if w.answered:
            return
        w.answered, w.watch = True, watch
        self.open_waits.pop(w, None)
        client, missing = w.client, watch.remaining
        if missing:
            self.store.unwatch(missing, watch)
        if w.kind == "get":
            node = None if w.inline else (client.home if getattr(client, "remote", False) else self.node_id)
            value = None if timed_out or watch.aborted else \
                self.store.read_for(set(w.oids) - missing, client.holder, node)
            if w.blocked:
                S.worker_unblocked(self.state, client.holder)
        else:
            value = [o for o in w.oids if o not in missing]
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
                self._answer(w, w.watch, timed_out=True)
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
        """The client is gone: its requests are answered by nobody, and stop watching."""
        for w in [w for w in self.open_waits if w.client is client]:
            w.answered = True
            self.open_waits.pop(w, None)
            if w.watch is not None:
                self.store.unwatch(set(w.oids), w.watch)
