"""The shared-memory object store: the parts of issue 4 that exist (zero-copy, freeing, spilling,
ObjectStoreFullError, no /dev/shm leftovers).  A SIGKILLed driver's leftovers are checked in
test_tasks.py (test_sigkilled_driver_leaves_no_workers_or_shared_memory).
"""
from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import miniray
import miniray as ray
from miniray import exceptions as exc

pytestmark = pytest.mark.timeout(60, method="signal")

MiB = 2**20
STORE = 300 * MiB


@pytest.fixture
def own_store():
    """A 300 MiB store of this test's own, so that a runtime it breaks does not break the next test."""
    miniray.shutdown()
    miniray.init(num_cpus=2, object_store_memory=STORE)
    yield miniray
    miniray.shutdown()


@pytest.fixture
def small_store():
    """A two-CPU runtime whose store holds 300 MiB, shared by the tests that use it."""
    if not miniray.is_initialized():
        miniray.init(num_cpus=2, object_store_memory=STORE)
    return miniray


def _get(refs, timeout=30):
    return ray.get(refs, timeout=timeout)


def _addr(arr) -> int:
    return arr.__array_interface__["data"][0]


def _shm_names():
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("miniray")}
    except FileNotFoundError:
        return set()


@ray.remote
def describe(arr):
    """What a task sees of an array argument: writeable flag, checksum, shape."""
    return bool(arr.flags.writeable), float(arr.sum(dtype=np.float64)), arr.shape


@ray.remote
def first_and_last(arr):
    return int(arr.flat[0]), int(arr.flat[-1])


@ray.remote
def make_array(n, fill):
    return np.full(n, fill, dtype=np.int64)


@ray.remote
def get_inside(refs):
    arr = ray.get(refs[0])
    return bool(arr.flags.writeable), int(arr[0])


# -- zero-copy ---------------------------------------------------------------------------------------
def test_get_of_a_put_array_is_zero_copy_and_read_only(small_store):
    arr = np.arange(4 * MiB, dtype=np.float64)         # 32 MiB, far above the inline threshold
    ref = ray.put(arr)
    a, b = _get(ref), _get(ref)
    assert _addr(a) == _addr(b), "two gets share one buffer"
    assert _addr(a) != _addr(arr), "the value lives in the store, not in the caller's array"
    assert not a.flags.writeable and not b.flags.writeable
    with pytest.raises(ValueError):
        a[0] = 1.0
    np.testing.assert_array_equal(a, arr)
    del a, b


def test_task_return_value_is_zero_copy_on_the_driver(small_store):
    ref = make_array.remote(2 * MiB, 7)
    a, b = _get(ref), _get(ref)
    assert _addr(a) == _addr(b) and not a.flags.writeable
    assert int(a[0]) == 7 and int(a[-1]) == 7


def test_small_objects_are_plain_values(small_store):
    v = _get(ray.put(np.arange(10)))
    np.testing.assert_array_equal(v, np.arange(10))


def test_task_receives_a_read_only_view_of_a_large_array(small_store):
    arr = np.ones(8 * MiB, dtype=np.uint8)
    ref = ray.put(arr)
    writeable, total, shape = _get(describe.remote(ref))
    assert writeable is False
    assert total == float(arr.size) and shape == arr.shape
    # Passing the array itself (not a ref) also lands in the store and arrives read-only.
    writeable, total, _ = _get(describe.remote(arr))
    assert writeable is False and total == float(arr.size)
    assert _get(get_inside.remote([ref])) == (False, 1)


def test_bytes_like_objects_round_trip_through_the_store(small_store):
    blob = bytes(range(256)) * 4096                   # 1 MiB
    assert _get(ray.put(blob)) == blob
    data = bytearray(blob)
    assert bytes(_get(ray.put(data))) == blob


# -- freeing -----------------------------------------------------------------------------------------
def test_dropped_refs_free_memory_for_reuse(small_store):
    for i in range(30):
        ref = ray.put(np.full(10 * MiB, i, dtype=np.int64))   # 80 MiB each, 2.4 GiB in all
        got = _get(ref)
        assert int(got[0]) == i and int(got[-1]) == i
        del got, ref
    gc.collect()


def test_dropped_task_results_are_freed(small_store):
    for i in range(12):
        ref = make_array.remote(10 * MiB, i)
        assert _get(first_and_last.remote(ref)) == (i, i)
        del ref


# -- spilling ----------------------------------------------------------------------------------------
@pytest.mark.timeout(30, method="signal")
@pytest.mark.parametrize("warm", [False, True], ids=["fresh-runtime", "after-a-task"])
def test_spilling_keeps_every_byte(own_store, warm):
    if warm:   # workers that have already run a task on a store object
        assert _get(describe.remote(ray.put(np.ones(8 * MiB, dtype=np.uint8))))[1] == 8 * MiB
    n, size = 12, 50 * MiB // 8                           # 12 x 50 MiB = 600 MiB through 300 MiB
    refs = [ray.put(np.full(size, i, dtype=np.int64)) for i in range(n)]
    for i, ref in enumerate(refs):
        got = _get(ref)
        assert got.shape == (size,) and int(got[0]) == i and int(got[-1]) == i
        assert int(got.sum()) == i * size
        del got
    # Spilled objects also serve as task arguments.
    assert _get([first_and_last.remote(r) for r in refs]) == [(i, i) for i in range(n)]
    # Task results spill too.
    outs = [make_array.remote(size, 100 + i) for i in range(n)]
    for i, ref in enumerate(outs):
        got = _get(ref)
        assert int(got[0]) == 100 + i and int(got[-1]) == 100 + i
        del got
    del refs, outs


