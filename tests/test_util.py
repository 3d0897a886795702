"""miniray.util: ActorPool, Queue, the object listing (state) and arrays built in the store, plus
generator tasks and actor methods, checked against Ray's documented behaviour.

Oracles are plain Python: ``map`` against a list comprehension, the Queue against ``queue.Queue``'s
contract, ``list_objects`` against the refs this test holds.  Most tests share one two-CPU runtime
(``rt``); nothing here needs a runtime of its own.
"""
from __future__ import annotations

import asyncio
import os
import queue
import sys
import time

import numpy as np
import pytest

import miniray
import miniray as ray
from miniray.util import ActorPool
from miniray.util.queue import Queue
from miniray.util.state import list_objects, memory_summary
from helpers import wait_until

pytestmark = pytest.mark.timeout(60, method="signal")


def _touch(path):
    with open(path, "a"):
        pass


# -- ActorPool ------------------------------------------------------------------------------------------
@ray.remote
class Doubler:
    def __init__(self):
        self.calls = 0

    def double(self, v, delay=0.0):
        time.sleep(delay)
        self.calls += 1
        return 2 * v

    def pid(self):
        return os.getpid()

    def count(self):
        return self.calls


@pytest.fixture
def pool_actors(rt):
    actors = [Doubler.remote(), Doubler.remote()]
    yield actors
    for a in actors:
        ray.kill(a)


def test_actor_pool_map_is_ordered_even_when_results_finish_out_of_order(pool_actors):
    pool = ActorPool(pool_actors)
    values = list(range(6))
    # The earlier values sleep longer, so they finish after the later ones.
    got = list(pool.map(lambda a, v: a.double.remote(v, delay=0.05 * (6 - v)), values))
    assert got == [2 * v for v in values]
    assert not pool.has_next()


def test_actor_pool_map_unordered_yields_results_as_they_finish(pool_actors):
    pool = ActorPool(pool_actors)
    values = [(0, 1.5), (1, 0.0), (2, 0.0)]    # (value, delay): the first is slow
    got = list(pool.map_unordered(lambda a, v: a.double.remote(v[0], delay=v[1]), values))
    assert sorted(got) == [0, 2, 4]
    assert got[-1] == 0, "the slow first value finishes last, so map_unordered gives it last"


def test_actor_pool_submit_get_next_has_next_has_free(pool_actors):
    pool = ActorPool(pool_actors)
    assert pool.has_free() and not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    pool.submit(lambda a, v: a.double.remote(v), 1)
    assert pool.has_free(), "one of two actors is still idle"
    pool.submit(lambda a, v: a.double.remote(v), 2)
    assert not pool.has_free(), "both actors are busy"
    pool.submit(lambda a, v: a.double.remote(v), 3)    # waits for an idle actor
    assert pool.has_next()
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [2, 4, 6]
    assert not pool.has_next() and pool.has_free()

    for v in (10, 20, 30):
        pool.submit(lambda a, v: a.double.remote(v), v)
    got = [pool.get_next_unordered() for _ in range(3)]
    assert sorted(got) == [20, 40, 60]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_actor_pool_get_next_timeout(pool_actors):
    pool = ActorPool(pool_actors)
    pool.submit(lambda a, v: a.double.remote(v, delay=2.0), 5)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)


def test_actor_pool_more_work_than_actors_uses_every_actor(pool_actors):
    pool = ActorPool(pool_actors)
    values = list(range(20))
    assert list(pool.map(lambda a, v: a.double.remote(v, delay=0.01), values)) == [2 * v for v in values]
    counts = ray.get([a.count.remote() for a in pool_actors])
    assert sum(counts) == 20 and all(c > 0 for c in counts), counts
    # A second map on the same pool works too, and the pool is idle again afterwards.
    assert list(pool.map_unordered(lambda a, v: a.double.remote(v), [7])) == [14]
    assert pool.has_free() and not pool.has_next()


# -- Queue ----------------------------------------------------------------------------------------------
def test_queue_put_get_from_the_driver_is_fifo_with_sizes(rt):
    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and q.qsize() == 0
    for item in ("a", {"b": 1}, [3]):
        q.put(item)
    assert q.full() and not q.empty() and q.qsize() == 3 and len(q) == 3
    assert [q.get(), q.get(), q.get()] == ["a", {"b": 1}, [3]]
    assert q.empty()
    q.shutdown()


