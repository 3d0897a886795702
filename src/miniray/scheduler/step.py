"""One step of the node's loop, and the messages it handles.

A step (``_step``, run under the baton by whichever thread holds it: scheduler/baton.py):

    1. serve the sockets that select reported: accept a connection, read a client's frames, read
       what a worker printed (scheduler/pool.py), drain a wake byte
    2. drain the inbox (items the driver offered, TCP connections the door authenticated)
    3. expire timed waits, check the joined nodes' heartbeats
    4. schedule: place ready calls on workers (``_schedule``, scheduler/node.py)
    5. flush every outbox to its socket (``_flush``)

Each client item is dispatched by its kind through ``_handlers`` ({kind: handler}); a request
("req", rid, what, args) through ``_requests`` ({what: handler}), whose answer goes back as
("reply", rid, ok, value).  The item kinds (transport/messages.py):

    done started submit fn refs pin unpin put copy write free_block heartbeat requeue
    handles_gone unloadable req

A connection's first item introduces it: ("hello", ...) a worker, ("hello_driver", pid) a driver
over TCP, ("hello_node", ...) a joined node's agent (scheduler/nodes.py).  A bug in one item is
reported on stderr and the node keeps serving (``_guarded``, ``handle_all``).
"""
from __future__ import annotations

import selectors
import sys
import threading

from miniray import exceptions as exc
from miniray.scheduler import state as S
from miniray.scheduler.pool import WorkerConn
from miniray.store.objects import block_of
from miniray.store.serialization import Serialized, desc_size, error_desc
from miniray.transport.framing import ConnectionClosed, FrameError


