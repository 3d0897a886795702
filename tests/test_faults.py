"""Faults found by tests from outside the project (issue 14), each reproduced with real processes,
real signals and real shared memory.  Scripts that need their own ``__main__``, their own threads
or a driver to kill run as subprocesses."""
from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from helpers import alive, driver_script, kill_blocked_constructor, read_line_starting, shm_of, start_driver, wait_until


def run_script(tmp_path, body, timeout=60):
    """Run a driver script to its end; its stdout, or the failure with its stderr."""
    proc = start_driver(driver_script(tmp_path, body))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the script hung; stdout:\n{out}\nstderr:\n{err}")
    assert proc.returncode == 0, f"exit {proc.returncode}; stderr:\n{err}"
    return out


# -- item 2: workers and actors outlive the thread that caused them to be forked -------------------
def test_workers_and_actors_survive_the_short_lived_thread_that_started_them(tmp_path):
    out = run_script(tmp_path, """
        import threading, time, miniray as ray

        @ray.remote(max_retries=0)
        def slow():
            time.sleep(1.5)
            return 1

        @ray.remote
        class Keeper:
            def ping(self):
                return "pong"

        made = []
        def in_thread():                      # auto-init: the runtime starts on this thread
            made.append(slow.remote())
            made.append(Keeper.remote())
            time.sleep(0.3)
        t = threading.Thread(target=in_thread)
        t.start(); t.join()
        time.sleep(0.3)                       # the thread is gone; so were its workers, before
        print("TASK", ray.get(made[0], timeout=30))
        print("ACTOR", ray.get(made[1].ping.remote(), timeout=30))
    """)
    assert "TASK 1" in out and "ACTOR pong" in out


# -- item 3: classes of __main__ in retry_exceptions; calls that cannot be unpickled ---------------
def test_retry_exceptions_with_a_class_of_main_retries_then_raises_it(tmp_path):
    out = run_script(tmp_path, f"""
        import os, miniray as ray
        ray.init(num_cpus=1)

        class MyError(Exception):
            pass

        @ray.remote(max_retries=2, retry_exceptions=[MyError])
        def flaky(path, fail_times):
            n = int(open(path).read()) if os.path.exists(path) else 0
            open(path, "w").write(str(n + 1))
            if n < fail_times:
                raise MyError(f"attempt {{n}}")
            return n

        print("VALUE", ray.get(flaky.remote({str(tmp_path / 'a')!r}, 2), timeout=30))
        try:
            ray.get(flaky.remote({str(tmp_path / 'b')!r}, 10), timeout=30)
        except MyError as err:
            print("RAISED", type(err).__name__, err.cause)
        print("ATTEMPTS", open({str(tmp_path / 'b')!r}).read())
    """)
    assert "VALUE 2" in out
    assert "RAISED" in out and "attempt 2" in out
    assert "ATTEMPTS 3" in out


def test_a_call_that_cannot_be_unpickled_in_the_worker_fails_alone_naming_the_culprit(tmp_path):
    out = run_script(tmp_path, """
        import miniray as ray
        ray.init(num_cpus=1)

        class OnlyInMain:
            pass

        @ray.remote
        def f(x):
            return x

        refs = [f.remote(1), f.options(runtime_env={"env_vars": {"X": OnlyInMain()}}).remote(2), f.remote(3)]
        for r in refs:
            try:
                print("OK", ray.get(r, timeout=30))
            except ray.exceptions.RayError as err:
                print("ERR", type(err).__name__, err)
        print("AFTER", ray.get(f.remote(4), timeout=30))
    """)
    assert "OK 1" in out and "OK 3" in out and "AFTER 4" in out
    assert "ERR RaySystemError" in out and "__main__.OnlyInMain" in out


