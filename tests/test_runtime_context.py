"""``get_runtime_context()`` attributes and methods, the ref helpers (``future``, ``as_future``,
``_on_completed``, ``ObjectID``, ``types.ObjectRef[...]``), ``JobConfig``, the worker environment
(OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES) and ``cancel(recursive=True)``, as Ray documents them."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

import miniray as ray
from miniray import exceptions as exc
from miniray.job_config import JobConfig
from helpers import wait_until

pytestmark = pytest.mark.timeout(60, method="signal")


@ray.remote
def task_context():
    c = ray.get_runtime_context()
    return {"node_id": c.get_node_id(), "task_id": c.get_task_id(), "job_id": c.get_job_id(),
            "actor_id": c.get_actor_id(),
            "namespace": c.namespace, "worker": c.get_worker_id(), "resources": c.get_assigned_resources(),
            "name": c.get_task_name(), "function": c.get_task_function_name(), "get": c.get(),
            "get_task_id": c.get_task_id(), "pid": os.getpid()}


@ray.remote(num_cpus=1)
class Reporter:
    def __init__(self):
        self.rebuilt_at_init = ray.get_runtime_context().was_current_actor_reconstructed

    def context(self):
        c = ray.get_runtime_context()
        return {"actor_id": c.get_actor_id(), "rebuilt": c.was_current_actor_reconstructed,
                "rebuilt_at_init": self.rebuilt_at_init, "function": c.get_task_function_name(),
                "me": c.current_actor, "name": c.get_task_name(), "actor_name": c.get_actor_name(),
                "resources": c.get_assigned_resources(), "omp": os.environ.get("OMP_NUM_THREADS")}

    def crash(self):
        os._exit(1)


def test_runtime_context_in_a_task(rt):
    info = ray.get(task_context.remote(), timeout=30)
    driver = ray.get_runtime_context()
    assert info["node_id"] == driver.get_node_id()
    assert info["job_id"] == driver.get_job_id() and info["namespace"] == driver.namespace == "default"
    assert info["task_id"] == info["get_task_id"] and info["task_id"]
    assert info["actor_id"] is None and info["worker"] != driver.get_worker_id()
    assert info["resources"] == {"CPU": 1.0}
    assert info["name"] == "task_context" and info["function"].endswith("task_context")
    assert info["get"]["task_id"] == info["task_id"] and "actor_id" not in info["get"]
    named = ray.get(task_context.options(name="renamed", num_cpus=2).remote(), timeout=30)
    assert named["name"] == "renamed" and named["resources"] == {"CPU": 2.0}


def test_runtime_context_in_the_driver(rt):
    c = ray.get_runtime_context()
    assert c.get_task_id() is None and c.get_actor_id() is None and c.get_task_name() is None
    assert c.get_actor_name() is None and c.get_placement_group_id() is None
    with pytest.warns(DeprecationWarning, match="get_node_id"):
        assert c.node_id.hex() == c.get_node_id()
    assert c.get()["job_id"].hex() == c.get_job_id()
    assert c.get() == {"job_id": c.get_job_id(), "node_id": c.get_node_id(), "namespace": "default"}
    assert c.get_assigned_resources() == {}
    with pytest.raises(RuntimeError, match="inside an actor"):
        c.current_actor


def test_runtime_context_in_an_actor_and_after_a_restart(rt):
    r = Reporter.options(name="reporter", max_restarts=1).remote()
    info = ray.get(r.context.remote(), timeout=30)
    assert info["actor_id"] == r._actor_id and info["me"] == r
    assert info["name"] == "Reporter.context" and info["actor_name"] == "reporter"
    assert info["resources"] == {"CPU": 1.0} and info["rebuilt"] is False and not info["rebuilt_at_init"]
    assert info["function"] == f"{__name__}.Reporter.context"
    r.crash.remote()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            info = ray.get(r.context.remote(), timeout=5)
            break
        except exc.RayActorError:
            time.sleep(0.1)
    assert info["rebuilt"] is True and info["rebuilt_at_init"] is True
    ray.kill(r)
    unnamed = Reporter.remote()
    assert ray.get(unnamed.context.remote(), timeout=30)["actor_name"] == ""
    ray.kill(unnamed)


@ray.remote
def double(x):
    return 2 * x


@ray.remote
def fails():
    raise ValueError("no")


def test_on_completed_as_future_object_id_and_types(rt):
    got, done = [], threading.Event()
    double.remote(21)._on_completed(lambda v: (got.append(v), done.set()))
    assert done.wait(30) and got == [42]
    errs, failed = [], threading.Event()
    fails.remote()._on_completed(lambda v: (errs.append(v), failed.set()))
    assert failed.wait(30) and isinstance(errs[0], ValueError)

    async def main():
        fut = double.remote(4).as_future()
        assert isinstance(fut, asyncio.Future)
        return await fut
    assert asyncio.run(asyncio.wait_for(main(), 30)) == 8
    assert ray.ObjectID is ray.ObjectRef
    from miniray import types

    assert types.ObjectRef[int].__origin__ is ray.ObjectRef and types.ObjectRef[int].__args__ == (int,)
    assert isinstance(ray.put(1), types.ObjectRef)


@ray.remote
def read_env(name):
    return os.environ.get(name)


def test_job_config_namespace_and_env_vars():
    ray.shutdown()
    ray.init(num_cpus=1, job_config=JobConfig(ray_namespace="jc", runtime_env={"env_vars": {"JOBVAR": "1"}}))
    try:
        assert ray.get_runtime_context().namespace == "jc"
        assert ray.get(read_env.remote("JOBVAR"), timeout=30) == "1"
        assert ray.get(read_env.options(runtime_env={"env_vars": {"JOBVAR": "2"}}).remote("JOBVAR"),
                       timeout=30) == "2"
        assert "JOBVAR" not in os.environ
    finally:
        ray.shutdown()
    with pytest.raises(TypeError):
        ray.init(job_config={"runtime_env": {}})
    with pytest.raises(ValueError):
        JobConfig(runtime_env={"pip": ["requests"]})


def test_omp_num_threads_follows_the_tasks_cpus_and_cuda_is_left_alone(rt):
    assert ray.get(read_env.remote("OMP_NUM_THREADS"), timeout=30) == "1"
    assert ray.get(read_env.options(num_cpus=2).remote("OMP_NUM_THREADS"), timeout=30) == "2"
    assert ray.get(read_env.remote("OMP_NUM_THREADS"), timeout=30) == "1", "restored after the call"
    assert ray.get(read_env.remote("CUDA_VISIBLE_DEVICES"), timeout=30) == os.environ.get("CUDA_VISIBLE_DEVICES")
    r = Reporter.remote()
    assert ray.get(r.context.remote(), timeout=30)["omp"] == "1"
    ray.kill(r)


@ray.remote
def child(marker, steps):
    for _ in range(steps):
        time.sleep(0.05)
    open(marker, "w").close()
    return "child finished"


@ray.remote
def parent(marker, started, steps=600):
    ref = child.remote(marker, steps)
    open(started, "w").close()
    return ray.get(ref)


@ray.remote
def grandparent(marker, started):
    return ray.get(parent.remote(marker, started))


def _cancel_when_running(ref, started, **kw):
    assert wait_until(lambda: os.path.exists(started), timeout=20)
    time.sleep(0.3)                          # the child is placed and running
    ray.cancel(ref, **kw)
    with pytest.raises((exc.TaskCancelledError, exc.WorkerCrashedError)):
        ray.get(ref, timeout=30)


@pytest.mark.parametrize("force", [False, True], ids=["interrupt", "force"])
def test_cancel_is_recursive_by_default(rt, tmp_path, force):
    started, marker = str(tmp_path / "started"), str(tmp_path / "child-done")
    _cancel_when_running(parent.remote(marker, started), started, force=force)
    # the child was cancelled too: the CPUs come back at once, not after its 30 s
    assert wait_until(lambda: ray.available_resources().get("CPU", 0) == 2, timeout=10)
    assert not os.path.exists(marker)


def test_recursive_cancel_reaches_grandchildren(rt, tmp_path):
    started, marker = str(tmp_path / "started"), str(tmp_path / "done")
    _cancel_when_running(grandparent.remote(marker, started), started)
    assert wait_until(lambda: ray.available_resources().get("CPU", 0) == 2, timeout=10)
    assert not os.path.exists(marker)


def test_cancel_with_recursive_false_leaves_the_children_running(rt, tmp_path):
    started, marker = str(tmp_path / "started"), str(tmp_path / "done")
    _cancel_when_running(parent.remote(marker, started, 30), started, recursive=False)
    assert wait_until(lambda: os.path.exists(marker), timeout=20), "the child ran to its end"


@ray.remote
def pid_and_gpus():
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), ray.get_gpu_ids()


def test_a_gpu_task_never_reuses_a_cpu_tasks_worker():
    ray.shutdown()
    ray.init(num_cpus=2, num_gpus=1)
    try:
        cpu_pids = {ray.get(pid_and_gpus.remote(), timeout=30)[0] for _ in range(6)}
        gpu_pid, visible, ids = ray.get(pid_and_gpus.options(num_gpus=1).remote(), timeout=30)
        assert gpu_pid not in cpu_pids
        assert visible == "0" and ids == [0]
        again = ray.get(pid_and_gpus.options(num_gpus=1).remote(), timeout=30)
        assert again[1] == "0"
    finally:
        ray.shutdown()


@ray.remote
class AsyncIds:
    async def task_id_after(self, delay):
        before = ray.get_runtime_context().get_task_id()
        await asyncio.sleep(delay)               # another call runs meanwhile on the same thread
        return before, ray.get_runtime_context().get_task_id(), ray.get_runtime_context().get_task_name()


def test_interleaved_async_actor_calls_each_see_their_own_context(rt):
    a = AsyncIds.remote()
    slow, fast = a.task_id_after.remote(0.5), a.task_id_after.remote(0.1)
    (s_before, s_after, name), (f_before, f_after, _) = ray.get([slow, fast], timeout=30)
    assert s_before == s_after and f_before == f_after and s_before != f_before
    assert name == "AsyncIds.task_id_after"
    ray.kill(a)
