"""Arrays built in place in the object store (``miniray.util.empty``): the blocks not yet sealed,
and the seal ``Runtime.put`` does for them without a copy (the layout is util/arrays.py's).

State: ``building`` (data address -> Block, for arrays from ``empty()`` not yet sealed).  Here, low
in the layers, so that ``put`` can ask about an array without importing a library.
"""
from __future__ import annotations

import pickle

from miniray.store.arena import _round

RESERVE = 4096          # bytes in front of the buffer for the pickle header; a header is ~200 bytes
building: dict = {}     # data address -> Block, for arrays not yet sealed


class Block:
    def __init__(self, rt, off, nbytes):
        self.rt, self.off, self.nbytes, self.oid = rt, off, nbytes, None


def release(block):
    """The last view of the block died: unpin a sealed object, or give an unsealed block back."""
    rt = block.rt
    if block.oid is not None:
        rt.unpin(block.oid)
    else:
        rt.free_block(block.off)


def is_built(value) -> bool:
    """Is ``value`` a whole, unsealed array from ``empty()``?"""
    if not building:
        return False
    import numpy as np          # loaded already: only numpy values are asked about
    if not isinstance(value, np.ndarray):
        return False
    block = building.get(value.__array_interface__["data"][0])
    return block is not None and value.nbytes == block.nbytes and value.flags.c_contiguous


def seal_if_built(rt, value, oid, site):
    """``put`` hook: store an array from ``empty()`` without copying it."""
    block = building[value.__array_interface__["data"][0]]
    del building[value.__array_interface__["data"][0]]
    buffers = []
    meta = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    if _round(len(meta)) > RESERVE or len(buffers) != 1:
        building[value.__array_interface__["data"][0]] = block
        return False
    start = block.off + RESERVE - _round(len(meta))
    rt.arena.view(start, len(meta))[:] = meta
    desc = rt.local_desc(("shm", start, len(meta), (block.nbytes,), block.off))
    block.oid = oid
    value.flags.writeable = False
    rt.access.seal_pinned(oid, desc, site)      # pinned: the caller's array is a live view
    return True