def test_frame_reader_splits_a_frame_with_an_unloadable_item(tmp_path):
    """A frame holding one item whose class this process cannot import: the other items arrive,
    that one comes as ("unloadable", message naming the class, item)."""
    import types

    from miniray.transport.framing import HEADER, FrameReader
    mod = types.ModuleType("vanishing_mod")
    exec("class Gone:\n    pass\n", mod.__dict__)
    sys.modules["vanishing_mod"] = mod
    try:
        payload = pickle.dumps([("reply", 1, True, "fine"), ("submit", mod.Gone(), 1.0),
                                ("reply", 2, True, 42)], protocol=5)
    finally:
        del sys.modules["vanishing_mod"]
    a, b = socket.socketpair()
    try:
        a.sendall(HEADER.pack(len(payload)) + payload)
        frames = FrameReader(b).feed(block=True)
    finally:
        a.close()
        b.close()
    (items,) = frames
    assert items[0] == ("reply", 1, True, "fine") and items[2] == ("reply", 2, True, 42)
    assert items[1][0] == "unloadable" and "vanishing_mod.Gone" in items[1][1]
    assert items[1][2][0] == "submit"


# -- item 8: get of a list raises the first error at once -----------------------------------------
def hang():
    time.sleep(60)


def test_get_of_a_list_raises_the_first_error_without_waiting_for_the_rest(rt):
    hang_r = rt.remote(hang)

    @rt.remote
    def bad():
        raise ValueError("first to fail")

    @rt.remote
    def in_task():             # the same from inside a task (the node answers the worker's get)
        try:
            rt.get([hang_r.options(num_cpus=0).remote(), bad.remote()], timeout=30)   # it holds no CPU
        except ValueError as err:
            return str(err)

    h = hang_r.remote()
    start = time.monotonic()
    with pytest.raises(ValueError, match="first to fail"):
        rt.get([h, bad.remote()], timeout=30)
    assert time.monotonic() - start < 10
    rt.cancel(h, force=True)            # its CPU is needed below
    assert "first to fail" in rt.get(in_task.remote(), timeout=30)


# -- item 7: sync actors and nested gets ------------------------------------------------------------
def test_sync_actor_nested_get_with_calls_queued_behind_it(rt):
    @rt.remote
    class A:
        def f(self, x):
            return rt.get(rt.put(x))

        def recurse(self, me):
            return rt.get(me.f.remote(3))

        def hand_ref(self, me):
            return me.f.remote(5)

    a = A.remote()
    assert rt.get([a.f.remote(i) for i in range(6)], timeout=30) == list(range(6))
    with pytest.raises(RuntimeError, match="its own actor.*max_concurrency"):
        rt.get(a.recurse.remote(a), timeout=30)
    assert rt.get(rt.get(a.hand_ref.remote(a), timeout=30), timeout=30) == 5
    assert rt.get(a.f.remote(7), timeout=30) == 7          # the actor still serves


def test_threaded_actor_may_wait_for_its_own_calls(rt):
    @rt.remote(max_concurrency=2)
    class B:
        def f(self, x):
            return x

        def recurse(self, me):
            return rt.get(me.f.remote(3))

    b = B.remote()
    assert rt.get(b.recurse.remote(b), timeout=30) == 3


def _square_slowly(x):
    time.sleep(0.02)
    return x * x


def _two_gets_at_once(rt, sq, i, threaded=True):
    """A call that waits in two gets at the same time: one on a thread of its own."""
    if not threaded:
        return rt.get(sq.remote(i)) + rt.get(sq.remote(i + 1))
    box = []
    t = threading.Thread(target=lambda: box.append(rt.get(sq.remote(i))))
    t.start()
    mine = rt.get(sq.remote(i + 1))
    t.join()
    return box[0] + mine


def test_a_call_waiting_in_two_gets_at_once_lends_its_cpu_until_both_end(rt):
    """The CPU of a call blocked in get is lent to the nested calls until its LAST get ends: taken
    back when the first of two concurrent gets ended, 2 CPUs held by waiting calls starved the
    nested ones and everything hung."""
    sq = rt.remote(_square_slowly)
    outer = rt.remote(_two_gets_at_once)
    want = [i * i + (i + 1) * (i + 1) for i in range(20)]
    assert rt.get([outer.remote(rt, sq, i, False) for i in range(20)], timeout=60) == want  # one at a time
    assert rt.get([outer.remote(rt, sq, i) for i in range(20)], timeout=60) == want


