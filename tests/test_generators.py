"""Generator tasks as Ray documents them (ray-core/tasks/generators, ray-core/ray-generator):
an int num_returns maps each yield to its own ref, with partial failures; "dynamic" gives one ref
to a DynamicObjectRefGenerator whose last ref holds an error; a streaming generator that raised
gives the error as one more ref, then ends; get and wait take a streaming generator."""
from __future__ import annotations

import time

import pytest

import miniray as ray
from miniray import exceptions as exc


@ray.remote(num_returns=3)
def three_then_fail(k):
    for i in range(k):
        yield i * 10
    raise ValueError(f"stopped after {k}")


@ray.remote(num_returns=3)
def yields(k):
    yield from range(k)


@ray.remote
def stream_then_fail(k):
    for i in range(k):
        yield i
    raise KeyError("mid-stream")


@ray.remote
def plain():
    return "value"


def test_int_num_returns_maps_each_yield_to_its_own_ref(rt):
    refs = yields.remote(3)
    assert isinstance(refs, list) and len(refs) == 3
    assert ray.get(refs, timeout=30) == [0, 1, 2]


def test_int_num_returns_partial_failure_keeps_the_values_yielded_before_it(rt):
    first, second, third = three_then_fail.remote(2)
    assert ray.get([first, second], timeout=30) == [0, 10]
    with pytest.raises(ValueError, match="stopped after 2"):
        ray.get(third, timeout=30)
    a, b, c = three_then_fail.remote(0)     # raised before any yield: every ref holds the error
    for r in (a, b, c):
        with pytest.raises(exc.RayTaskError):
            ray.get(r, timeout=30)


def test_int_num_returns_too_few_yields_fails_the_missing_refs_and_extra_ones_are_dropped(rt):
    a, b, c = yields.remote(1)
    assert ray.get(a, timeout=30) == 0
    for r in (b, c):
        with pytest.raises(ValueError, match="num_returns=3"):
            ray.get(r, timeout=30)
    assert ray.get(yields.remote(5), timeout=30) == [0, 1, 2]


def test_dynamic_returns_a_ref_to_a_dynamic_object_ref_generator(rt):
    ref = yields.options(num_returns="dynamic").remote(4)
    assert isinstance(ref, ray.ObjectRef)
    gen = ray.get(ref, timeout=30)
    assert isinstance(gen, ray.DynamicObjectRefGenerator)
    assert len(gen) == 4 and ray.get(list(gen)) == [0, 1, 2, 3]


def test_dynamic_generator_error_is_its_last_ref(rt):
    gen = ray.get(stream_then_fail.options(num_returns="dynamic").remote(2), timeout=30)
    refs = list(gen)
    assert len(refs) == 3
    assert ray.get(refs[:2]) == [0, 1]
    with pytest.raises(KeyError, match="mid-stream"):
        ray.get(refs[2])


def test_streaming_error_is_one_ref_then_the_stream_ends(rt):
    gen = stream_then_fail.remote(1)
    assert isinstance(gen, ray.ObjectRefGenerator)
    assert ray.get(next(gen), timeout=30) == 0
    err_ref = next(gen)
    with pytest.raises(KeyError, match="mid-stream"):
        ray.get(err_ref, timeout=30)
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(StopIteration):
        next(gen)


def test_get_of_a_streaming_generator_returns_it_and_wait_takes_it(rt):
    gen = yields.options(num_returns="streaming").remote(2)
    assert ray.get(gen) is gen
    other = plain.remote()
    ready, _ = ray.wait([gen, other], num_returns=2, timeout=30)
    assert len(ready) == 2 and gen in ready and other in ready
    assert [ray.get(r) for r in gen] == [0, 1]
    ready, not_ready = ray.wait([gen], timeout=30)      # a finished stream counts as ready
    assert ready == [gen] and not_ready == []


def test_num_returns_none_means_the_default(rt):
    assert ray.get(plain.options(num_returns=None).remote(), timeout=30) == "value"
    gen = yields.options(num_returns=None).remote(2)    # back to the generator default: streaming
    assert isinstance(gen, ray.ObjectRefGenerator)
    assert [ray.get(r) for r in gen] == [0, 1]


@ray.remote
class Yielder:
    @ray.method(num_returns=2)
    def pair(self):
        yield "a"
        yield "b"


