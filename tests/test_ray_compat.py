"""What Ray's own documentation examples rely on (DESIGN.md), and clear errors for bad input.

Each test is written the way Ray's docs write the feature, and checks what Ray documents.  Scripts
that must start a runtime by themselves, exit on their own, or print to a terminal run as real
subprocess drivers; the rest share one two-CPU runtime (``rt``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import signal
import time

import pytest

import miniray
import miniray as ray
from miniray import exceptions as exc
from miniray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from helpers import alive, driver_script, shm_of, start_driver, wait_until

pytestmark = pytest.mark.timeout(60, method="signal")


def _touch(path, text=""):
    with open(path, "a") as f:
        f.write(text)


def _run_script(tmp_path, body, timeout=30):
    """Run a driver script to its end; (returncode, stdout, stderr, seconds)."""
    path = driver_script(tmp_path, body)
    t0 = time.monotonic()
    proc = start_driver(path)
    try:
        out, err = proc.communicate(timeout=timeout)
    except Exception:
        proc.kill()
        out, err = proc.communicate()
        miniray.api.reap_stale_sessions()     # the killed driver's /dev/shm segment
        raise AssertionError(f"the script did not finish in {timeout} s; stderr:\n{err}")
    return proc, out, err, time.monotonic() - t0


@ray.remote
def square(x):
    return x * x


@ray.remote
def ident(x):
    return x


# -- auto-start and clean exit (subprocess drivers) ------------------------------------------------------
def test_put_get_and_actors_auto_start_without_init(tmp_path):
    proc, out, err, _ = _run_script(tmp_path, """
        import miniray as ray

        assert not ray.is_initialized()
        ref = ray.put({"a": 1})            # the first put starts a local runtime, as in Ray
        print("PUT", ray.get(ref), ray.is_initialized(), flush=True)

        @ray.remote
        class Counter:
            def __init__(self):
                self.n = 0
            def incr(self):
                self.n += 1
                return self.n

        c = Counter.remote()
        print("ACTOR", ray.get([c.incr.remote() for _ in range(3)]), flush=True)
    """)
    assert proc.returncode == 0, err
    assert "PUT {'a': 1} True" in out
    assert "ACTOR [1, 2, 3]" in out


def test_script_without_init_ending_with_work_in_flight_exits_promptly_and_cleanly(tmp_path):
    proc, out, err, elapsed = _run_script(tmp_path, """
        import time, psutil
        import miniray as ray

        @ray.remote
        def forever():
            time.sleep(120)

        @ray.remote
        def stream():
            for i in range(1000):
                time.sleep(0.1)
                yield i

        @ray.remote
        class Busy:
            def spin(self):
                time.sleep(120)

        gen = stream.remote()                           # no init(): auto-started
        first = next(gen)
        refs = [forever.remote() for _ in range(3)]     # more than the CPUs: some stay queued
        b = Busy.remote()
        call = b.spin.remote()
        held = ray.put(b"x" * 2_000_000)
        time.sleep(0.3)
        print("PIDS", ",".join(str(p.pid) for p in psutil.Process().children(recursive=True)), flush=True)
    """)
    assert proc.returncode == 0, err
    assert elapsed < 15, f"the script took {elapsed:.1f} s to exit (startup included)"
    assert "Traceback" not in err, err
    pids = [int(p) for p in out.split("PIDS", 1)[1].split()[0].split(",") if p]
    assert pids, out
    assert wait_until(lambda: not any(alive(p) for p in pids), timeout=5), \
        f"workers outlived the script: {[p for p in pids if alive(p)]}"
    assert not shm_of(proc.pid)


def test_worker_prints_reach_the_driver_stdout_with_a_name_and_pid_prefix(tmp_path):
    proc, out, err, _ = _run_script(tmp_path, """
        import os
        import miniray as ray
        ray.init(num_cpus=2)

        @ray.remote
        def chatty():
            print("hello from a task")
            return os.getpid()

        @ray.remote
        class Talker:
            def say(self):
                print("hello from an actor")
                return os.getpid()

        t = Talker.remote()
        print("TASKPID", ray.get(chatty.remote()), flush=True)
        print("ACTORPID", ray.get(t.say.remote()), flush=True)
        import time; time.sleep(0.5)    # let the forwarded lines arrive before exit
    """)
    assert proc.returncode == 0, err
    task_pid = int(re.search(r"TASKPID (\d+)", out).group(1))
    actor_pid = int(re.search(r"ACTORPID (\d+)", out).group(1))
    lines = out.splitlines()
    assert any(re.fullmatch(rf"\(chatty pid={task_pid}\) hello from a task", ln) for ln in lines), out
    assert any(re.fullmatch(rf"\(Talker pid={actor_pid}\) hello from an actor", ln) for ln in lines), out


# -- actor options ------------------------------------------------------------------------------------------
@ray.remote
class Holder:
    def __init__(self, value=0):
        self.value = value

    def get(self):
        return self.value

    def set(self, v):
        self.value = v

    def pid(self):
        return os.getpid()


def test_named_namespaced_get_if_exists_detached_actor(rt):
    opts = dict(name="registry", namespace="course", get_if_exists=True, lifetime="detached")
    a = Holder.options(**opts).remote(1)
    b = Holder.options(**opts).remote(2)             # the same actor, not a new one
    assert ray.get(b.get.remote()) == 1
    ray.get(b.set.remote(5))
    assert ray.get(a.get.remote()) == 5
    found = ray.get_actor("registry", namespace="course")
    assert ray.get(found.get.remote()) == 5
    with pytest.raises(ValueError):
        ray.get_actor("registry")                    # another namespace: not found
    other = Holder.options(name="registry", namespace="other", get_if_exists=True).remote(9)
    assert ray.get(other.get.remote()) == 9, "the same name in another namespace is another actor"
    ray.kill(a)
    ray.kill(other)


def _pid_when_back(actor, timeout=20):
    """The actor's pid once it answers again (it may be restarting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return ray.get(actor.pid.remote(), timeout=5)
        except exc.RayActorError:
            time.sleep(0.1)
    raise AssertionError("the actor did not come back")