# -- item 1: a driver killed by any signal leaves no process and no segment ------------------------
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_driver_leaves_no_shared_memory_session_or_worker(tmp_path, sig, monkeypatch):
    import shutil
    import tempfile
    short = tempfile.mkdtemp(prefix="mrf", dir="/tmp")    # a short path: the node's socket lives there
    monkeypatch.setenv("TMPDIR", short)                  # so no other init() reaps its session
    try:
        _kill_driver_and_look(tmp_path, sig)
    finally:
        shutil.rmtree(short, ignore_errors=True)


def _kill_driver_and_look(tmp_path, sig):
    proc = start_driver(driver_script(tmp_path, """
        import os, time, miniray as ray
        ray.init(num_cpus=2)

        @ray.remote
        def busy():                 # holds the GIL: a worker's reader thread waits its turn
            end = time.time() + 20
            while time.time() < end:
                pass

        @ray.remote
        def pid():
            return os.getpid()

        print("WORKERS", sorted(ray.get([pid.remote() for _ in range(4)])), flush=True)
        keep = ray.put(b"x" * (8 << 20))
        refs = [busy.remote() for _ in range(2)]
        time.sleep(0.3)
        print("SESSION", ray.init(ignore_reinit_error=True)["session_dir"], flush=True)
        time.sleep(60)
    """))
    session_dir = read_line_starting(proc, "SESSION ")
    import psutil
    workers = [c.pid for c in psutil.Process(proc.pid).children()]
    assert workers and shm_of(proc.pid) and os.path.isdir(session_dir)
    proc.send_signal(sig)          # not reaped yet: the driver stays a zombie meanwhile
    assert wait_until(lambda: not any(alive(w) for w in workers), timeout=10), "workers outlived the driver"
    assert wait_until(lambda: not os.path.exists(session_dir), timeout=6), "the session directory stayed"
    assert wait_until(lambda: not shm_of(proc.pid), timeout=6), f"left in /dev/shm: {shm_of(proc.pid)}"
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


# -- item 9: an actor dies with the worker that created it, unless detached ------------------------
def test_actor_dies_with_the_worker_that_created_it_unless_detached(rt):
    @rt.remote
    class Box:
        def get(self):
            return "alive"

    @rt.remote(max_retries=0)
    def make(detached):
        opts = {"lifetime": "detached", "name": "kept_box"} if detached else {}
        box = Box.options(**opts).remote()
        rt.get(box.get.remote())
        return box, os.getpid()

    owned, pid = rt.get(make.remote(False), timeout=30)
    kept, pid2 = rt.get(make.remote(True), timeout=30)
    for p in {pid, pid2}:
        os.kill(p, signal.SIGKILL)

    def died():                 # once the node has seen the worker go (its socket's EOF)
        try:
            rt.get(owned.get.remote(), timeout=30)
        except rt.exceptions.ActorDiedError as err:
            return str(err)
        time.sleep(0.1)
    assert "owner" in (wait_until(died, timeout=15) or "")
    assert rt.get(kept.get.remote(), timeout=30) == "alive"
    rt.kill(kept)


# -- item 10: killing an actor blocked in its constructor frees its worker and CPU ----------------
def test_killing_an_actor_blocked_in_its_constructor_gives_its_cpu_back(rt):
    hang_r = rt.remote(hang)

    @rt.remote
    class Slow:
        def __init__(self, ref_holder):
            rt.get(ref_holder[0])           # waits for ever

        def f(self):
            return 1

    total = rt.cluster_resources()["CPU"]
    h = hang_r.remote()
    a = Slow.remote([h])
    kill_blocked_constructor(rt, a, h, total)


# -- item 4: the event log keeps the newest events in bounded memory ------------------------------
def test_event_log_past_its_cap_forgets_the_oldest_and_keeps_seqs():
    from miniray.events import EventLog, schema
    log = EventLog(max_events=100)
    row = schema("task_id")
    for i in range(1000):
        if i % 2:
            log.emit("freed", object_id=str(i))
        else:
            log.append((row, "submitted", float(i), str(i)))   # the node's hot path ...
            log.trim()                                         # ... and its per-step cap
    kept = log.since(0)
    assert len(kept) <= 100 and len(log._events) <= 100
    assert kept[-1]["object_id"] == "999" and kept[-1]["seq"] == 999 == len(log) - 1
    assert [e["seq"] for e in kept] == list(range(kept[0]["seq"], 1000))
    assert log.since(990)[0]["seq"] == 990 and log.since(5000) == []
    assert log.dropped == 1000 - len(kept)


