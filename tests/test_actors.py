"""Actors: issue 3, "Deliver" and "Done means", checked against Ray's documented behaviour.

ActorPool and Queue (miniray.util) are not written yet, so they have no tests here.
"""
from __future__ import annotations

import asyncio
import os
import pickle
import signal
import threading
import time

import psutil
import pytest

import miniray
import miniray as ray
from miniray import exceptions as exc
from helpers import alive, runtime_frames, wait_until

pytestmark = pytest.mark.timeout(60, method="signal")


@pytest.fixture
def fresh():
    miniray.shutdown()
    miniray.init(num_cpus=2)
    yield miniray
    miniray.shutdown()


# -- the seed ---------------------------------------------------------------------------------------
@ray.remote
class Counter(object):
    def __init__(self, init_val=0):
        self.n = init_val

    def increment(self, multiplier=1):
        self.n += 1 * multiplier

    def read(self):
        return self.n


@ray.remote
class TypoCounter(object):
    def __init__(self, init_val=0):
        self.n = init_val

    def increment(self, multiplier=1):
        self.n += 1 * muliplier  # noqa: F821  (the seed's typo)

    def read(self):
        return self.n


TYPO_LINE = TypoCounter._cls.increment.__code__.co_firstlineno + 1


def test_seed_counter(rt):
    counters = [Counter.remote(i) for i in range(4)]
    [c.increment.remote(2) for c in counters]
    assert ray.get([c.read.remote() for c in counters]) == [2, 3, 4, 5]
    for c in counters:
        ray.kill(c)


def test_the_seed_typo_teaches(rt):
    counter = TypoCounter.remote(0)
    ref = counter.increment.remote(2)
    with pytest.raises(NameError) as info:
        ray.get(ref, timeout=30)
    err = info.value
    assert isinstance(err, exc.RayTaskError)
    assert isinstance(err.cause, NameError)
    text = str(err)
    for needle in ("TypoCounter", "increment", "muliplier", "test_actors.py", f"line {TYPO_LINE}"):
        assert needle in text, f"{needle!r} missing from:\n{text}"
    assert not runtime_frames(text), text
    # The actor is still alive and its state untouched, as in Ray.
    assert ray.get(counter.read.remote(), timeout=30) == 0
    ray.kill(counter)


# -- basics -----------------------------------------------------------------------------------------
@ray.remote
class Log:
    def __init__(self):
        self.items = []

    def append(self, x):
        self.items.append(x)
        return len(self.items)

    def items_(self):
        return self.items

    def pid(self):
        return os.getpid()


def test_calls_from_one_caller_run_in_order_across_1000_calls(rt):
    log = Log.remote()
    refs = [log.append.remote(i) for i in range(1000)]
    assert ray.get(refs) == list(range(1, 1001))
    assert ray.get(log.items_.remote()) == list(range(1000))
    ray.kill(log)


def test_each_actor_has_its_own_process(rt):
    a, b = Log.remote(), Log.remote()
    pa, pb = ray.get([a.pid.remote(), b.pid.remote()])
    assert pa != pb and pa != os.getpid() and pb != os.getpid()
    assert ray.get(a.pid.remote()) == pa
    ray.kill(a)
    ray.kill(b)


def test_actor_class_and_methods_cannot_be_called_directly(rt):
    with pytest.raises(TypeError, match=r"\.remote\("):
        Counter(0)
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"\.remote\("):
        c.read()
    with pytest.raises(AttributeError):
        c.no_such_method
    with pytest.raises(TypeError):
        c.increment.remote(1, 2, 3)
    ray.kill(c)


def test_decorator_forms_and_options(rt):
    @ray.remote()
    class A:
        def f(self):
            return "a"

    @ray.remote(num_cpus=0)
    class B:
        def f(self):
            return "b"

    a, b = A.remote(), B.remote()
    c = A.options(name="opt_a", num_cpus=0, max_concurrency=2, max_restarts=1, max_task_retries=1).remote()
    assert ray.get([a.f.remote(), b.f.remote(), c.f.remote()]) == ["a", "b", "a"]
    for h in (a, b, c):
        ray.kill(h)


