"""The shared-memory arena: one sparse ``/dev/shm`` file per node, carved up by a first-fit allocator.

    owner (node thread)                     every process on the node
    ───────────────────                     ─────────────────────────
    Arena.create(name, capacity)            Arena.attach(name, capacity)
      ftruncate: sparse, no pages yet         mmap MAP_SHARED, untracked
      alloc(size) -> offset | None            view(offset, size) -> writable memoryview
      free(offset)                            close()  (only when no views are alive)
      unlink()  once, by the owner

Why one arena instead of a segment per object: a fresh ``/dev/shm`` page costs about eight times a
warm memcpy on a small VM (the first touch zero-fills it).  First-fit from the lowest address hands
freed, already-faulted memory to the next object, so repeated puts run at memcpy speed.  It also
sidesteps CPython 3.11's resource tracker (gh-82300): we never use ``SharedMemory``, so no process
but the owner ever unlinks, and attaching never registers anything.

State (owner only): ``_free``, a sorted list of ``(offset, size)`` holes, and ``_used``, offset→size.
Every block is ALIGN-aligned, so numpy views on it are aligned too.
"""
from __future__ import annotations

import bisect
import mmap
import os

ALIGN = 64
SHM_DIR = "/dev/shm"


def _round(n: int) -> int:
    return (max(n, 1) + ALIGN - 1) // ALIGN * ALIGN


class Arena:
    def __init__(self, path: str, capacity: int, mm: mmap.mmap, owner: bool):
        self.path, self.capacity, self._mm, self.owner = path, capacity, mm, owner
        self._view = memoryview(mm)
        self._free: list[tuple[int, int]] = [(0, capacity)]
        self._used: dict[int, int] = {}

    # -- life ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, capacity: int) -> "Arena":
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, capacity)
            mm = mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        return cls(path, capacity, mm, owner=True)

    @classmethod
    def attach(cls, path: str, capacity: int) -> "Arena":
        fd = os.open(path, os.O_RDWR)
        try:
            mm = mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        return cls(path, capacity, mm, owner=False)

    def close(self) -> None:
        """Unmap, if no view is still alive; otherwise the mapping lives until the views die."""
        try:
            self._view.release()
            self._mm.close()
        except BufferError:
            pass

    def unlink(self) -> None:
        if self.owner:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    # -- memory -------------------------------------------------------------------------------
    @property
    def mmap(self) -> mmap.mmap:
        return self._mm

    def view(self, offset: int, size: int) -> memoryview:
        return self._view[offset:offset + size]

    # -- allocation (owner only) ------------------------------------------------------------------
    @property
    def used(self) -> int:
        return sum(self._used.values())

    def alloc(self, size: int) -> int | None:
        size = _round(size)
        for i, (off, hole) in enumerate(self._free):
            if hole >= size:
                if hole == size:
                    del self._free[i]
                else:
                    self._free[i] = (off + size, hole - size)
                self._used[off] = size
                return off
        return None

    def free(self, offset: int) -> None:
        size = self._used.pop(offset)
        i = bisect.bisect_left(self._free, (offset, 0))
        # merge with the hole after, then the hole before
        if i < len(self._free) and offset + size == self._free[i][0]:
            size += self._free[i][1]
            del self._free[i]
        if i > 0 and self._free[i - 1][0] + self._free[i - 1][1] == offset:
            offset, size = self._free[i - 1][0], self._free[i - 1][1] + size
            del self._free[i - 1]
            i -= 1
        self._free.insert(i, (offset, size))

    def largest_hole(self) -> int:
        return max((s for _, s in self._free), default=0)
