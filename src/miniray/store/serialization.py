"""Values to bytes and back: pickle protocol 5, with out-of-band buffers written straight to the store.

    serialize(value) ──► Serialized(meta, buffers, contained_refs)
        │ small (≤ INLINE_MAX)                      │ large
        ▼                                           ▼
    ("inline", meta, [bytes...])            write_shm(arena, offset) ─► ("shm", offset, meta_len, lens)
    or just meta (a call's scalar arguments)
        │                                           │
        └──────────► deserialize(desc, arena, on_release) ◄──┘
                     shm buffers come back as read-only views on the arena (zero copy); a keeper
                     object owns them and calls on_release() once the last view is gone.

Byte layout of an object in the arena, at a 64-byte aligned offset:

    [meta: meta_len bytes][pad to 64][buffer 0][pad to 64][buffer 1] ... [buffer n-1]

Refs pickled inside a value are collected (``contained``) so the store can keep them alive for as long
as the containing object lives.
"""
from __future__ import annotations

import ctypes
import io
import os
import pickle
import sys
import sysconfig
import types
import weakref
from dataclasses import dataclass, field

import cloudpickle

from miniray.refs import capture_refs
from miniray.store.arena import ALIGN, _round

INLINE_MAX = 100 * 1024  # Ray's cut-off for objects kept out of shared memory


@dataclass
class Serialized:
    meta: bytes
    buffers: list = field(default_factory=list)
    contained: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.meta) + sum(b.nbytes for b in self.buffers)

    @property
    def shm_size(self) -> int:
        size = _round(len(self.meta))
        for b in self.buffers:
            size += _round(b.nbytes)
        return size

    def inline(self) -> tuple:
        return ("inline", self.meta, [bytes(b) for b in self.buffers])

    def write_shm(self, arena, offset: int) -> tuple:
        """Copy into the arena block at ``offset`` (``shm_size`` bytes); return the descriptor."""
        pos = len(self.meta)
        arena.write(offset, self.meta)
        lens = []
        for b in self.buffers:
            pos = _round(pos)
            arena.write(offset + pos, b)
            lens.append(b.nbytes)
            pos += b.nbytes
        return ("shm", offset, len(self.meta), tuple(lens))


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, but code objects keep their file name, so remote tracebacks name the user's file
    (cloudpickle 3 replaces it with "<dynamic-code>")."""

    def reducer_override(self, obj):
        if type(obj) is types.CodeType:
            ctor, args = cloudpickle.cloudpickle._code_reduce(obj)
            return ctor, tuple(obj.co_filename if a == "<dynamic-code>" else a for a in args)
        return super().reducer_override(obj)


def dumps(obj, protocol=5, buffer_callback=None) -> bytes:
    """Pickle by value where needed (functions, classes and lambdas from ``__main__`` or a notebook)."""
    f = io.BytesIO()
    _Pickler(f, protocol=protocol, buffer_callback=buffer_callback).dump(obj)
    return f.getvalue()


def dumps_code(obj, ship_module: bool) -> bytes:
    """Pickle a function or class.  ``ship_module``: the workers may not see the caller's files
    (a driver joined to a cluster), so a module that is not an installed package (a test file, a
    script next to the notebook) travels by value, as ``__main__`` always does."""
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    path = getattr(module, "__file__", None) or ""
    local = ship_module and module is not None and path and not any(
        path.startswith(p) for p in _INSTALLED) and module.__name__ not in ("__main__", "miniray")
    if local:
        cloudpickle.register_pickle_by_value(module)
    try:
        return dumps(obj)
    finally:
        if local:
            cloudpickle.unregister_pickle_by_value(module)


_INSTALLED = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
                   | {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})


SCALARS = frozenset({int, float, str, bytes, bool, type(None)})   # builtin atoms: plain pickle


def _plain(value, depth: int = 0) -> bool:
    """Small data of builtin types only: it holds no ObjectRef, no buffer and no code, so plain
    pickle is enough (most task arguments and results; checking is cheaper than the general path)."""
    t = type(value)
    if t in SCALARS:
        return True
    if (t is not tuple and t is not list and t is not dict) or depth > 2 or len(value) > 16:
        return False
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or (type(v) not in SCALARS and not _plain(v, depth + 1)):
                return False
        return True
    for v in value:
        if type(v) not in SCALARS and not _plain(v, depth + 1):
            return False
    return True


def serialize(value) -> Serialized:
    if _plain(value):
        return Serialized(pickle.dumps(value, protocol=5))
    buffers: list = []
    with capture_refs() as contained:
        try:
            meta = pickle.dumps(value, protocol=5, buffer_callback=lambda b: buffers.append(b.raw()))
            if b"__main__" in meta or b"<lambda>" in meta:
                raise pickle.PicklingError("defined in __main__: pickle by value")
        except (pickle.PicklingError, AttributeError, TypeError):
            buffers.clear()
            contained.clear()
            meta = dumps(value, protocol=5, buffer_callback=lambda b: buffers.append(b.raw()))
    return Serialized(meta, [memoryview(b).cast("B") for b in buffers], list(contained))


def desc_size(desc: tuple) -> int:
    if desc[0] == "inline":
        return len(desc[1]) + sum(map(len, desc[2])) if desc[2] else len(desc[1])
    return desc[2] + sum(desc[3])   # ("shm", offset, meta_len, buffer lengths[, block offset])


def extent(meta_len: int, lens) -> int:
    """Bytes an shm object spans: its meta, then each buffer at a 64-byte boundary."""
    return _round(meta_len) + sum(_round(n) for n in lens)


def buffer_views(whole: memoryview, meta_len: int, lens) -> list:
    """Read-only views of an object's buffers inside ``whole``, which starts at its meta."""
    buffers, pos = [], meta_len
    for n in lens:
        pos = _round(pos)
        buffers.append(whole[pos:pos + n].toreadonly())
        pos += n
    return buffers


def error_desc(err: BaseException) -> tuple:
    """The descriptor of an error to raise at ``get``."""
    return ("error", pickle.dumps(err))


def deserialize(desc: tuple | bytes, arena=None, on_release=None):
    """The value a descriptor stands for; for "shm", zero-copy read-only views on ``arena``.
    Bare bytes are pickled data with no buffers (``pack_args``' descriptor for scalar arguments)."""
    if type(desc) is bytes:
        return pickle.loads(desc)
    if desc[0] == "inline":
        return pickle.loads(desc[1], buffers=desc[2])
    offset, meta_len, lens = desc[1], desc[2], desc[3]
    keeper = (ctypes.c_char * max(extent(meta_len, lens), 1)).from_buffer(arena.mmap, offset)
    whole = memoryview(keeper).cast("B")
    buffers = buffer_views(whole, meta_len, lens)
    meta = bytes(whole[:meta_len])
    whole.release()
    if on_release is not None:
        weakref.finalize(keeper, on_release)
    del keeper
    return pickle.loads(meta, buffers=buffers)


assert ALIGN == 64
