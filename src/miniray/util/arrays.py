"""Arrays built directly in the object store: the data exists once, from the start.

    arr = miniray.util.empty((10_000, 10_000), "float64")   # a writable view on shared memory
    arr[:] = ...                                            # fill it in place
    ref = miniray.put(arr)                                  # seal: no copy, arr becomes read-only

A ``put`` of an ordinary array copies it into the store, so while the driver still holds the original
the data exists twice.  Here the store block is allocated first, with room reserved in front of the
buffer for the pickle header that ``put`` writes at seal time (the object layout of
store/serialization.py, shifted so that its buffer lands on the array).  Dropping an unsealed array
gives its block back.
"""
from __future__ import annotations

import ctypes
import pickle
import weakref

import numpy as np

from miniray.runtime import current_runtime
from miniray.store.arena import _round

RESERVE = 4096          # bytes in front of the buffer for the pickle header; a header is ~200 bytes
_building: dict = {}    # data address -> _Block, for arrays not yet sealed


class _Block:
    def __init__(self, rt, off, nbytes):
        self.rt, self.off, self.nbytes, self.oid = rt, off, nbytes, None


def empty(shape, dtype="float64") -> np.ndarray:
    """A writable, uninitialised array living in the shared-memory store; ``put`` it when filled."""
    rt = current_runtime()
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise TypeError("miniray.util.empty() needs a plain numeric dtype; object arrays hold pointers "
                        "to private memory and cannot live in shared memory.")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = RESERVE + _round(nbytes)
    if rt.arena is None:
        raise RuntimeError("miniray.util.empty() needs a node's shared memory; this driver is connected "
                           "to a remote head. Build the array with numpy and put() it instead.")
    off = rt.alloc_block(size)
    keeper = (ctypes.c_char * size).from_buffer(rt.arena.mmap, off)
    block = _Block(rt, off, nbytes)
    arr = np.frombuffer(memoryview(keeper).cast("B")[RESERVE:RESERVE + nbytes], dtype=dtype).reshape(shape)
    _building[arr.__array_interface__["data"][0]] = block
    weakref.finalize(keeper, _release, block)
    return arr


def _release(block):
    """The last view of the block died: unpin a sealed object, or give an unsealed block back."""
    rt = block.rt
    if block.oid is not None:
        rt.unpin(block.oid)
    else:
        rt.free_block(block.off)


def is_built(value) -> bool:
    """Is ``value`` a whole, unsealed array from ``empty()``?"""
    if not isinstance(value, np.ndarray) or not _building:
        return False
    block = _building.get(value.__array_interface__["data"][0])
    return block is not None and value.nbytes == block.nbytes and value.flags.c_contiguous


def seal_if_built(rt, value, oid, site):
    """``put`` hook: store an array from ``empty()`` without copying it."""
    block = _building[value.__array_interface__["data"][0]]
    del _building[value.__array_interface__["data"][0]]
    buffers = []
    meta = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    if _round(len(meta)) > RESERVE or len(buffers) != 1:
        _building[value.__array_interface__["data"][0]] = block
        return False
    start = block.off + RESERVE - _round(len(meta))
    rt.arena.view(start, len(meta))[:] = meta
    desc = rt.local_desc(("shm", start, len(meta), (block.nbytes,), block.off))
    block.oid = oid
    value.flags.writeable = False
    if rt.store is not None:
        with rt.store.lock:
            rt.store.seal(oid, desc, (), call_site=site, pid=0)
            rt.store.pin(oid, rt.holder, +1)      # the caller's array is a live view
    else:
        rt.send([("put", oid, desc, (), site), ("pin", oid)])
    return True