def test_max_restarts_minus_one_restarts_for_ever(rt):
    a = Holder.options(max_restarts=-1).remote(7)
    seen = []
    for _ in range(3):
        pid = _pid_when_back(a)
        assert pid not in seen
        seen.append(pid)
        ray.get(a.set.remote(100))
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not alive(pid), timeout=10)
    _pid_when_back(a)
    assert ray.get(a.get.remote(), timeout=10) == 7, "each restart re-runs __init__"
    ray.kill(a)
    with pytest.raises(exc.RayActorError):
        ray.get(a.get.remote(), timeout=10)


# -- scheduling strategy, memory, runtime_env ----------------------------------------------------------
@ray.remote
def where():
    return ray.get_runtime_context().get_node_id()


def test_node_affinity_scheduling_strategy(rt):
    node_id = ray.get_runtime_context().get_node_id()
    hard = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    assert ray.get(where.options(scheduling_strategy=hard).remote(), timeout=30) == node_id
    # With soft=True the task runs even if the node is unknown.
    soft = NodeAffinitySchedulingStrategy(node_id="ff" * 14, soft=True)
    assert ray.get(where.options(scheduling_strategy=soft).remote(), timeout=30) == node_id
    # "DEFAULT" and "SPREAD" are accepted as strings, as in Ray.
    assert ray.get(square.options(scheduling_strategy="SPREAD").remote(3), timeout=30) == 9
    assert ray.get(square.options(scheduling_strategy="DEFAULT").remote(4), timeout=30) == 16
    a = Holder.options(scheduling_strategy=hard).remote(3)
    assert ray.get(a.get.remote(), timeout=30) == 3
    ray.kill(a)


@ray.remote
def hold_until(path, seconds=20):
    end = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.02)
    return "released"


def test_memory_option_is_accepted_and_accounted(rt, tmp_path):
    total = ray.cluster_resources()["memory"]
    mem = 500 * 1024 * 1024
    release = str(tmp_path / "release")
    ref = hold_until.options(memory=mem).remote(release)
    assert wait_until(lambda: ray.available_resources().get("memory", 0) <= total - mem + 1, timeout=10), \
        "a running task's memory= is not taken from available_resources()"
    _touch(release)
    assert ray.get(ref, timeout=30) == "released"
    assert wait_until(lambda: ray.available_resources().get("memory") == total, timeout=10)
    a = Holder.options(memory=mem).remote(1)
    assert ray.get(a.get.remote(), timeout=30) == 1
    ray.kill(a)


