"""A first-in first-out queue shared between tasks and actors, kept by one async actor.

``Queue(maxsize=0)`` mirrors ``queue.Queue``: ``put``/``get`` with ``block`` and ``timeout``, the
``_nowait`` forms, ``qsize``, ``empty``, ``full``; it raises ``queue.Empty`` and ``queue.Full``.
Blocking calls wait inside the actor (asyncio), so a blocked consumer holds no CPU.
"""
from __future__ import annotations

import asyncio
from queue import Empty, Full

from miniray import api


class _QueueActor:
    def __init__(self, maxsize):
        self.q = asyncio.Queue(maxsize)

    async def put(self, item, timeout=None):
        try:
            await asyncio.wait_for(self.q.put(item), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def get(self, timeout=None):
        try:
            return True, await asyncio.wait_for(self.q.get(), timeout)
        except asyncio.TimeoutError:
            return False, None

    async def put_nowait(self, item):
        try:
            self.q.put_nowait(item)
            return True
        except asyncio.QueueFull:
            return False

    async def get_nowait(self):
        try:
            return True, self.q.get_nowait()
        except asyncio.QueueEmpty:
            return False, None

    async def qsize(self):
        return self.q.qsize()

    async def maxsize(self):
        return self.q.maxsize


class Queue:
    def __init__(self, maxsize: int = 0, actor_options: dict | None = None):
        import miniray
        self.maxsize = maxsize
        self.actor = miniray.remote(_QueueActor).options(**(actor_options or {})).remote(maxsize)

    def __len__(self):
        return self.qsize()

    def qsize(self) -> int:
        return api.get(self.actor.qsize.remote())

    def size(self) -> int:
        return self.qsize()

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return 0 < self.maxsize <= self.qsize()

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        if not block:
            return self.put_nowait(item)
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        if not api.get(self.actor.put.remote(item, timeout)):
            raise Full
        return None

    def get(self, block: bool = True, timeout: float | None = None):
        if not block:
            return self.get_nowait()
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        ok, item = api.get(self.actor.get.remote(timeout))
        if not ok:
            raise Empty
        return item

    def put_nowait(self, item) -> None:
        if not api.get(self.actor.put_nowait.remote(item)):
            raise Full

    def get_nowait(self):
        ok, item = api.get(self.actor.get_nowait.remote())
        if not ok:
            raise Empty
        return item

    def shutdown(self, force: bool = False) -> None:
        if self.actor is not None:
            api.kill(self.actor)
            self.actor = None


__all__ = ["Queue", "Empty", "Full"]