@ray.remote
def bump_via(counter, times):
    for _ in range(times):
        ray.get(counter.increment.remote(1))
    return ray.get(counter.read.remote())


@ray.remote
class Forwarder:
    def __init__(self, counter):
        self.counter = counter

    def bump(self):
        ray.get(self.counter.increment.remote(10))
        return ray.get(self.counter.read.remote())


def test_handles_pass_to_tasks_other_actors_and_pickle(rt):
    c = Counter.remote(0)
    assert ray.get(bump_via.remote(c, 3), timeout=30) == 3
    fwd = Forwarder.remote(c)
    assert ray.get(fwd.bump.remote(), timeout=30) == 13
    again = pickle.loads(pickle.dumps(c))
    ray.get(again.increment.remote(1))
    assert ray.get(c.read.remote()) == 14
    assert again == c and hash(again) == hash(c)
    ray.kill(fwd)
    ray.kill(c)


def test_actor_method_arguments_may_be_refs(rt):
    c = Counter.remote(0)
    ray.get(c.increment.remote(ray.put(5)))
    assert ray.get(c.read.remote()) == 5
    ray.kill(c)


# -- registry ----------------------------------------------------------------------------------------
def test_named_actors_and_get_actor(rt):
    c = Counter.options(name="teacher_counter").remote(7)
    same = ray.get_actor("teacher_counter")
    ray.get(same.increment.remote(1))
    assert ray.get(c.read.remote()) == 8
    with pytest.raises(ValueError):
        ray.get_actor("no_such_actor")
    with pytest.raises(ValueError):
        Counter.options(name="teacher_counter").remote(0)
    other = Counter.options(name="teacher_counter", get_if_exists=True).remote(100)
    assert ray.get(other.read.remote()) == 8, "get_if_exists returns the live actor, not a new one"
    ray.kill(c)
    assert wait_until(lambda: _missing("teacher_counter"), timeout=10), "a killed actor's name is freed"
    fresh_one = Counter.options(name="teacher_counter", get_if_exists=True).remote(100)
    assert ray.get(fresh_one.read.remote()) == 100
    ray.kill(fresh_one)


def _missing(name):
    try:
        ray.get_actor(name)
    except ValueError:
        return True
    return False


@ray.remote
class Sleeper:
    def __init__(self):
        self.inits = 0

    def sleep(self, seconds):
        time.sleep(seconds)
        return "slept"

    def pid(self):
        return os.getpid()


def test_kill_fails_pending_and_later_calls_with_actor_died_error(rt):
    assert issubclass(exc.ActorDiedError, exc.RayActorError)
    s = Sleeper.remote()
    pid = ray.get(s.pid.remote())
    running = s.sleep.remote(20)
    queued = [s.sleep.remote(0) for _ in range(3)]
    time.sleep(0.3)
    ray.kill(s)
    for ref in [running] + queued:
        with pytest.raises(exc.ActorDiedError):
            ray.get(ref, timeout=10)
    with pytest.raises(exc.ActorDiedError) as info:
        ray.get(s.pid.remote(), timeout=10)
    assert "kill" in str(info.value).lower(), str(info.value)
    assert wait_until(lambda: not alive(pid), timeout=10)
    with pytest.raises(TypeError):
        ray.kill(ray.put(1))


@ray.remote
class BadInit:
    def __init__(self):
        raise ValueError("bad constructor argument 42")

    def f(self):
        return 1


def test_constructor_error_fails_calls_and_names_the_exception(rt):
    a = BadInit.remote()
    for _ in range(2):
        with pytest.raises(exc.RayActorError) as info:
            ray.get(a.f.remote(), timeout=20)
        text = str(info.value)
        assert "ValueError" in text and "bad constructor argument 42" in text, text
    assert isinstance(info.value, exc.ActorDiedError)


# -- restarts ----------------------------------------------------------------------------------------
@ray.remote
class Restartable:
    def __init__(self, init_log):
        self.count = 0
        with open(init_log, "a") as f:
            f.write("i")

    def pid(self):
        return os.getpid()

    def incr(self):
        self.count += 1
        return self.count

    def die_once(self, marker, value):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return value


def _inits(path):
    with open(path) as f:
        return len(f.read())