def test_queue_nowait_forms_raise_empty_and_full(rt):
    q = Queue(maxsize=1)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    q.put_nowait(1)
    with pytest.raises(queue.Full):
        q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put(2, block=False)
    assert q.get_nowait() == 1
    q.shutdown()


def test_queue_timeouts_raise_after_waiting(rt):
    q = Queue(maxsize=1)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.3)
    assert time.monotonic() - t0 >= 0.25, "get(timeout=) waits before raising Empty"
    q.put("x")
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put("y", timeout=0.3)
    assert time.monotonic() - t0 >= 0.25, "put(timeout=) waits before raising Full"
    assert q.get(timeout=5) == "x"
    q.shutdown()


def test_unbounded_queue_is_never_full(rt):
    q = Queue()
    for i in range(50):
        q.put_nowait(i)
    assert not q.full() and q.qsize() == 50
    assert [q.get() for _ in range(50)] == list(range(50))
    q.shutdown()


@ray.remote
def produce(q, start, n):
    for i in range(start, start + n):
        q.put(i)
    return n


@ray.remote
def consume(q, n, timeout=30):
    return [q.get(timeout=timeout) for _ in range(n)]


@ray.remote
class Consumer:
    def __init__(self, q):
        self.q = q

    def take(self, n):
        return [self.q.get(timeout=30) for _ in range(n)]


def test_queue_between_producer_tasks_and_a_consumer_actor(rt):
    q = Queue(maxsize=4)      # smaller than the work: producers must block until the consumer takes
    consumer = Consumer.remote(q)
    taken = consumer.take.remote(30)
    assert ray.get([produce.remote(q, 0, 15), produce.remote(q, 100, 15)], timeout=30) == [15, 15]
    got = ray.get(taken, timeout=30)
    assert sorted(got) == list(range(15)) + list(range(100, 115))
    # Each producer's items arrive in the order it put them.
    assert [i for i in got if i < 100] == list(range(15))
    assert [i for i in got if i >= 100] == list(range(100, 115))
    assert q.empty()
    ray.kill(consumer)
    q.shutdown()


def test_queue_blocked_consumers_do_not_starve_the_producer(rt):
    """More blocked consumer tasks than CPUs, then a producer task: a worker blocked in get must
    let the producer run (no deadlock)."""
    q = Queue()
    consumers = [consume.remote(q, 2) for _ in range(3)]
    ready, _ = ray.wait(consumers, timeout=0.3)
    assert ready == [], "consumers wait for items"
    assert ray.get(produce.remote(q, 0, 6), timeout=30) == 6
    got = ray.get(consumers, timeout=30)
    assert sorted(sum(got, [])) == list(range(6))
    q.put("from the driver")
    assert ray.get(consume.remote(q, 1), timeout=30) == ["from the driver"]
    q.shutdown()


# -- generators ---------------------------------------------------------------------------------------
@ray.remote
def slow_numbers(n, delay, done_marker=None):
    for i in range(n):
        yield i
        time.sleep(delay)
    if done_marker:
        _touch(done_marker)


@ray.remote
def numbers(n):
    for i in range(n):
        yield i * i


@ray.remote
def fails_after(k):
    for i in range(k):
        yield i
    raise ValueError(f"failed after {k} items")


@ray.remote
def total(x):
    return x + 1000


def test_generator_task_streams_refs_in_order_by_default(rt):
    gen = numbers.remote(5)
    assert not isinstance(gen, ray.ObjectRef)
    refs = list(gen)
    assert all(isinstance(r, ray.ObjectRef) for r in refs)
    assert ray.get(refs) == [i * i for i in range(5)]
    # A streamed ref is an ordinary ref: it can be passed to another task.
    assert ray.get(total.remote(refs[3])) == 1009
    # num_returns="streaming" spelled out behaves the same; an empty generator stops at once.
    assert [ray.get(r) for r in numbers.options(num_returns="streaming").remote(3)] == [0, 1, 4]
    assert list(numbers.remote(0)) == []


