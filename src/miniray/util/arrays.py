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
import weakref

import numpy as np

from miniray.api import current_runtime
from miniray.built import RESERVE, Block, building, release
from miniray.store.arena import _round


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
    block = Block(rt, off, nbytes)
    arr = np.frombuffer(memoryview(keeper).cast("B")[RESERVE:RESERVE + nbytes], dtype=dtype).reshape(shape)
    building[arr.__array_interface__["data"][0]] = block
    weakref.finalize(keeper, release, block)
    return arr
