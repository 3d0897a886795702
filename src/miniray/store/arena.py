"""The shared-memory arena: one sparse ``/dev/shm`` file per node, carved up by a first-fit allocator.

    owner (node thread)                     every process on the node
    ───────────────────                     ─────────────────────────
    Arena.create(name, capacity)            Arena.attach(name, capacity)
      ftruncate: sparse, no pages yet         mmap MAP_SHARED, untracked
      alloc(size) -> offset | None            view(offset, size) -> writable memoryview
      free(offset)                            close()  (only when no views are alive)
      unlink()  once, by the owner
      Warmer: pages ahead of the frontier

Why one arena instead of a segment per object: a fresh ``/dev/shm`` page costs about eight times a
warm memcpy on a small VM (the first touch zero-fills it).  First-fit from the lowest address hands
freed, already-faulted memory to the next object, so repeated puts run at memcpy speed.  It also
sidesteps CPython 3.11's resource tracker (gh-82300): we never use ``SharedMemory``, so no process
but the owner ever unlinks, and attaching never registers anything.

State (owner only): ``_free``, a sorted list of ``(offset, size)`` holes, and ``_used``, offset→size.
Every block is ALIGN-aligned, so numpy views on it are aligned too.

Warm pages ahead (``Warmer``).  Memory the arena has never used is the slow case: a put into it
pays the kernel's zero-fill and page-table work page by page (about 2 GiB/s on this 2-core VM
whatever the copy does).  So the owner keeps ``budget`` bytes *allocated* beyond the frontier (the
end of the highest block ever handed out), with ``fallocate`` on a background thread: the kernel zero-fills them in bulk (~4 GiB/s here, one core) without mapping them into any process,
so no process's RSS grows, and a put into them only maps the pages (3.5 GiB/s with the two copy
threads of serialization.py).  tmpfs never gives pages back until the file goes, so the arena holds
at most ``budget`` bytes more than the most its objects ever held: the default is the smallest of
512 MiB, 1/16 of the machine's RAM (256 MiB on a 4 GiB laptop) and the capacity;
``MINIRAY_PREFAULT_MIB`` sets it (0: none).

    Warmer state: frontier (owner's alloc sets it), warmed (bytes allocated from 0), stopped
    main loop:    wait for the frontier to move, then for a lull (QUIET s with no new frontier: a
                  put copying into new memory runs slower beside a fallocate); fallocate up to
                  frontier + budget in 64 MiB pieces; any OSError (no room in /dev/shm) ends it.
                  The first fill runs at normal priority, refills at nice 19
    messages:     advanced(end)  Arena.alloc, under the store's lock: a compare, a set() when needed
                  stop()         unlink/close: the loop ends after the piece it is on
"""
from __future__ import annotations

import bisect
import mmap
import os
import threading
import time

ALIGN = 64
SHM_DIR = "/dev/shm"
WRITE_GRAIN = 1 << 20       # ``write`` remembers, per MiB, whether this process wrote there
PWRITE_MIN = 256 << 10      # smaller writes copy through the mapping (a syscall is not worth it)
PARALLEL_COPY_MIN = 64 << 20    # copies this big through the mapping use several threads
COPY_THREADS = min(4, os.cpu_count() or 1)
QUIET = 1.0          # seconds without a new frontier before a refill starts
WARM_PIECE = 64 << 20     # each piece lets the GIL go; taking it back can wait a switch interval (5 ms)