def _get_tolerant(make_ref, timeout=20):
    """Call until the actor answers: a call sent while it was dying may fail with RayActorError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ray.get(make_ref(), timeout=timeout)
        except exc.RayActorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_max_restarts_after_sigkill_gives_a_new_process_that_reruns_init(rt, tmp_path):
    log = str(tmp_path / "inits")
    a = Restartable.options(max_restarts=1).remote(log)
    pid = ray.get(a.pid.remote())
    assert ray.get([a.incr.remote(), a.incr.remote()]) == [1, 2]
    assert _inits(log) == 1
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not alive(pid), timeout=10)
    new_pid = _get_tolerant(lambda: a.pid.remote())
    assert new_pid != pid
    assert _inits(log) == 2, "__init__ runs again in the new process"
    assert ray.get(a.incr.remote()) == 1, "state starts over after a restart"
    # The restart is used up: the next crash is final, and the error says why.
    os.kill(new_pid, signal.SIGKILL)
    assert wait_until(lambda: not alive(new_pid), timeout=10)
    with pytest.raises(exc.ActorDiedError) as info:
        _get_tolerant_until_died(lambda: a.pid.remote())
    assert any(w in str(info.value).lower() for w in ("died", "crash", "exit", "restart")), str(info.value)
    ray.kill(a)


def _get_tolerant_until_died(make_ref, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ray.get(make_ref(), timeout=timeout)
        except exc.ActorDiedError:
            raise
        except exc.RayActorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_max_restarts_zero_means_dead_with_a_reason(rt, tmp_path):
    a = Restartable.options(max_restarts=0).remote(str(tmp_path / "inits"))
    pid = ray.get(a.pid.remote())
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not alive(pid), timeout=10)
    with pytest.raises(exc.ActorDiedError) as info:
        _get_tolerant_until_died(lambda: a.pid.remote())
    text = str(info.value).lower()
    assert any(w in text for w in ("died", "crash", "exit", "killed", "sigkill")), text
    assert _inits(str(tmp_path / "inits")) == 1


def test_running_call_fails_without_max_task_retries(rt, tmp_path):
    a = Restartable.options(max_restarts=1).remote(str(tmp_path / "inits"))
    with pytest.raises(exc.RayActorError):
        ray.get(a.die_once.remote(str(tmp_path / "marker"), "v"), timeout=20)
    assert _get_tolerant(lambda: a.incr.remote()) == 1
    assert _inits(str(tmp_path / "inits")) == 2
    ray.kill(a)


def test_max_task_retries_retries_the_running_call(rt, tmp_path):
    a = Restartable.options(max_restarts=1, max_task_retries=1).remote(str(tmp_path / "inits"))
    assert ray.get(a.die_once.remote(str(tmp_path / "marker"), "answer"), timeout=30) == "answer"
    assert _inits(str(tmp_path / "inits")) == 2
    ray.kill(a)


# -- concurrency ---------------------------------------------------------------------------------------
@ray.remote
class AsyncActor:
    async def nap(self, seconds, value):
        await asyncio.sleep(seconds)
        return value

    async def pid(self):
        return os.getpid()


def test_async_actor_calls_interleave(rt):
    a = AsyncActor.remote()
    ray.get(a.pid.remote())            # the actor is up
    t0 = time.monotonic()
    assert ray.get([a.nap.remote(0.5, i) for i in range(10)], timeout=30) == list(range(10))
    elapsed = time.monotonic() - t0
    assert elapsed < 2.5, f"10 concurrent 0.5 s sleeps took {elapsed:.2f} s"
    ray.kill(a)


@ray.remote
class Threaded:
    def __init__(self, parties):
        self.barrier = threading.Barrier(parties, timeout=15)
        self.lock = threading.Lock()
        self.active = self.peak = 0

    def meet(self):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            self.barrier.wait()      # only returns once `parties` calls run at the same time
            return threading.get_ident()
        finally:
            with self.lock:
                self.active -= 1

    def peak_(self):
        return self.peak


def test_threaded_actor_with_max_concurrency_overlaps(rt):
    a = Threaded.options(max_concurrency=4).remote(4)
    idents = ray.get([a.meet.remote() for _ in range(4)], timeout=30)
    assert len(set(idents)) == 4
    assert ray.get(a.peak_.remote()) == 4
    ray.kill(a)


def test_default_actor_runs_one_call_at_a_time(rt):
    a = Threaded.remote(1)
    ray.get([a.meet.remote() for _ in range(5)], timeout=30)
    assert ray.get(a.peak_.remote()) == 1
    ray.kill(a)


@ray.remote
class Multi:
    @ray.method(num_returns=2)
    def pair(self, x):
        return x, x * 10

    def single(self):
        return (1, 2)


def test_method_num_returns(rt):
    m = Multi.remote()
    a, b = m.pair.remote(3)
    assert ray.get([a, b]) == [3, 30]
    assert ray.get(m.single.remote()) == (1, 2)
    c, d = m.single.options(num_returns=2).remote()
    assert ray.get([c, d]) == [1, 2]
    ray.kill(m)


# -- accounting and events -----------------------------------------------------------------------------
def test_actor_with_num_cpus_holds_its_cpu(fresh):
    assert ray.available_resources()["CPU"] == 2.0
    a = Log.options(num_cpus=1).remote()
    ray.get(a.pid.remote())
    assert wait_until(lambda: ray.available_resources().get("CPU") == 1.0, timeout=5), ray.available_resources()
    assert ray.cluster_resources()["CPU"] == 2.0
    ray.kill(a)
    assert wait_until(lambda: ray.available_resources().get("CPU") == 2.0, timeout=10), ray.available_resources()


def test_actor_calls_in_event_log_and_timeline(rt):
    from miniray import events

    start = events.cursor()
    c = Counter.remote(0)
    ray.get([c.increment.remote(1) for _ in range(3)])
    ref = c.read.remote()
    assert ray.get(ref) == 3
    evs = events.events(start)
    actor_id = c._actor_id
    subs = [e for e in evs if e["kind"] == "submitted" and e.get("actor_id") == actor_id]
    names = [e["name"] for e in subs]
    assert "Counter.__init__" in names and names.count("Counter.increment") == 3 and "Counter.read" in names
    read = next(e for e in subs if e["name"] == "Counter.read")
    assert read["type"] == "actor_method" and list(read["returns"]) == [ref.hex()]
    done = {e["task_id"] for e in evs if e["kind"] == "finished"}
    assert all(e["task_id"] in done for e in subs)
    trace = ray.timeline()
    rows = {e["tid"] for e in trace if e.get("ph") == "X" and e["args"]["task_id"] in {s["task_id"] for s in subs}}
    assert len(rows) == 1, "an actor's calls share one row"
    ray.kill(c)


# -- lifetime: an actor ends when its last handle is gone (Ray's rule) ------------------------------
@pytest.mark.timeout(60, method="signal")
def test_an_actor_ends_when_all_its_handles_are_gone_but_not_before_its_calls(rt):
    import gc

    @ray.remote
    class Shortlived:
        def pid(self):
            return os.getpid()

        def slow(self):
            time.sleep(0.5)
            return "done"

    a = Shortlived.remote()
    pid = ray.get(a.pid.remote())
    del a
    gc.collect()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(pid)
    # a temporary handle: the pending call still runs to the end
    assert ray.get(Shortlived.remote().slow.remote(), timeout=30) == "done"
    # actors holding a CPU for life give it back when dropped, so a loop of them never starves
    @ray.remote(num_cpus=1)
    class Holder:
        def ping(self):
            return 1

    for _ in range(4):
        h = Holder.remote()
        assert ray.get(h.ping.remote(), timeout=30) == 1
        del h
    # as in Ray, a named actor ends with its last handle too; a detached one stays
    named = Shortlived.options(name="goes").remote()
    npid = ray.get(named.pid.remote())
    del named
    gc.collect()
    assert wait_until(lambda: not psutil.pid_exists(npid), timeout=10)
    with pytest.raises(ValueError):
        ray.get_actor("goes")
    kept = Shortlived.options(name="stays", lifetime="detached").remote()
    kpid = ray.get(kept.pid.remote())
    del kept
    gc.collect()
    time.sleep(0.5)
    assert ray.get(ray.get_actor("stays").pid.remote()) == kpid
    ray.kill(ray.get_actor("stays"))