def test_consumer_sees_the_first_item_before_the_generator_finishes(rt, tmp_path):
    done = str(tmp_path / "done")
    gen = slow_numbers.remote(6, 0.5, done)        # at least 2.5 s in all
    first = next(gen)
    assert ray.get(first, timeout=30) == 0
    assert not os.path.exists(done), "the first item arrived only after the whole generator finished"
    assert [ray.get(r) for r in gen] == [1, 2, 3, 4, 5]
    assert wait_until(lambda: os.path.exists(done), timeout=10)


def test_generator_completed_ref(rt):
    gen = numbers.remote(3)
    ray.get(gen.completed(), timeout=30)      # waits for the whole task, as in Ray
    assert [ray.get(r) for r in gen] == [0, 1, 4]


def test_dynamic_generator_returns_one_ref_to_an_object_ref_generator(rt):
    ref = numbers.options(num_returns="dynamic").remote(4)
    assert isinstance(ref, ray.ObjectRef)
    dyn = ray.get(ref, timeout=30)
    refs = list(dyn)
    assert len(refs) == 4 and all(isinstance(r, ray.ObjectRef) for r in refs)
    assert ray.get(refs) == [0, 1, 4, 9]


def test_exception_mid_stream_comes_after_the_items_before_it(rt):
    gen = fails_after.remote(2)
    assert ray.get(next(gen), timeout=30) == 0
    assert ray.get(next(gen), timeout=30) == 1
    # As in Ray: the next ``next(gen)`` gives a ref whose ``get`` raises.
    with pytest.raises(ValueError, match="failed after 2 items"):
        ray.get(next(gen), timeout=30)


def test_dynamic_generator_error_raises_at_get_of_its_last_ref(rt):
    refs = list(ray.get(fails_after.options(num_returns="dynamic").remote(1), timeout=30))
    assert ray.get(refs[0]) == 0
    with pytest.raises(ValueError):
        ray.get(refs[-1], timeout=30)


def test_async_for_over_a_generator_task(rt):
    async def main():
        out = []
        async for ref in numbers.remote(4):
            out.append(await ref)
        return out

    assert asyncio.run(asyncio.wait_for(main(), 30)) == [0, 1, 4, 9]


@ray.remote
class Streamer:
    def __init__(self):
        self.base = 100

    def count(self, n):
        for i in range(n):
            yield self.base + i

    @ray.method(num_returns="dynamic")
    def count_dynamic(self, n):
        for i in range(n):
            yield self.base + i

    def broken(self):
        yield 1
        raise KeyError("mid-stream")

    def ping(self):
        return "pong"


@ray.remote
class AsyncStreamer:
    async def count(self, n):
        for i in range(n):
            await asyncio.sleep(0.01)
            yield i


@ray.remote(max_concurrency=3)
class ThreadedStreamer:
    def count(self, n):
        for i in range(n):
            yield i


def test_generator_actor_methods(rt):
    s = Streamer.remote()
    assert [ray.get(r) for r in s.count.remote(3)] == [100, 101, 102]
    dyn = ray.get(s.count_dynamic.remote(2), timeout=30)
    assert ray.get(list(dyn)) == [100, 101]
    gen = s.broken.remote()
    assert ray.get(next(gen), timeout=30) == 1
    with pytest.raises(KeyError):
        ray.get(next(gen), timeout=30)
    assert ray.get(s.ping.remote(), timeout=30) == "pong", "the actor survives a failed generator"
    ray.kill(s)


@pytest.mark.parametrize("cls", [AsyncStreamer, ThreadedStreamer], ids=["async", "threaded"])
def test_generator_methods_on_async_and_threaded_actors(rt, cls):
    a = cls.remote()
    try:
        assert [ray.get(r, timeout=30) for r in a.count.remote(4)] == [0, 1, 2, 3]
    finally:
        ray.kill(a)


# -- list_objects and memory_summary -------------------------------------------------------------------
def _objects() -> dict:
    return {o["object_id"]: o for o in list_objects()}


def _here() -> str:
    """``file:line`` of the caller's previous line (the line that made the object)."""
    f = sys._getframe(1)
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno - 1}"


@ray.remote
def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


@ray.remote
def second(a, b):
    return b