# -- item 5: `miniray stop` signals only a head that is still that head -------------------------
def test_miniray_stop_leaves_a_process_that_reused_a_stale_heads_pid_alone(tmp_path):
    import json
    import tempfile
    short = tempfile.mkdtemp(prefix="mrs", dir="/tmp")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        root = os.path.join(short, f"miniray-{os.getuid()}")
        os.makedirs(root, mode=0o700)
        for name, info in (("head", {"started": 12345.0}), ("node", {"node_id": "n"})):   # stale files,
            with open(os.path.join(root, f"{name}_{bystander.pid}.json"), "w") as f:   # pid reused
                json.dump({"address": "127.0.0.1:1", "pid": bystander.pid, "session_dir": short, **info}, f)
        env = dict(os.environ, TMPDIR=short)
        out = subprocess.run([sys.executable, "-m", "miniray.cli", "stop"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert bystander.poll() is None, "miniray stop killed a process that is not a head"
        assert "no miniray head" in out.stdout
    finally:
        bystander.kill()
        bystander.wait()
        import shutil
        shutil.rmtree(short, ignore_errors=True)


# -- item 11: a Cluster that its script forgot to shut down goes with the script ------------------
def test_cluster_forgotten_by_its_script_is_shut_down_at_exit(tmp_path):
    pids_file = tmp_path / "pids"
    script = driver_script(tmp_path, f"""
        from miniray.cluster_utils import Cluster
        c = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
        n = c.add_node(num_cpus=1)
        open({str(pids_file)!r}, "w").write(f"{{c.head.pid}} {{n.pid}}")
    """)
    with open(tmp_path / "log", "w") as log:      # not pipes: its children may hold them open
        proc = subprocess.Popen([sys.executable, script], stdout=log, stderr=log,
                                env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        assert proc.wait(timeout=50) == 0, (tmp_path / "log").read_text()
    pids = [int(p) for p in pids_file.read_text().split()]
    try:
        assert wait_until(lambda: not any(alive(p) for p in pids), timeout=20), "cluster processes outlived it"
        assert wait_until(lambda: not any(shm_of(p) for p in pids), timeout=10)
    finally:
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGTERM)


_kept_errors = []


def _raise_and_keep():
    err = ValueError("kept by the code that raised it")
    _kept_errors.append(err)       # its traceback holds the frame that was unpickling
    raise err


class _KeepsItsError:
    def __reduce__(self):
        return (_raise_and_keep, ())


@pytest.mark.parametrize("macced", [False, True])
def test_frame_reader_goes_on_after_a_frame_whose_unpickling_kept_its_error(macced):
    """A frame whose unpickling raises an exception that someone keeps: the reader still takes the
    next frames (it used to die of BufferError, the kept traceback holding a view of its buffer)."""
    from miniray.transport.auth import Channel
    from miniray.transport.framing import Connection, FrameReader
    a, b = socket.socketpair()
    key = b"k" * 32
    send_ch, recv_ch = (Channel(key, key), Channel(key, key)) if macced else (None, None)
    try:
        sender, reader = Connection(a, send_ch), FrameReader(b, recv_ch)
        sender.send([("x", _KeepsItsError())])
        sender.send([("reply", 1, True, "after")])
        got = []
        while len(got) < 2:
            got += reader.feed(block=True)
        sender.send([("reply", 2, True, "and on")])
        got += reader.feed(block=True)
    finally:
        a.close()
        b.close()
        _kept_errors.clear()
    assert got[0][0][0] == "unloadable" and "kept by the code" in got[0][0][1]
    assert got[1] == [("reply", 1, True, "after")] and got[2] == [("reply", 2, True, "and on")]
