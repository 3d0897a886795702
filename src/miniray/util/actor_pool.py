"""ActorPool: spread work over a fixed set of actors, as ``ray.util.ActorPool`` does.

State: ``_idle`` actors, ``_pending`` work not yet handed out, ``_inflight`` ref → (index, actor),
and the results that arrived out of order, keyed by submission index, for the ordered getters.
"""
from __future__ import annotations

from collections import deque

from miniray import api


class ActorPool:
    def __init__(self, actors):
        actors = list(actors)
        if not actors:
            raise ValueError("ActorPool needs at least one actor handle.")
        self._idle = deque(actors)
        self._pending: deque = deque()      # (fn, value, index) waiting for an idle actor
        self._inflight: dict = {}           # ObjectRef -> (index, actor)
        self._next_submit = 0
        self._next_return = 0
        self._done: dict = {}               # index -> ref, finished but not yet returned in order

    def submit(self, fn, value):
        """Schedule ``fn(actor, value)``, which must return an ObjectRef, on an idle actor."""
        index = self._next_submit
        self._next_submit += 1
        if self._idle:
            self._launch(fn, value, index, self._idle.popleft())
        else:
            self._pending.append((fn, value, index))

    def _launch(self, fn, value, index, actor):
        ref = fn(actor, value)
        self._inflight[ref] = (index, actor)

    def _release(self, actor):
        if self._pending:
            fn, value, index = self._pending.popleft()
            self._launch(fn, value, index, actor)
        else:
            self._idle.append(actor)

    def has_next(self) -> bool:
        return bool(self._inflight or self._pending or self._done)

    def has_free(self) -> bool:
        return bool(self._idle) and not self._pending

    def get_next(self, timeout=None, ignore_if_timedout=False):
        """The next result in submission order."""
        if not self.has_next():
            raise StopIteration("No more results to get: submit() work first.")
        want = self._next_return
        while want not in self._done:
            by_index = {i: r for r, (i, _) in self._inflight.items()}
            if want not in by_index:
                self._wait_one(timeout)
                continue
            ref = by_index[want]
            ready, _ = api.wait([ref], timeout=timeout)
            if not ready:
                raise TimeoutError(f"Timed out waiting for result {want}.")
            _, actor = self._inflight.pop(ref)
            self._done[want] = ref
            self._release(actor)
        self._next_return += 1
        return api.get(self._done.pop(want))

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        """The next result to finish, whatever its submission order."""
        if not self.has_next():
            raise StopIteration("No more results to get: submit() work first.")
        if self._done:
            index = min(self._done)
            return api.get(self._done.pop(index))
        ref = self._wait_one(timeout)
        index, _ = self._done_index(ref)
        return api.get(self._done.pop(index))

    def _wait_one(self, timeout):
        ready, _ = api.wait(list(self._inflight), num_returns=1, timeout=timeout)
        if not ready:
            raise TimeoutError("Timed out waiting for a result.")
        ref = ready[0]
        index, actor = self._inflight.pop(ref)
        self._done[index] = ref
        self._release(actor)
        return ref

    def _done_index(self, ref):
        for i, r in self._done.items():
            if r == ref:
                return i, r
        raise KeyError(ref)

    def map(self, fn, values):
        """Results of ``fn(actor, v)`` for each value, in order."""
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn, values):
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next_unordered()

    def push(self, actor):
        self._release(actor)

    def pop_idle(self):
        return self._idle.popleft() if self.has_free() else None
