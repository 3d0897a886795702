"""Actor API as Ray documents it (ray-core/actors, terminating-actors, named-actors): the built-in
``__ray_ready__``/``__ray_terminate__``, ``exit_actor()``, ``list_named_actors``, the actor class
standing for the user's class, invocation decorators, the job's namespace inside actors, per-caller
ordering of calls waiting on arguments, and graceful shutdown hooks.  Real worker processes."""
from __future__ import annotations

import asyncio
import atexit
import os
import time

import psutil
import pytest

import miniray as ray
from miniray import exceptions as exc
from miniray.actor import ActorClassInheritanceException
from helpers import driver_script, start_driver, wait_until

pytestmark = pytest.mark.timeout(60, method="signal")


class Base:
    """A plain base class: an actor class may derive from it."""
    LIMIT = 5

    def base_value(self):
        return "from base"


@ray.remote
class Counter(Base):
    KIND = "counter"

    def __init__(self, exit_in_init=False):
        if exit_in_init:
            ray.actor.exit_actor()
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def leave(self):
        ray.actor.exit_actor()

    def pid(self):
        return os.getpid()

    @classmethod
    def limit(cls):
        return cls.LIMIT * 2

    @staticmethod
    def add(a, b):
        return a + b


@ray.remote
class AsyncLeaver:
    async def leave(self):
        await asyncio.sleep(0)
        ray.actor.exit_actor()

    async def ping(self):
        return "pong"


def _dies(ref):
    with pytest.raises(exc.ActorDiedError):
        ray.get(ref, timeout=30)


def test_ray_ready_is_true_once_constructed(rt):
    c = Counter.remote()
    assert ray.get(c.__ray_ready__.remote(), timeout=30) is True
    ray.kill(c)


def test_exit_actor_fails_its_call_and_the_calls_queued_behind_it(rt):
    c = Counter.options(max_restarts=2).remote()
    pid = ray.get(c.pid.remote(), timeout=30)
    assert ray.get(c.incr.remote()) == 1
    left, after = c.leave.remote(), c.incr.remote()
    _dies(left)
    _dies(after)
    _dies(c.incr.remote())                        # ended on purpose: not restarted
    assert wait_until(lambda: not psutil.pid_exists(pid), timeout=10)


def test_exit_actor_in_the_constructor(rt):
    c = Counter.remote(exit_in_init=True)
    first, second = c.incr.remote(), c.incr.remote()
    _dies(first)
    _dies(second)


def test_exit_actor_in_an_async_actor(rt):
    a = AsyncLeaver.remote()
    assert ray.get(a.ping.remote(), timeout=30) == "pong"
    _dies(a.leave.remote())
    _dies(a.ping.remote())


def test_exit_actor_outside_an_actor_is_a_type_error(rt):
    with pytest.raises(TypeError, match="outside an actor"):
        ray.actor.exit_actor()


def test_ray_terminate_runs_after_the_calls_before_it(rt):
    c = Counter.remote()
    calls = [c.incr.remote() for _ in range(3)]
    end = c.__ray_terminate__.remote()
    assert ray.get(calls, timeout=30) == [1, 2, 3]
    _dies(end)
    _dies(c.incr.remote())


def test_list_named_actors(rt):
    a = Counter.options(name="lna-a").remote()
    b = Counter.options(name="lna-b", namespace="elsewhere").remote()
    ray.get([a.incr.remote(), b.incr.remote()], timeout=30)
    assert "lna-a" in ray.util.list_named_actors() and "lna-b" not in ray.util.list_named_actors()
    every = ray.util.list_named_actors(all_namespaces=True)
    assert {"name": "lna-a", "namespace": "default"} in every
    assert {"name": "lna-b", "namespace": "elsewhere"} in every
    ray.kill(b)
    assert wait_until(lambda: {"name": "lna-b", "namespace": "elsewhere"}
                      not in ray.util.list_named_actors(all_namespaces=True))
    ray.kill(a)


def test_actor_class_exposes_the_users_class(rt):
    assert Counter.KIND == "counter" and Counter.LIMIT == 5          # own and inherited attributes
    assert Counter.limit() == 10 and Counter.add(2, 3) == 5           # classmethod, staticmethod
    assert {"incr", "limit", "add", "KIND", "base_value"} <= set(dir(Counter))
    c = Counter.remote()
    assert ray.get([c.limit.remote(), c.add.remote(1, 2), c.base_value.remote()], timeout=30) == \
        [10, 3, "from base"]
    ray.kill(c)


def test_inheriting_from_an_actor_class_is_refused(rt):
    with pytest.raises(ActorClassInheritanceException, match="Inheriting from actor classes"):
        class Derived(Counter):     # noqa: F841
            pass


def _split_first(f):
    """Ray's ``__ray_invocation_decorator__`` hook: rewrites the caller's (args, kwargs)."""
    def invoke(args, kwargs):
        return f([args[0], args[0]], {}), kwargs
    return invoke


def _joins_two(f):
    def run(self, b, c):
        return f(self, b + c)
    run.__ray_invocation_decorator__ = _split_first
    return run


@ray.remote
class Decorated:
    @_joins_two
    def plus_one(self, x):
        return x + 1


def test_decorated_methods_and_invocation_decorators(rt):
    d = Decorated.remote()
    ref, extra = d.plus_one.remote(3, note="kept by the caller")
    assert extra == {"note": "kept by the caller"}
    assert ray.get(ref, timeout=30) == 7
    ray.kill(d)


