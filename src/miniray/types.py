"""Type names for annotations, as ``ray.types``: ``def f(x: ObjectRef[int]) -> ObjectRef[str]``.

``ObjectRef`` is the real ref class; ``ObjectRef[int]`` is a ``types.GenericAlias`` of it
(refs.py), so ``isinstance(r, miniray.types.ObjectRef)`` holds and annotations cost nothing.
"""
from miniray.refs import ObjectRef

__all__ = ["ObjectRef"]