def test_list_objects_is_truthful_before_and_after_del(rt):
    small = ray.put("hello")
    small_site = _here()
    big = ray.put(np.ones(1_000_000, dtype=np.uint8))
    big_site = _here()
    objs = _objects()
    s, b = objs[small.hex()], objs[big.hex()]
    assert s["location"] == "inline" and b["location"] == "shared_memory"
    assert 0 < s["object_size"] < 1000
    assert b["object_size"] >= 1_000_000
    assert s["reference_type"] == b["reference_type"] == "LOCAL_REFERENCE"
    assert s["call_site"].endswith(small_site), (s["call_site"], small_site)
    assert b["call_site"].endswith(big_site), (b["call_site"], big_site)
    small_id, big_id = small.hex(), big.hex()
    del small, big
    assert wait_until(lambda: not ({small_id, big_id} & set(_objects())), timeout=10), \
        "objects whose last ref was deleted are still listed"


def test_list_objects_reflects_a_del_at_once(rt):
    """The listing answers for the moment it is asked: a ref dropped just before is already gone."""
    gone = ray.put("dropped")
    inner = ray.put("inside")
    outer = ray.put([inner])
    gone_id, inner_id = gone.hex(), inner.hex()
    del gone, inner
    objs = _objects()
    assert gone_id not in objs, "an object whose only ref was deleted is still listed"
    assert objs[inner_id]["reference_type"] == "CAPTURED_IN_OBJECT"
    del outer


def test_list_objects_used_by_pending_task(rt):
    blocker = sleep_then.remote(1.5)
    arg = ray.put("needed later")
    arg_id = arg.hex()
    dependent = second.remote(blocker, arg)      # pending until the blocker finishes
    del arg
    assert _objects()[arg_id]["reference_type"] == "USED_BY_PENDING_TASK"
    assert ray.get(dependent, timeout=30) == "needed later"
    assert wait_until(lambda: arg_id not in _objects(), timeout=10), "the argument outlived its task"


def test_list_objects_captured_in_object(rt):
    inner = ray.put("inside")
    outer = ray.put([inner])
    inner_id, outer_id = inner.hex(), outer.hex()
    del inner
    assert wait_until(lambda: _objects()[inner_id]["reference_type"] == "CAPTURED_IN_OBJECT", timeout=10), \
        _objects()[inner_id]
    assert _objects()[outer_id]["reference_type"] == "LOCAL_REFERENCE"
    assert ray.get(ray.get(outer)[0]) == "inside"
    del outer
    assert wait_until(lambda: not ({inner_id, outer_id} & set(_objects())), timeout=10)


def test_memory_summary_keys_and_figures(rt):
    before = memory_summary()
    for key in ("nodes", "capacity", "used", "spilled", "num_objects"):
        assert key in before, key
    assert len(before["nodes"]) == 1 and before["capacity"] > 0
    big = ray.put(np.zeros(2_000_000, dtype=np.uint8))
    after = memory_summary()
    assert after["used"] >= before["used"] + 2_000_000
    assert after["num_objects"] >= before["num_objects"] + 1
    del big


# -- arrays built in the store ------------------------------------------------------------------------
@ray.remote
def array_sum(a):
    return float(a.sum()), a.shape, str(a.dtype)


def _addr(a) -> int:
    return a.__array_interface__["data"][0]


def test_empty_then_put_shares_memory_and_seals_the_array(rt):
    arr = miniray.util.empty((500, 400), "float64")
    assert arr.flags.writeable and arr.shape == (500, 400) and arr.dtype == np.float64
    arr[:] = np.arange(200_000, dtype=np.float64).reshape(500, 400)
    ref = ray.put(arr)
    assert not arr.flags.writeable, "put seals the array: it becomes read-only"
    with pytest.raises(ValueError):
        arr[0, 0] = 1.0
    back = ray.get(ref)
    assert _addr(back) == _addr(arr), "get returns the very memory that was filled: no copy"
    assert np.array_equal(back, np.arange(200_000, dtype=np.float64).reshape(500, 400))
    assert _objects()[ref.hex()]["location"] == "shared_memory"
    expected = float(np.arange(200_000, dtype=np.float64).sum())
    assert ray.get(array_sum.remote(ref), timeout=30) == (expected, (500, 400), "float64")
    del back, arr, ref


def test_empty_refuses_object_dtypes(rt):
    with pytest.raises(TypeError):
        miniray.util.empty((3,), object)