def warm_budget(capacity: int) -> int:
    """Bytes of pages to keep allocated ahead of the frontier (see the module's docstring)."""
    env = os.environ.get("MINIRAY_PREFAULT_MIB")
    if env is not None:
        return max(0, int(env)) << 20
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        ram = 4 << 30
    return min(512 << 20, ram // 16, capacity)


def _round(n: int) -> int:
    return (max(n, 1) + ALIGN - 1) // ALIGN * ALIGN


class Arena:
    def __init__(self, path: str, capacity: int, fd: int, owner: bool):
        self.path, self.capacity, self.owner, self._fd = path, capacity, owner, fd
        self._mm = mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._view = memoryview(self._mm)
        self._written = bytearray(capacity // WRITE_GRAIN + 1)  # 1: this process wrote there
        self._free: list[tuple[int, int]] = [(0, capacity)]
        self._used: dict[int, int] = {}
        self.warmer: Warmer | None = None

    # -- life ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, capacity: int, warm: int | None = None) -> "Arena":
        """A new arena, owned by this process; ``warm``: bytes kept allocated ahead (default
        ``warm_budget``)."""
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, capacity)
            arena = cls(path, capacity, fd, owner=True)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        budget = warm_budget(capacity) if warm is None else warm
        if budget > 0:
            arena.warmer = Warmer(path, capacity, budget)
        return arena

    @classmethod
    def attach(cls, path: str, capacity: int) -> "Arena":
        fd = os.open(path, os.O_RDWR)
        try:
            return cls(path, capacity, fd, owner=False)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        """Unmap, if no view is still alive; otherwise the mapping lives until the views die."""
        if self.warmer is not None:
            self.warmer.stop()
        try:
            self._view.release()
            self._mm.close()
        except BufferError:
            pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def unlink(self) -> None:
        if self.warmer is not None:
            self.warmer.stop()
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

    def write(self, offset: int, data) -> None:
        """Copy ``data`` (bytes or a buffer) into the arena at ``offset``.  The first write this
        process makes to a stretch of the arena is a ``pwrite``: the kernel copies straight into the
        file's pages, with no page fault in this process (5 GiB/s into warmed pages here, where a copy
        through the mapping runs at 3 GiB/s, faulting each page in).  Later writes there copy through
        the mapping, which is then faster still (its pages are mapped)."""
        src = memoryview(data)
        n = src.nbytes
        first, last = offset // WRITE_GRAIN, (offset + n - 1) // WRITE_GRAIN
        mapped = self._written[first:last + 1]
        if n >= PWRITE_MIN and mapped.count(1) != len(mapped) and self._pwrite(offset, src):
            pass
        elif n < PARALLEL_COPY_MIN or not copy_in_parallel(self._view[offset:offset + n], src):
            self._view[offset:offset + n] = src
        self._written[first:last + 1] = b"\x01" * (last + 1 - first)

    def _pwrite(self, offset: int, src: memoryview) -> bool:
        try:
            flat = src.cast("B")
        except TypeError:           # not C-contiguous: copy through the mapping instead
            return False
        done, n = 0, flat.nbytes
        while done < n:
            done += os.pwrite(self._fd, flat[done:], offset + done)   # lets the GIL go
        return True

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
                if self.warmer is not None and off + size > self.warmer.frontier:
                    self.warmer.advanced(off + size)
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


class Warmer:
    """Keeps ``budget`` bytes of the arena file allocated past the frontier (module docstring)."""

    def __init__(self, path: str, capacity: int, budget: int):
        self.capacity, self.budget = capacity, budget
        self.frontier = self.warmed = 0
        self.moved_at = 0.0                     # when the frontier last moved (time.monotonic)
        self.stopped = False
        self._moved = threading.Event()
        self._moved.set()                       # warm the first ``budget`` bytes at once
        self._fd = os.open(path, os.O_RDWR)     # not inherited by workers (O_CLOEXEC)
        threading.Thread(target=self._loop, daemon=True, name="miniray-warm").start()

    def advanced(self, end: int) -> None:
        self.frontier, self.moved_at = end, time.monotonic()
        if end + self.budget >= self.warmed + WARM_PIECE:
            self._moved.set()

    def stop(self) -> None:
        self.stopped = True
        self._moved.set()

    def _loop(self) -> None:
        niced = False
        try:
            # Main loop
            while not self.stopped:
                self._moved.wait()
                self._moved.clear()
                while not self.stopped and self.warmed < min(self.capacity, self.frontier + self.budget):
                    quiet = self.moved_at + QUIET - time.monotonic()
                    if quiet > 0:       # puts are copying into new memory now: our calls would slow
                        time.sleep(quiet)   # theirs (both take the file's page locks); wait for a lull
                        continue
                    n = min(WARM_PIECE, self.capacity - self.warmed)
                    os.posix_fallocate(self._fd, self.warmed, n)    # lets the GIL go while it runs
                    self.warmed += n
                    if self.warmed >= self.budget and not niced:    # the first fill runs at full
                        niced = _nice_this_thread()                 # speed; refills are idle work
        except OSError:                 # /dev/shm is full (or the call is unsupported): stop warming
            pass
        finally:
            os.close(self._fd)



def _nice_this_thread() -> bool:
    try:                            # Linux: nice 19 for this thread only, so calls come first
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (OSError, AttributeError):
        pass
    return True


def copy_in_parallel(dst: memoryview, src) -> bool:
    """Copy a big buffer into the arena with COPY_THREADS threads (numpy's copy releases the GIL),
    False if it cannot be (one core, or a buffer numpy cannot view flat).  Into pages not yet
    mapped here the cost is the kernel's page faults, which run in parallel this way (Ray copies
    large objects with several threads too)."""
    if COPY_THREADS < 2:
        return False
    import numpy as np
    try:
        d, s = np.frombuffer(dst, np.uint8), np.frombuffer(src, np.uint8)
    except (ValueError, TypeError):
        return False
    step = -(-len(s) // COPY_THREADS) // 4096 * 4096 + 4096     # whole pages each

    def part(k):
        d[k * step:(k + 1) * step] = s[k * step:(k + 1) * step]

    helpers = [threading.Thread(target=part, args=(k,)) for k in range(1, COPY_THREADS)]
    for t in helpers:
        t.start()
    part(0)
    for t in helpers:
        t.join()
    return True