@ray.remote
class Finder:
    def lookup(self, name):
        return ray.get(ray.get_actor(name).incr.remote()), ray.get_runtime_context().namespace


@ray.remote
def find_in_task(name):
    return ray.get(ray.get_actor(name).incr.remote())


def test_get_actor_inside_actors_and_tasks_uses_the_jobs_namespace(tmp_path):
    ray.shutdown()
    ray.init(num_cpus=2, namespace="course")
    try:
        reg = Counter.options(name="registry").remote()
        f = Finder.remote()
        assert ray.get(f.lookup.remote("registry"), timeout=30) == (1, "course")
        assert ray.get(find_in_task.remote("registry"), timeout=30) == 2
        del reg
    finally:
        ray.shutdown()


@ray.remote
def late(x, delay):
    time.sleep(delay)
    return x


@ray.remote
def call_counter(c):
    return ray.get(c.incr.remote())


def test_a_call_waiting_on_its_argument_does_not_block_other_callers(rt):
    c = Counter.remote()
    ray.get(c.__ray_ready__.remote(), timeout=30)
    slow_arg = late.remote(1, 3.0)
    waiting = c.add.remote(slow_arg, 1)        # held until slow_arg exists
    t0 = time.monotonic()
    assert ray.get(call_counter.remote(c), timeout=30) == 1       # another caller is not held
    assert time.monotonic() - t0 < 2.5
    assert ray.get(waiting, timeout=30) == 2
    ray.kill(c)


def test_graceful_shutdown_hooks_run_on_last_handle_and_shutdown_not_on_kill(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    script = driver_script(tmp_path, f"""
        import atexit, gc, os, time
        import miniray as ray

        MARKS = {str(marks)!r}

        def mark(name):
            open(os.path.join(MARKS, name), "w").close()

        @ray.remote
        class Tidy:
            def __init__(self, tag):
                self.tag = tag
                atexit.register(mark, tag + ".atexit")

            def __ray_shutdown__(self):
                mark(self.tag + ".shutdown")

            def __del__(self):
                mark(self.tag + ".del")

            def ping(self):
                return os.getpid()

        ray.init(num_cpus=2)
        dropped, killed, kept = Tidy.remote("dropped"), Tidy.remote("killed"), Tidy.remote("kept")
        ray.get([dropped.ping.remote(), killed.ping.remote(), kept.ping.remote()])
        del dropped
        gc.collect()
        ray.kill(killed)
        time.sleep(1.0)
        ray.shutdown()
        print("DONE", flush=True)
    """)
    proc = start_driver(script)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "DONE" in out, err
    seen = set(os.listdir(marks))
    for tag in ("dropped", "kept"):       # last handle gone (as Ray); shutdown (Ray 2.60 does not)
        assert {f"{tag}.shutdown", f"{tag}.del", f"{tag}.atexit"} <= seen, seen
    assert not {m for m in seen if m.startswith("killed")}, "kill() is a force kill, as in Ray"


def test_exit_actor_runs_the_shutdown_hooks(rt, tmp_path):
    mark = tmp_path / "hook"

    @ray.remote
    class Hooked:
        def __ray_shutdown__(self):
            mark.write_text("ran")

        def leave(self):
            ray.actor.exit_actor()

    h = Hooked.remote()
    _dies(h.leave.remote())
    assert wait_until(mark.exists, timeout=10)


@ray.remote
class AsyncReady:
    async def ping(self):
        return "pong"


def test_built_ins_on_an_async_actor(rt):
    a = AsyncReady.remote()
    assert ray.get(a.__ray_ready__.remote(), timeout=30) is True
    assert ray.get(a.ping.options(name="renamed").remote(), timeout=30) == "pong"
    _dies(a.__ray_terminate__.remote())
    _dies(a.ping.remote())


def test_methods_reach_their_own_actor_class_attributes_inside_the_actor(rt):
    class Parent:
        PARENT = 6

        @staticmethod
        def helper():
            return 1

    @ray.remote
    class Local(Parent):
        X = 3

        @classmethod
        def doubled(cls):
            return Local.PARENT * 2

        def total(self):                  # the name Local is the actor class, here in the worker
            return Local.X + Local.doubled() + Local.helper()

    a = Local.remote()
    assert ray.get(a.total.remote(), timeout=30) == 16
    ray.kill(a)


@ray.remote
class Background:
    def __init__(self, marker):
        self.marker = marker
        self.ticks = 0
        self.task = asyncio.create_task(self.tick())   # an async actor's constructor runs on its loop

    async def tick(self):
        while True:
            self.ticks += 1
            await asyncio.sleep(0.01)

    async def count(self):
        await asyncio.sleep(0.1)
        return self.ticks

    async def leave_later(self):
        async def leave():
            atexit.register(lambda: open(self.marker, "w").close())
            ray.actor.exit_actor()
        asyncio.create_task(leave())
        return "scheduled"


def test_async_actor_constructor_starts_tasks_and_exit_from_a_background_task(rt, tmp_path):
    marker = str(tmp_path / "atexit")
    b = Background.remote(marker)
    assert ray.get(b.count.remote(), timeout=30) > 0
    assert ray.get(b.leave_later.remote(), timeout=30) == "scheduled"
    assert wait_until(lambda: os.path.exists(marker), timeout=10)
    with pytest.raises(exc.RayActorError):
        ray.get(b.count.remote(), timeout=30)
