"""How a process reaches the bytes of objects: one of four kinds, chosen once when its runtime is built.

    kind        who                                            a value it makes goes ...
    InStore     the local driver (the node runs in its         into the store directly
                process)
    HeadArena   a worker on the head's machine; a driver       into a block of the head's arena it asked
                joined on that machine (it maps the arena)     the node for ("alloc"), then ("put", desc)
    NodeArena   a worker of a joined node                      into its node's own arena (nodestore.py),
                                                               reported as ("rshm", ...); when the node
                                                               is full, streamed to the head's store
    NoArena     a driver joined from another machine, a        streamed into the head's store in 4 MiB
                joined node's worker with no arena             pieces (``send_to_head_store``)

Each kind answers the same questions, so ``Runtime`` never asks which one it has: ``put`` (a value
serialized in this process becomes object ``oid``), ``write`` (the descriptor of a result, for the
worker's "done"), ``alloc``/``free`` (a block of this node's arena, for a copy fetched from another
node or an array built in place, util/arrays.py), ``record_copy`` (tell the head about such a copy),
``desc`` (the descriptor to report for a block written here) and ``seal_pinned`` (an array built
in place becomes an object).  No state of their own beyond
what they are given; all calls come from the runtime of this process.
"""
from __future__ import annotations

import os

from miniray import exceptions as exc
from miniray.store.arena import _round


class Access:
    """What the kinds share; a kind fills in ``write_large``, ``alloc`` and ``free``."""

    def __init__(self, rt):
        self.rt, self.arena, self.inline_max = rt, rt.arena, rt.inline_max

    def put(self, oid: str, ser, site: str) -> None:
        self.rt.send([("put", oid, self.write(ser), ser.contained, site)])

    def write(self, ser) -> tuple:
        """Where a value this process made goes, as the descriptor the head will record."""
        if ser.size <= self.inline_max:
            return ser.inline()
        return self.write_large(ser)

    def write_large(self, ser) -> tuple:
        off = self.alloc(ser.shm_size)
        return self.desc(ser.write_shm(self.arena, off))

    def alloc_copy(self, size: int):
        """A block for a copy of another node's object, or None (then a private buffer holds it)."""
        try:
            return self.alloc(size)
        except exc.ObjectStoreFullError:
            return None

    def record_copy(self, oid: str, copy: tuple) -> None:
        self.rt.send([("copy", oid, self.desc(copy))])

    def desc(self, desc: tuple) -> tuple:
        return desc

    def seal_pinned(self, oid: str, desc: tuple, site: str) -> None:
        """An array built in place (built.py) becomes object ``oid``, pinned by this process."""
        self.rt.send([("put", oid, desc, (), site), ("pin", oid)])


class InStore(Access):
    """The local driver: the store is in this process."""

    def __init__(self, rt, store):
        super().__init__(rt)
        self.store, self.pid = store, os.getpid()

    def put(self, oid, ser, site):
        if ser.size > self.inline_max:  # refs dropped since the last message go first: a loop of
            self.rt.reclaim()           # ``r = put(big)`` reuses one block, warm, instead of several
        self.store.put_serialized(oid, ser, self.inline_max, call_site=site, pid=self.pid)

    def alloc(self, size: int) -> int:
        return self.store.alloc(size)

    def free(self, off: int) -> None:
        with self.store.lock:
            self.store.arena.free(off)

    def record_copy(self, oid, copy):
        self.store.add_copy(oid, self.rt.node_id, copy)

    def seal_pinned(self, oid, desc, site):
        with self.store.lock:
            self.store.seal(oid, desc, (), call_site=site, pid=0)
            self.store.pin(oid, self.rt.holder, +1)


class HeadArena(Access):
    """Maps the head's arena; blocks come from the head's node ("alloc" answers an offset)."""

    def alloc(self, size: int) -> int:
        return self.rt.request("alloc", size)

    def free(self, off: int) -> None:
        self.rt.send([("free_block", off)])


class NodeArena(Access):
    """A joined node's worker: blocks come from its node's own store over ``store.sock``."""

    def __init__(self, rt, local_store):
        super().__init__(rt)
        self.local_store = local_store

    def write_large(self, ser):
        try:
            return super().write_large(ser)
        except exc.ObjectStoreFullError:        # this node is full: the head's store spills
            return send_to_head_store(self.rt, ser)

    def alloc(self, size: int) -> int:
        off = self.local_store.alloc(size)
        if off is None:
            raise exc.ObjectStoreFullError(
                f"This node's object store has no room for {size / 2**20:.1f} MiB. Start the node "
                "with a larger --object-store-memory, or drop references you no longer need.")
        return off

    def free(self, off: int) -> None:
        self.local_store.free(off)

    def desc(self, desc):
        """Marked ("rshm") so the head records that the object lives on this node."""
        from miniray.store.objects import block_of
        self.local_store.keep(block_of(desc))
        return ("rshm",) + desc[1:]


class NoArena(Access):
    """No arena mapped here: values go to the head's store, fetched copies into private memory."""

    def write_large(self, ser):
        return send_to_head_store(self.rt, ser)

    def alloc(self, size: int) -> int:
        raise RuntimeError("This process maps no node's shared memory (a driver joined from another "
                           "machine): build the value with numpy and put() it instead.")

    def alloc_copy(self, size):
        return None

    def free(self, off: int) -> None:
        self.rt.send([("free_block", off)])


def send_to_head_store(rt, ser) -> tuple:
    """For a process that cannot map the head's arena: reserve a block there, then send the
    object in 4 MiB pieces written straight into it, so no process holds the whole thing twice.
    Byte layout as in store/serialization.py: meta, then each buffer at a 64-byte boundary."""
    off = rt.request("alloc", ser.shm_size)
    pieces, pos = [(0, memoryview(ser.meta))], len(ser.meta)
    for b in ser.buffers:
        pos = _round(pos)
        pieces.append((pos, b))
        pos += b.nbytes
    chunk = 4 << 20
    for start, mv in pieces:
        for i in range(0, mv.nbytes, chunk):
            rt.send([("write", off + start + i, bytes(mv[i:i + chunk]))])
    return ("shm", off, len(ser.meta), tuple(b.nbytes for b in ser.buffers))
