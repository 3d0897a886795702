"""Frames that cannot be unpickled: load what can be, and name what could not.

A frame is one pickle of a list of items (framing.py).  If one item refers to something the
receiver cannot import (a class of the sender's ``__main__``, a module it lacks), a plain
``pickle.loads`` fails the whole frame, and with it every item in it.  ``load_frame`` loads such a
frame again with ``find_class`` answering a stand-in class, ``Unloadable``, for each missing name,
then replaces each item holding a stand-in by ``("unloadable", message, item)``: the receiver
fails that item alone (a call: that call's error) and handles the rest as usual.

A frame that fails for another reason (a ``__setstate__`` that raises) cannot be split: it comes
back as one ``("unloadable", message, None)`` item.
"""
from __future__ import annotations

import io
import pickle


class Unloadable:
    """Stands for an object whose class (or a global it needs) could not be imported here."""
    missing = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self):
        return f"<unloadable {self.missing}>"


class _Tolerant(pickle.Unpickler):
    def __init__(self, data):
        super().__init__(io.BytesIO(data))
        self.missing: dict = {}        # "module.name" -> why it could not be loaded

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except Exception as err:      # the sender had it; we do not
            what = f"{module}.{name}"
            self.missing[what] = f"{type(err).__name__}: {err}"
            return type(name, (Unloadable,), {"missing": what, "__module__": module})


def load_frame(data):
    """The items of one frame, unpickled; items that cannot be loaded become ("unloadable", ...)."""
    try:
        return pickle.loads(data)
    except Exception as err:     # only its text is kept: its traceback would hold ``data``
        data = bytes(data)       # ... and so would this frame, if the code that raised kept ``err``
        first = f"{type(err).__name__}: {err}"
    loader = _Tolerant(data)
    try:
        items = loader.load()
    except Exception as err:
        return [("unloadable", f"a message could not be unpickled here ({first}; "
                 f"{type(err).__name__}: {err})", None)]
    if not isinstance(items, list):
        return items
    return [item if not _holds_stand_in(item) else
            ("unloadable", _message(item, loader.missing), item) for item in items]


def _message(item, missing) -> str:
    names = sorted(set(_stand_ins(item)) & set(missing)) or sorted(missing)
    why = "; ".join(f"{n} ({missing[n]})" for n in names)
    return (f"could not load {why} in this process. Define such classes in a "
            "module the workers can import (not in __main__ or a notebook cell), or pass them by value.")


def _holds_stand_in(obj) -> bool:
    return next(_stand_ins(obj), None) is not None


def _stand_ins(obj, depth=0):
    """The missing names of every stand-in inside ``obj`` (containers and slotted objects)."""
    if depth > 8:
        return
    if isinstance(obj, type):
        if issubclass(obj, Unloadable):
            yield obj.missing
        return
    if isinstance(obj, Unloadable):
        yield obj.missing
        return
    if isinstance(obj, (str, bytes, bytearray, memoryview, int, float, bool, type(None))):
        return
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = obj
    else:
        slots = [n for c in type(obj).__mro__ for n in getattr(c, "__slots__", ())]
        children = [getattr(obj, n, None) for n in slots] + list(getattr(obj, "__dict__", {}).values())
    for child in children:
        yield from _stand_ins(child, depth + 1)
