"""Puts into memory the store has never used (issue 14's cold paths): the arena keeps pages
allocated ahead of its frontier without mapping them into the driver, a first write goes by pwrite
(no page faults here), and a loop of big puts reuses one block.  Real runtimes, a real /dev/shm file.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import miniray
from miniray.store.arena import PWRITE_MIN, Arena
from conftest import wait_until

pytestmark = pytest.mark.timeout(60, method="signal")

MiB = 2**20


def _allocated(path: str) -> int:
    """Bytes of the arena file that hold pages (tmpfs counts 512-byte blocks)."""
    return os.stat(path).st_blocks * 512


def _shmem_mapped_here() -> int:
    """Bytes of shared memory mapped into this process's page tables (RssShmem)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssShmem:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
def warm_runtime(monkeypatch):
    def start(budget_mib: int):
        miniray.shutdown()
        monkeypatch.setenv("MINIRAY_PREFAULT_MIB", str(budget_mib))
        miniray.init(num_cpus=2, object_store_memory=400 * MiB)
        from miniray.api import current_runtime
        return current_runtime()
    yield start
    miniray.shutdown()


@miniray.remote
def ends(a):
    return int(a[0]), int(a[-1]), int(a.sum(dtype=np.int64))


def test_the_store_keeps_pages_warm_ahead_of_its_frontier_outside_the_driver(warm_runtime):
    rt = warm_runtime(64)
    path = rt.store.arena.path
    assert wait_until(lambda: _allocated(path) >= 64 * MiB), _allocated(path)
    assert _allocated(path) <= 64 * MiB + MiB                    # the budget, no more
    mapped = _shmem_mapped_here()
    assert mapped < 32 * MiB, f"the warm pages were mapped into the driver: {mapped / MiB:.0f} MiB"

    arr = (np.arange(100 * MiB, dtype=np.uint64) % 251).astype(np.uint8)
    ref = miniray.put(arr)
    # the put went by pwrite: the driver did not fault its 100 MiB in
    assert _shmem_mapped_here() - mapped < 16 * MiB
    assert miniray.get(ends.remote(ref)) == (int(arr[0]), int(arr[-1]), int(arr.sum(dtype=np.int64)))
    assert np.array_equal(miniray.get(ref), arr)
    # past the frontier (now ~100 MiB) the store warms 64 MiB more once puts pause, and stops there
    assert wait_until(lambda: _allocated(path) >= 164 * MiB, timeout=15), _allocated(path) / MiB
    assert _allocated(path) <= 100 * MiB + 64 * MiB + 64 * MiB


def test_no_warming_when_turned_off(warm_runtime):
    rt = warm_runtime(0)
    path = rt.store.arena.path
    assert rt.store.arena.warmer is None
    ref = miniray.put(np.ones(10 * MiB, dtype=np.uint8))
    assert 10 * MiB <= _allocated(path) <= 11 * MiB                 # only the object's own pages
    assert miniray.get(ends.remote(ref))[2] == 10 * MiB


def test_a_loop_of_big_puts_reuses_one_block_and_rewrites_it_exactly(warm_runtime):
    """The driver's dropped refs reach the store before the next big put allocates, so
    ``r = put(big)`` in a loop takes the same (warm, mapped) block each time; the rewrites go
    through the mapping and must replace the bytes exactly."""
    rt = warm_runtime(64)
    offsets = []
    for k in range(5):
        arr = np.full(20 * MiB, k, dtype=np.uint8)
        ref = miniray.put(arr)
        offsets.append(rt.store.entries[ref.hex()].desc[1])
        got = miniray.get(ref)
        assert got[0] == got[-1] == k and int(got.sum(dtype=np.int64)) == k * 20 * MiB
        del got, ref
    assert len(set(offsets)) == 1, offsets


def test_arena_writes_are_exact_by_pwrite_then_through_the_mapping(tmp_path):
    name = f"miniray_{os.getpid()}_writetest"
    arena = Arena.create(name, 8 * MiB, warm=0)
    try:
        first = os.urandom(PWRITE_MIN + 4096 * 3 + 7)
        arena.write(4096 + 64, first)                         # never written here: pwrite
        assert bytes(arena.view(4096 + 64, len(first))) == first
        assert _allocated(arena.path) < 2 * MiB               # only the pages written
        second = os.urandom(len(first))
        arena.write(4096 + 64, memoryview(second))            # written before: through the mapping
        assert bytes(arena.view(4096 + 64, len(second))) == second
        small = b"meta" * 10
        arena.write(7 * MiB, small)
        assert bytes(arena.view(7 * MiB, len(small))) == small
    finally:
        arena.unlink()
        arena.close()
    assert not os.path.exists(arena.path)