def test_room_held_by_the_drivers_dropped_views_is_found_inside_a_node_step(own_store):
    """A worker's alloc is served inside a step of the node's loop, which cannot handle the
    driver's queued unpins until it ends: the store applies them on the spot instead.  (Seen in
    CI as a task result failing with ObjectStoreFullError while spilling.)"""
    from miniray.api import current_runtime
    rt = current_runtime()
    refs = [ray.put(np.full(50 * MiB // 8, i, dtype=np.int64)) for i in range(5)]    # 250 MiB
    views = [_get(r) for r in refs]                          # pinned while the driver holds them
    with rt.node.baton:                                      # no step elsewhere meanwhile
        del views                                            # unpins queued, not sent yet
        rt.node._stepping = True                             # as inside a step
        try:
            off = rt.store.alloc(100 * MiB)                  # fits once two of them spill
        finally:
            rt.node._stepping = False
        with rt.store.lock:
            rt.store.arena.free(off)
    assert [int(_get(r)[0]) for r in refs] == list(range(5))   # spilled ones come back whole


# -- too big ------------------------------------------------------------------------------------------
def test_object_bigger_than_the_store_raises_and_the_runtime_keeps_working(small_store):
    too_big = np.zeros(400 * MiB // 8, dtype=np.int64)
    with pytest.raises(exc.ObjectStoreFullError) as info:
        ray.put(too_big)
    text = str(info.value)
    assert "MiB" in text or "bytes" in text or "GiB" in text, text
    assert any(s in text for s in ("400", "419430400")), f"the object's size is missing: {text}"
    assert any(s in text for s in ("300", "314572800")), f"the store's capacity is missing: {text}"
    assert "object_store_memory" in text, f"what to do is missing: {text}"
    del too_big
    arr = np.arange(MiB, dtype=np.int64)
    np.testing.assert_array_equal(_get(ray.put(arr)), arr)
    assert _get(first_and_last.remote(ray.put(arr))) == (0, MiB - 1)


@ray.remote
def make_too_big():
    return np.zeros(400 * MiB // 8, dtype=np.int64)


def test_task_returning_an_object_bigger_than_the_store_fails_cleanly(small_store):
    with pytest.raises(exc.ObjectStoreFullError):
        _get(make_too_big.remote(), timeout=30)
    assert _get(first_and_last.remote(ray.put(np.arange(MiB)))) == (0, MiB - 1)


# -- no leftovers --------------------------------------------------------------------------------------
def test_no_dev_shm_leftovers_after_shutdown():
    miniray.shutdown()
    before = _shm_names()
    ray.init(num_cpus=2, object_store_memory=STORE)
    refs = [ray.put(np.full(MiB, i)) for i in range(5)]
    assert _get(first_and_last.remote(refs[0])) == (0, 0)
    assert _shm_names() - before, "the store lives in /dev/shm while running"
    ray.shutdown()
    assert not (_shm_names() - before), sorted(_shm_names() - before)
    del refs


def test_small_builtin_values_take_the_plain_path_and_refs_never_do(rt):
    """serialize() pickles small builtin data directly; anything that may hold a ref, a buffer or
    code still goes the general way, so contained refs are counted and arrays stay zero-copy."""
    import enum

    import numpy as np

    from miniray.store.serialization import _plain, deserialize, serialize

    class Colour(enum.IntEnum):
        RED = 1

    plain = [1, True, None, 2.5, "s", b"b", ((), {}), (1, [2, {"k": 3}])]
    for v in plain:
        assert _plain(v)
        ser = serialize(v)
        assert ser.buffers == [] and ser.contained == []
        assert deserialize(ser.inline()) == v and type(deserialize(ser.inline())) is type(v)
    ref = rt.put(1)
    for v in [(ref,), {"r": ref}, [[ref]], Colour.RED, {1: 2}, np.arange(3), list(range(17))]:
        assert not _plain(v)
    assert serialize(((ref,), {})).contained == [ref.hex()]
    assert len(serialize(np.arange(1000)).buffers) == 1
    assert deserialize(serialize(Colour.RED).inline()) is Colour.RED


def test_a_put_big_enough_to_copy_in_parallel_arrives_byte_exact(small_store):
    """Buffers over PARALLEL_COPY_MIN are copied by several threads in page-sized parts: an odd
    size (not a whole number of pages or of parts) must still arrive whole and in order."""
    from miniray.store.arena import PARALLEL_COPY_MIN
    n = PARALLEL_COPY_MIN + 3 * 4096 + 13
    arr = (np.arange(n, dtype=np.uint64) * 2654435761 % 251).astype(np.uint8)
    ref = ray.put(arr)
    got = _get(ref)
    assert got.nbytes == n and np.array_equal(got, arr)
    assert _get(first_and_last.remote(ref)) == (int(arr[0]), int(arr[-1]))
    del got, ref