@ray.remote
def env(name):
    return os.environ.get(name)


@ray.remote
class EnvReader:
    def read(self, name):
        return os.environ.get(name)


def test_runtime_env_env_vars_reach_the_task_and_not_the_driver(rt):
    name = "MINIRAY_COMPAT_TEST_VAR"
    assert name not in os.environ
    renv = {"env_vars": {name: "teaching"}}
    assert ray.get(env.options(runtime_env=renv).remote(name), timeout=30) == "teaching"
    assert name not in os.environ, "the driver's environment must not change"
    # Later tasks without the option, on the same workers, do not see it.
    assert ray.get([env.remote(name) for _ in range(4)], timeout=30) == [None] * 4

    @ray.remote(runtime_env=renv)
    def decorated(n):
        return os.environ.get(n)

    assert ray.get(decorated.remote(name), timeout=30) == "teaching"
    reader = EnvReader.options(runtime_env=renv).remote()
    assert ray.get(reader.read.remote(name), timeout=30) == "teaching"
    ray.kill(reader)


# -- runtime context, errors, progress bars, futures -------------------------------------------------------
@ray.remote
def cooperative(report):
    """Records is_canceled() before and after the cancel's KeyboardInterrupt, as Ray's docs suggest."""
    ctx = ray.get_runtime_context()
    _touch(report, f"start={ctx.is_canceled()}\n")
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            time.sleep(0.01)
        except KeyboardInterrupt:
            _touch(report, f"interrupted={ctx.is_canceled()}\n")
            break
    _touch(report, f"end={ray.get_runtime_context().is_canceled()}\n")
    return "finished"


def test_is_canceled_becomes_true_after_cancel(rt, tmp_path):
    report = str(tmp_path / "report")
    ref = cooperative.remote(report)
    assert wait_until(lambda: os.path.exists(report), timeout=10)
    ray.cancel(ref)
    assert wait_until(lambda: "end=" in open(report).read(), timeout=10), open(report).read()
    try:    # the task caught the interrupt and returned: Ray leaves get's outcome open here
        ray.get(ref, timeout=10)
    except exc.TaskCancelledError:
        pass
    text = open(report).read()
    assert "start=False" in text
    assert "interrupted=True" in text and "end=True" in text, text


class Oops(Exception):
    def __init__(self, code):
        super().__init__(f"oops {code}")
        self.code = code


@ray.remote
def raise_value():
    raise ValueError("bad value")


@ray.remote
def raise_oops():
    raise Oops(42)


def test_ray_task_error_cause_is_the_original_exception(rt):
    with pytest.raises(exc.RayTaskError) as info:
        ray.get(raise_value.remote())
    cause = info.value.cause
    assert type(cause) is ValueError and cause.args == ("bad value",)
    assert not isinstance(cause, exc.RayTaskError)
    with pytest.raises(Oops) as info:
        ray.get(raise_oops.remote())
    assert isinstance(info.value, exc.RayTaskError)
    assert type(info.value.cause) is Oops and info.value.cause.code == 42


@ray.remote
def with_progress(n):
    from miniray.experimental.tqdm_ray import tqdm
    total = 0
    for i in tqdm(range(n), desc="loop"):
        total += i
    bar = tqdm(total=n, desc="manual")
    for _ in range(n):
        bar.update(1)
    bar.close()
    with tqdm(total=2) as ctx_bar:
        ctx_bar.update(2)
    return total, bar.n


def test_tqdm_ray_inside_a_task(rt):
    assert ray.get(with_progress.remote(20), timeout=30) == (sum(range(20)), 20)


def test_object_ref_future(rt):
    fut = square.remote(6).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=30) == 36
    futs = [square.remote(i).future() for i in range(5)]
    done, _ = concurrent.futures.wait(futs, timeout=30)
    assert len(done) == 5 and sorted(f.result() for f in futs) == [0, 1, 4, 9, 16]
    bad = raise_value.remote().future()
    with pytest.raises(ValueError):
        bad.result(timeout=30)