def test_actor_method_generator_with_int_num_returns(rt):
    y = Yielder.remote()
    assert ray.get(y.pair.remote(), timeout=30) == ["a", "b"]
    ray.kill(y)


@ray.remote(max_retries=1)
def flaky_dynamic(counter, k):
    for i in range(k):
        yield i
        if ray.get(counter.incr.remote()) == 1:
            raise OSError("first run only")


@ray.remote
class Calls:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


@ray.remote
def total_of(refs):
    return sum(ray.get(list(refs)))


def test_num_returns_one_takes_the_single_yield_and_refs_travel_into_tasks(rt):
    assert ray.get(yields.options(num_returns=1).remote(1), timeout=30) == 0
    dyn = yields.options(num_returns="dynamic").remote(4)
    assert ray.get(total_of.remote(dyn), timeout=30) == 6              # the ref resolves to the generator
    assert ray.get(total_of.remote(ray.get(dyn)), timeout=30) == 6     # the generator itself pickles
    assert ray.get(total_of.remote(yields.remote(3)), timeout=30) == 3  # a list of refs (num_returns=3)


def test_dynamic_on_a_plain_function_fails_at_get(rt):
    with pytest.raises(exc.RayTaskError, match="not a generator"):
        ray.get(plain.options(num_returns="dynamic").remote(), timeout=30)


def test_dynamic_generator_is_retried_under_retry_exceptions(rt):
    counter = Calls.remote()
    refs = list(ray.get(flaky_dynamic.options(num_returns="dynamic").remote(counter, 3), timeout=30))
    assert len(refs) == 2                                   # no retry by default: the error is the last ref
    with pytest.raises(OSError):
        ray.get(refs[1])
    counter = Calls.remote()
    again = flaky_dynamic.options(num_returns="dynamic", retry_exceptions=[OSError]).remote(counter, 3)
    assert ray.get(list(ray.get(again, timeout=30))) == [0, 1, 2]


@ray.remote
class Flag:
    def __init__(self):
        self.up = True

    def is_up(self):
        return self.up

    def lower(self):
        self.up = False


@ray.remote(retry_exceptions=[ValueError], max_retries=3)
def fails_once_at_two(flag):
    for i in range(4):
        if i == 2 and ray.get(flag.is_up.remote()):
            ray.get(flag.lower.remote())
            raise ValueError("first attempt")
        yield i


def test_a_streaming_generator_retried_under_retry_exceptions_goes_on_where_it_was(rt):
    gen = fails_once_at_two.remote(Flag.remote())
    assert [ray.get(r, timeout=30) for r in gen] == [0, 1, 2, 3]


@ray.remote
def slow_stream():
    for i in range(20):
        yield i
        time.sleep(0.5)


@ray.remote
class SlowStreamer:
    def run(self):
        for i in range(20):
            yield i
            time.sleep(0.3)

    async def fails_first(self):
        raise ValueError("before any yield")
        yield 1


def test_cancel_a_streaming_generator(rt):
    gen = slow_stream.remote()
    assert ray.get(next(gen), timeout=30) == 0
    ray.cancel(gen)
    refs = list(gen)                 # what was yielded before the cancel, then the error, then the end
    with pytest.raises(exc.TaskCancelledError):
        ray.get(refs[-1], timeout=30)
    with pytest.raises(StopIteration):
        next(gen)


def test_killing_the_actor_mid_stream_ends_the_stream_with_its_error(rt):
    a = SlowStreamer.remote()
    gen = a.run.remote()
    assert ray.get(next(gen), timeout=30) == 0
    ray.kill(a)
    refs = list(gen)
    with pytest.raises(exc.RayActorError):
        ray.get(refs[-1], timeout=30)
    for _ in range(3):
        with pytest.raises(StopIteration):
            next(gen)


def test_async_generator_that_raises_before_yielding(rt):
    a = SlowStreamer.remote()
    gen = a.fails_first.remote()
    with pytest.raises(ValueError, match="before any yield"):
        ray.get(next(gen), timeout=30)
    with pytest.raises(StopIteration):
        next(gen)
    ray.kill(a)


def test_a_streaming_generator_does_not_pickle(rt):
    import pickle
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(yields.options(num_returns="streaming").remote(1))
