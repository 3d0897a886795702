"""Generator tasks: each yielded value becomes its own object as soon as it is yielded.

    worker: for i, item in enumerate(gen): put item as object "<task>g<i>"  (streamed to the node)
            finally: the task's return object holds ObjectRefGenerator([refs...]) or the error
    caller: num_returns="streaming" (default for generator functions): .remote() returns a
            StreamingObjectRefGenerator; next() waits for item i or for the end, whichever is first.
            num_returns="dynamic" (older API): .remote() returns one ref whose value is the
            ObjectRefGenerator of all items.

The items stay alive because the final object captures refs to all of them.
"""
from __future__ import annotations

from miniray.refs import ObjectRef


def item_id(task_id: str, i: int) -> str:
    return f"{task_id}g{i:x}"


class ObjectRefGenerator:
    """The refs a finished generator task produced (``num_returns="dynamic"``)."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self):
        return len(self._refs)

    def __repr__(self):
        return f"ObjectRefGenerator({len(self._refs)} refs)"


DynamicObjectRefGenerator = ObjectRefGenerator


class StreamingObjectRefGenerator:
    """Iterate over a running generator task's values: yields each item's ObjectRef when ready."""

    def __init__(self, task_id: str, end_ref: ObjectRef):
        self._task_id, self._end, self._i = task_id, end_ref, 0

    def __iter__(self):
        return self

    def __next__(self) -> ObjectRef:
        return self._next(timeout=None)

    def _next(self, timeout=None):
        from miniray import api
        ref = ObjectRef(item_id(self._task_id, self._i))
        while True:
            ready, _ = api.wait([ref, self._end], num_returns=1, timeout=timeout)
            if ref in ready:
                self._i += 1
                return ref
            if self._end in ready:
                produced = api.get(self._end)    # raises the task's error, if it failed
                if self._i >= len(produced):
                    raise StopIteration
            elif timeout is not None:
                raise TimeoutError("no new item yet")

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
        return f"StreamingObjectRefGenerator(task {self._task_id}, next item {self._i})"


ObjectRefStreamGenerator = StreamingObjectRefGenerator
