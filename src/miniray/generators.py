"""Generator tasks: each yielded value becomes its own object as soon as it is yielded.

    worker: for i, item in enumerate(gen): put item as object "<task>g<i>"  (streamed to the node)
            finally: the task's return object holds ObjectRefGenerator([refs...]) or the error
    caller: num_returns="streaming" (default for generator functions): .remote() returns an
            ObjectRefGenerator; next() waits for item i or for the end, whichever is first.
            If the task raised, the next() after its last item gives the end ref (its get raises
            the error) and the one after that ends the stream, as in Ray.
            num_returns="dynamic" (older API): .remote() returns one ref whose value is the
            DynamicObjectRefGenerator of all items; an error is its last ref.
            num_returns=k (an int): each of the first k yields is its own return ref; refs the
            generator never reached hold its error (executor._store).

The items stay alive because the final object captures refs to all of them.
"""
from __future__ import annotations

from miniray.refs import DynamicObjectRefGenerator, ObjectRef, item_id  # noqa: F401  (the first and last live in refs.py, low in the layers)


class ObjectRefGenerator:
    """Iterate over a running generator task's values: yields each item's ObjectRef when ready."""

    def __init__(self, task_id: str, end_ref: ObjectRef):
        self._task_id, self._end, self._i, self._over = task_id, end_ref, 0, False

    def __iter__(self):
        return self

    def __next__(self) -> ObjectRef:
        return self._next(timeout=None)

    def _next(self, timeout=None):
        from miniray import api
        if self._over:
            raise StopIteration
        ref = self.next_ref()
        while True:
            ready, _ = api.wait([ref, self._end], num_returns=1, timeout=timeout)
            if ref in ready:
                self._i += 1
                return ref
            if self._end in ready:
                try:
                    produced = api.get(self._end)
                except Exception:          # the task raised: its error is the stream's last ref
                    self._over = True
                    return self._end
                if self._i >= len(produced):
                    self._over = True
                    raise StopIteration
            elif timeout is not None:
                raise TimeoutError("no new item yet")

    def __reduce__(self):
        raise TypeError("An ObjectRefGenerator cannot be pickled or passed to another task (as in Ray): "
                        "it reads its task's stream in this process. Pass the refs it yields instead, "
                        "or use num_returns='dynamic' for one ref to all the items.")

    def next_ref(self) -> ObjectRef:
        """The ref the next ``next()`` waits for (``wait`` on a generator watches it and the end)."""
        return ObjectRef(item_id(self._task_id, self._i))

    def is_finished(self) -> bool:
        return self._over

    def __aiter__(self):
        return self

    async def __anext__(self) -> ObjectRef:
        import asyncio
        ref = await asyncio.to_thread(self._next_or_none)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def _next_or_none(self):
        try:
            return self._next()
        except StopIteration:   # cannot cross into an asyncio Future
            return None

    def completed(self) -> ObjectRef:
        return self._end

    def __repr__(self):
        return f"ObjectRefGenerator(task {self._task_id}, next item {self._i})"


StreamingObjectRefGenerator = ObjectRefStreamGenerator = ObjectRefGenerator   # Ray's older names


def wait_with_generators(entries: list, num_returns: int, timeout):
    """``wait`` on refs and streaming generators: a generator is ready when its next item (or its
    end) is, as in Ray.  Polls the ids without blocking, then blocks on the ones not ready yet."""
    import time

    from miniray.api import current_runtime
    if not 1 <= num_returns <= len(entries):
        raise ValueError(f"wait(num_returns={num_returns!r}) must be between 1 and the number of "
                         f"entries ({len(entries)}).")
    watch = {}          # entry index -> the ids that make it ready (any one of them)
    for i, e in enumerate(entries):
        if isinstance(e, ObjectRefGenerator):
            watch[i] = [] if e.is_finished() else [e.next_ref()._id, e._end._id]
        elif isinstance(e, ObjectRef):
            watch[i] = [e._id]
        else:
            raise TypeError(f"wait() takes ObjectRefs and generators, got {type(e).__name__}.")
    rt = current_runtime()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ids = sorted({o for v in watch.values() for o in v})
        done = set(rt.wait(ids, len(ids), 0)) if ids else set()
        ready = [i for i, v in watch.items() if not v or done.intersection(v)]
        left = None if deadline is None else deadline - time.monotonic()
        if len(ready) >= num_returns or (left is not None and left <= 0):
            break
        pending = sorted({o for i, v in watch.items() if i not in ready for o in v})
        rt.wait(pending, 1, left)
    take = set(ready[:num_returns])
    return ([e for i, e in enumerate(entries) if i in take], [e for i, e in enumerate(entries) if i not in take])