def test_await_a_ref_in_driver_asyncio(rt):
    async def main():
        one = await square.remote(7)
        many = await asyncio.gather(*[square.remote(i) for i in range(4)])
        return one, many

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (49, [0, 1, 4, 9])


@ray.remote
class AsyncAwaiter:
    async def await_ref(self, refs):
        return await refs[0]

    async def await_task(self, x):
        return await square.remote(x)

    async def await_future(self, refs):
        return await asyncio.wrap_future(refs[0].future())


def test_await_a_ref_in_an_async_actor(rt):
    a = AsyncAwaiter.remote()
    ref = ray.put("put value")
    assert ray.get(a.await_ref.remote([ref]), timeout=30) == "put value"     # nested: stays a ref
    assert ray.get(a.await_task.remote(9), timeout=30) == 81
    assert ray.get(a.await_future.remote([square.remote(5)]), timeout=30) == 25
    ray.kill(a)


# -- bad input gets clear errors ----------------------------------------------------------------------
def test_unknown_option_names_are_refused_and_named(rt):
    with pytest.raises(ValueError, match="num_cpu"):
        square.options(num_cpu=1)
    with pytest.raises(ValueError, match="max_retry"):
        ray.remote(max_retry=2)(lambda: 1)
    with pytest.raises(ValueError, match="max_restart"):
        Holder.options(max_restart=1)
    with pytest.raises(ValueError, match="num_retries"):
        @ray.remote(num_retries=1)
        class Bad:
            pass


@pytest.mark.parametrize("opts", [{"num_cpus": -1}, {"num_gpus": -2}, {"memory": -5}, {"num_cpus": "two"}])
def test_negative_or_non_numeric_resources_are_refused(rt, opts):
    with pytest.raises((ValueError, TypeError), match=next(iter(opts))):
        square.options(**opts).remote(1)
    with pytest.raises((ValueError, TypeError), match=next(iter(opts))):
        Holder.options(**opts).remote()


@pytest.mark.parametrize("key, hint", [("CPU", "num_cpus"), ("GPU", "num_gpus")])
def test_cpu_or_gpu_in_resources_points_to_the_option(rt, key, hint):
    with pytest.raises(ValueError, match=hint):
        square.options(resources={key: 1}).remote(1)
    with pytest.raises(ValueError, match=hint):
        ray.remote(resources={key: 1})(lambda: 1)


def test_wait_refuses_duplicates_and_non_lists(rt):
    r = ray.put(1)
    with pytest.raises(ValueError, match="(?i)twice|duplicate|unique"):
        ray.wait([r, r])
    with pytest.raises(TypeError, match=r"(?i)list"):
        ray.wait(r)
    with pytest.raises((TypeError, ValueError)):
        ray.wait([r, 5])
    with pytest.raises((TypeError, ValueError)):
        ray.wait(5)


@pytest.mark.parametrize("bad", [5, "ref", {"a": 1}, [ray.put]])
def test_get_of_a_non_ref_says_what_it_got(rt, bad):
    with pytest.raises(ValueError, match="ObjectRef"):
        ray.get(bad)


def test_put_of_a_ref_is_refused_with_a_reason(rt):
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.put(square.remote(2))


def test_calling_an_actor_class_directly_explains_remote(rt):
    with pytest.raises(TypeError, match=r"Holder\.remote\("):
        Holder(1)


def test_unknown_actor_method_lists_the_methods(rt):
    a = Holder.remote()
    with pytest.raises(AttributeError) as info:
        a.gett.remote()
    msg = str(info.value)
    assert "gett" in msg and all(m in msg for m in ("get", "set", "pid")), msg
    ray.kill(a)


def test_kill_of_a_non_handle_is_refused(rt):
    # Ray raises ValueError("ray.kill() only supported for actors..."); TypeError is accepted too.
    for bad in (square.remote(1), "actor", Holder):
        with pytest.raises((TypeError, ValueError), match="(?i)actor"):
            ray.kill(bad)
