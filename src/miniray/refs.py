"""ObjectRef: a handle on a value that exists (or will exist) in the object store.

An ObjectRef is only an id.  It pickles by id, so refs can travel inside arguments, results and other
objects, and it counts itself: every live ObjectRef instance in a process adds one to that process's
count for the id, and the runtime reports each 0→1 and 1→0 change to the store, which frees the value
once no process, pending task or containing object needs it.

The value's own life (pending → ready/failed → spilled → freed) is a state machine kept by the store
(``store/objects.py``), not by the ref: a ref is a reader's ticket, not the value.

This module is low in the layers (exceptions → refs → transport → ...), so what holds refs lives here
too: ``ArgRef`` (a top-level ref argument inside a call's pickled arguments), the ids of a generator's
items and ``DynamicObjectRefGenerator``.  And so does ``_current``, the one runtime of this process
(``runtime.py`` builds it, ``set_current`` installs it): every ObjectRef counts itself there, and a
module global is the cheapest thing to read on that path.  Nothing here imports a higher layer.
"""
from __future__ import annotations

import concurrent.futures
import threading
import types

_capture = threading.local()
_current = None     # the Runtime of this process, or None (``set_current``)


def set_current(runtime) -> None:
    """Make ``runtime`` this process's one runtime (None: there is none now)."""
    global _current
    _current = runtime


class ObjectRef:
    __slots__ = ("_id", "_counted", "__weakref__")

    def __init__(self, object_id: str, *, _count: bool = True):
        self._id = object_id
        self._counted = False
        if _count:
            rt = _current
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
            rt = _current
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
            try:
                rt = _current
                if rt is None:
                    raise RuntimeError("miniray is not running any more: this ref's value is gone.")
                fut.set_result(rt.get([self._id], None)[0])
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


class ArgRef:
    """Stands for a top-level ObjectRef argument inside the pickled arguments of a call: the
    worker puts the value in its place (worker/executor.py ``fill_args``)."""
    __slots__ = ("oid",)

    def __init__(self, oid):
        self.oid = oid

    def __reduce__(self):
        return (ArgRef, (self.oid,))


def item_id(task_id: str, i: int) -> str:
    """The object id of a generator task's ``i``-th yielded item (generators.py)."""
    return f"{task_id}g{i:x}"


class DynamicObjectRefGenerator:
    """The refs a finished generator task produced (``num_returns="dynamic"``)."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self):
        return len(self._refs)

    def __repr__(self):
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"
