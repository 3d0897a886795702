"""ObjectRef: a handle on a value that exists (or will exist) in the object store.

An ObjectRef is only an id.  It pickles by id, so refs can travel inside arguments, results and other
objects, and it counts itself: every live ObjectRef instance in a process adds one to that process's
count for the id, and the runtime reports each 0→1 and 1→0 change to the store, which frees the value
once no process, pending task or containing object needs it.

The value's own life (pending → ready/failed → spilled → freed) is a state machine kept by the store
(``store/objects.py``), not by the ref: a ref is a reader's ticket, not the value.
"""
from __future__ import annotations

import concurrent.futures
import threading
import types

from miniray import runtime as _runtime

_capture = threading.local()


class ObjectRef:
    __slots__ = ("_id", "_counted", "__weakref__")

    def __init__(self, object_id: str, *, _count: bool = True):
        self._id = object_id
        self._counted = False
        if _count:
            rt = _runtime._current
            if rt is not None:
                rt.add_local_ref(object_id)
                self._counted = True

    def __class_getitem__(cls, item):       # ``ObjectRef[int]`` in annotations (miniray.types)
        return types.GenericAlias(cls, item)

    # -- identity -----------------------------------------------------------------------------
    def hex(self) -> str:
        return self._id

    def binary(self) -> bytes:
        return bytes.fromhex(self._id)

    def task_id(self) -> str:
        return self._id[:-2]

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __repr__(self) -> str:
        return f"ObjectRef({self._id})"

    # -- lifetime -----------------------------------------------------------------------------
    def __del__(self):
        if self._counted:
            rt = _runtime._current
            if rt is not None:
                rt.remove_local_ref(self._id)

    def __reduce__(self):
        captured = getattr(_capture, "refs", None)
        if captured is not None:
            captured.append(self._id)
        return (_rebuild, (self._id,))

    def __copy__(self):
        return ObjectRef(self._id)

    def __deepcopy__(self, memo):
        return ObjectRef(self._id)

    # -- waiting ------------------------------------------------------------------------------
    def future(self) -> concurrent.futures.Future:
        """A ``concurrent.futures.Future`` that completes with the value (or the task's error)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def fill():
            from miniray import api
            try:
                fut.set_result(api.get(self))
            except BaseException as exc:  # the task's own error goes to the future's waiter
                fut.set_exception(exc)

        threading.Thread(target=fill, daemon=True, name=f"miniray-future-{self._id[:8]}").start()
        return fut

    def as_future(self, _internal=False):
        """An ``asyncio.Future`` of the current event loop that completes with the value."""
        import asyncio
        return asyncio.wrap_future(self.future())

    def _on_completed(self, callback) -> None:
        """Call ``callback(value)`` once the value is ready; with the task's error instead of the
        value if it failed (as Ray).  It runs on a background thread."""
        self.future().add_done_callback(lambda f: callback(f.exception() or f.result()))

    def __await__(self):
        import asyncio
        return asyncio.wrap_future(self.future()).__await__()


def _rebuild(object_id: str) -> ObjectRef:
    return ObjectRef(object_id)


class capture_refs:
    """Context manager: collect the ids of every ObjectRef pickled inside the block."""

    def __enter__(self) -> list[str]:
        self._outer = getattr(_capture, "refs", None)
        _capture.refs = []
        return _capture.refs

    def __exit__(self, *exc):
        _capture.refs = self._outer
        return False