class Step:
    """Mixed into ``Node``: its step and the handlers of what clients send."""

    def _init_step(self):
        self._handlers = {
            "done": self._on_done, "started": self._on_started, "submit": self._on_submit,
            "fn": self._on_fn, "refs": self._on_refs, "pin": self._on_pin, "unpin": self._on_unpin,
            "put": self._on_put, "copy": self._on_copy, "write": self._on_write,
            "free_block": self._on_free_block, "heartbeat": self._on_heartbeat,
            "requeue": self._on_requeue, "handles_gone": self._on_handles_gone,
            "unloadable": self._unloadable, "req": self._on_req,
        }
        self._requests = {name[len("_req_"):]: getattr(self, name) for name in dir(self)
                          if name.startswith("_req_")}

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

    def _guarded(self, step, *args):
        """One stage of a step; a bug in it is reported, and the node keeps serving."""
        try:
            step(*args)
        except Exception:  # the node must outlive any single bad message or step
            self._report_internal_error()

    @staticmethod
    def _report_internal_error():
        import traceback
        sys.stderr.write("miniray node: internal error (the runtime keeps running):\n"
                         + traceback.format_exc())

    # 1-2: sockets and the inbox ------------------------------------------------------------------
    def _accept(self, listener):
        try:
            sock, _ = listener.accept()
        except BlockingIOError:          # the other thread took it
            return
        sock.setblocking(True)
        self._register(WorkerConn(sock))

    def _register(self, conn):
        self.selector.register(conn.conn.sock, selectors.EVENT_READ, lambda s, c=conn: self._read_worker(c))

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
                self._register(WorkerConn(*items[0][1:]))
                continue
            self.handle_all(client, items)

    def _read_worker(self, wc: WorkerConn):
        try:
            frames = wc.reader.feed()
        except ConnectionClosed as err:
            if isinstance(err, FrameError):     # one per connection, and only after the handshake
                sys.stderr.write(f"miniray node: {err} (peer {wc.holder or 'not yet introduced'})\n")
            self.worker_died(wc)
            return
        for items in frames:
            if wc.holder is not None:          # past the hello: the hot path
                self.handle_all(wc, items)
                continue
            for item in items:                 # the connection introduces itself
                if item[0] == "hello":
                    self._worker_hello(wc, *item[1:])
                elif item[0] == "hello_driver":
                    self._driver_hello(wc, item[1])
                elif item[0] == "hello_node":
                    self.nodes.hello(wc, *item[1:])
                else:
                    self._guarded(self._handle, wc, item)

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
        self._drop_holder(wc.holder)
        self._drop_waiters_of(wc)
        self.actors.owner_gone(wc.holder)

    def _drop_holder(self, holder):
        """A client is gone: the blocks it was handed and never sealed, its refs and its pins."""
        for off in self.allocs.pop(holder, ()):
            self.store.arena.free(off)
        self.store.drop_holder(holder)

    # 5: sending ----------------------------------------------------------------------------------
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

    # Client items: {kind: handler} ----------------------------------------------------------------
    def handle_all(self, client, items):
        """Handle a batch of items; a bug in one is reported, and the rest are still handled."""
        handlers = self._handlers
        start = 0
        while start < len(items):
            try:
                for start in range(start, len(items)):
                    item = items[start]
                    handlers[item[0]](client, item)
                return
            except Exception:  # the node must outlive any single bad message
                self._report_bad_item(client, items[start])
                start += 1

    def _handle(self, client, item):
        self._handlers[item[0]](client, item)

    def _report_bad_item(self, client, item):
        kind = item[0] if isinstance(item, tuple) and item else item
        if kind in self._handlers:
            self._report_internal_error()
        else:
            sys.stderr.write(f"miniray node: dropped an item of unknown kind {kind!r} from "
                             f"{getattr(client, 'holder', None)}\n")

    def _on_done(self, client, item):          # ("done", tid, Result[, started])
        if len(item) > 3:              # it started and ended within one batch from the worker
            self._started(client, item[1], item[2].start)
        self._done(client, item[1], item[2])

    def _on_started(self, client, item):       # ("started", tid, ts)
        self._started(client, item[1], item[2])

    def _on_submit(self, client, item):        # ("submit", spec, ts)
        self.submit(item[1], item[2])

    def _on_fn(self, client, item):            # ("fn", fn_id, pickled function)
        self.functions[item[1]] = item[2]

    def _on_refs(self, client, item):          # ("refs", {oid: delta})
        self.store.add_refs(item[1], client.holder)

    def _on_pin(self, client, item):           # ("pin", oid)
        self.store.pin(item[1], client.holder, +1)

    def _on_unpin(self, client, item):         # ("unpin", [oid])
        for oid in item[1]:
            self.store.pin(oid, client.holder, -1)

    def _on_put(self, client, item):           # ("put", oid, desc, contained, call_site)
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

    def _on_copy(self, client, item):          # ("copy", oid, desc): a reader pulled it to its node
        _, oid, desc = item
        if desc[0] == "shm":
            self.allocs.get(client.holder, set()).discard(block_of(desc))
        node, desc = self._where(client, desc)
        self.store.add_copy(oid, node, desc)

    def _on_write(self, client, item):         # ("write", off, data): a piece streamed from another node
        _, off, data = item
        used = self.store.arena._used
        if not any(b <= off and off + len(data) <= b + used.get(b, 0) for b in self.allocs.get(client.holder, ())):
            raise ValueError(f"{client.holder} wrote outside the blocks it was given")
        self.store.arena.view(off, len(data))[:] = data

    def _on_free_block(self, client, item):    # ("free_block", off): a block it will not seal
        self.allocs.get(client.holder, set()).discard(item[1])
        self.store.arena.free(item[1])

    def _on_heartbeat(self, client, item):     # ("heartbeat"[, used, capacity]) from a node's agent
        self.nodes.heartbeat(client, item)

    def _on_requeue(self, client, item):       # ("requeue", [tid]): calls it will not start
        S.hand_back(self.state, client.holder, item[1])

    def _on_handles_gone(self, client, item):  # ("handles_gone", actor_id)
        self.actors.handles_gone(item[1])

    def _unloadable(self, client, item):       # ("unloadable", why, inner)
        """An item this process could not unpickle (transport/unloadable.py): a call fails alone,
        a request gets the error as its answer."""
        _, why, inner = item
        err = exc.RaySystemError(why)
        if inner is not None and inner[0] == "submit":
            err = exc.RaySystemError(f"{inner[1].name} could not be scheduled: {why}")
            for oid in inner[1].returns:
                self.store.seal(oid, error_desc(err), failed=True)
        elif inner is not None and inner[0] == "req":
            client.deliver([("reply", inner[1], False, err)])
        else:
            sys.stderr.write(f"miniray node: dropped a message from {client.holder}: {why}\n")

    def _on_req(self, client, item):           # ("req", rid, what, args): answered by ``_req_<what>``
        _, rid, what, args = item
        try:
            self._requests[what](client, rid, *args)
        except Exception as err:  # a bad request fails that request, never the node
            if what not in self._requests:
                err = ValueError(f"miniray node: unknown request {what!r}")
            client.deliver([("reply", rid, False, err)])

    # Requests answered at once ---------------------------------------------------------------------
    def _req_alloc(self, client, rid, size):
        off = self.store.alloc(size)
        self.allocs.setdefault(client.holder, set()).add(off)
        client.deliver([("reply", rid, True, off)])

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
