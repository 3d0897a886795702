"""Debug mode, ``init(local_mode=True)``: every call runs inline in the driver, in submission
order, so prints come in order, breakpoints stop in the task and errors keep their traceback."""
from __future__ import annotations

import os
import sys
import traceback

import pytest

import miniray

ORDER: list = []


@pytest.fixture
def local():
    miniray.shutdown()
    miniray.init(local_mode=True, num_cpus=2)
    ORDER.clear()
    try:
        yield miniray
    finally:
        miniray.shutdown()


@miniray.remote
def record(tag):
    ORDER.append(tag)              # the user's own function: its module's globals, not a copy's
    print(f"task {tag}")
    return os.getpid(), tag


@miniray.remote
class Counter:
    def __init__(self, start):
        self.n = start

    def add(self, k):
        self.n += k
        print(f"actor {self.n}")
        ORDER.append(("actor", self.n))
        return self.n


def test_calls_run_inline_in_submission_order_and_print_in_that_order(local, capsys):
    c = Counter.remote(10)
    refs = [record.remote(0), c.add.remote(1), record.remote(1), c.add.remote(2)]
    assert ORDER == [0, ("actor", 11), 1, ("actor", 13)], "each call ran when it was submitted"
    print("after submitting")
    assert local.get(refs) == [(os.getpid(), 0), 11, (os.getpid(), 1), 13]
    out = capsys.readouterr().out.splitlines()
    assert out == ["task 0", "actor 11", "task 1", "actor 13", "after submitting"]


@miniray.remote
def fails(x):
    y = x + 1
    raise ValueError(f"bad value {y}")        # the line the traceback must show


def test_a_failing_call_raises_at_get_with_its_real_traceback(local):
    ref = fails.remote(1)
    with pytest.raises(ValueError, match="bad value 2") as info:
        local.get(ref)
    assert isinstance(info.value, local.exceptions.RayTaskError)
    frames = traceback.extract_tb(info.value.__traceback__)
    ours = [f for f in frames if f.name == "fails"]
    assert ours and ours[-1].line == 'raise ValueError(f"bad value {y}")        # the line the traceback must show'
    assert ours[-1].filename == __file__
    inner = frames[frames.index(ours[0]):]             # from the task on: no runtime frames
    assert not any(f.filename.endswith(os.path.join("miniray", "local_mode.py")) for f in inner)
    with pytest.raises(ValueError, match="bad value 2"):      # a task on a failed argument
        local.get(record.remote(ref))


def test_breakpoint_in_a_task_stops_in_the_driver_inside_that_task(local, monkeypatch):
    stops = []
    monkeypatch.setattr(sys, "breakpointhook", lambda: stops.append(sys._getframe(1).f_locals.copy()))

    @local.remote
    def debug_me(x):
        doubled = 2 * x
        breakpoint()
        return doubled

    assert local.get(debug_me.remote(21)) == 42
    assert stops == [{"x": 21, "doubled": 42}]


def test_nested_tasks_actors_generators_and_dead_actors(local):
    @local.remote
    def outer(n):
        return sum(local.get([record.remote(i) for i in range(n)])[i][1] for i in range(n))

    @local.remote(num_returns=2)
    def pair():
        return "a", "b"

    @local.remote
    def gen(n):
        for i in range(n):
            yield i * i

    @local.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("no")

        def f(self):
            return 1

    @local.remote
    class Self:
        def f(self, x):
            return x

        def recurse(self, me):           # waits for its own call: fine inline
            return local.get(me.f.remote(3))

    assert local.get(outer.remote(3)) == 3
    assert local.get(pair.remote()) == ["a", "b"]
    assert [local.get(r) for r in gen.remote(4)] == [0, 1, 4, 9]
    s = Self.remote()
    assert local.get(s.recurse.remote(s)) == 3
    with pytest.raises(local.exceptions.ActorDiedError, match="constructor"):
        local.get(Broken.remote().f.remote())
    named = Self.options(name="solo").remote()
    assert local.get(local.get_actor("solo").f.remote(5)) == 5
    local.kill(named)
    with pytest.raises(local.exceptions.ActorDiedError, match="killed"):
        local.get(named.f.remote(1))
    ready, rest = local.wait([record.remote("w")], timeout=0)
    assert len(ready) == 1 and not rest
    assert local.cluster_resources()["CPU"] == 2


def test_the_event_log_and_timeline_see_what_ran(local):
    from miniray.events import cursor, events
    start = cursor()
    local.get([record.remote(i) for i in range(3)])
    local.put(b"x")
    kinds = [e["kind"] for e in events(start)]
    assert kinds.count("submitted") == 3 and kinds.count("finished") == 3 and "put" in kinds
    spans = [e for e in local.timeline() if e.get("ph") == "X" and e["name"] == "record"]
    assert len(spans) == 3


def test_values_are_freed_when_no_ref_is_left(local):
    from miniray.events import events
    ref = local.put([1, 2, 3])
    oid = ref.hex()
    del ref
    assert any(e["kind"] == "freed" and e["object_id"] == oid for e in events())


def test_taskgraph_magic_draws_what_ran_inline(local):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("%load_ext miniray_magics").raise_error()
        with capture_output() as captured:
            result = shell.run_cell(
                "%%taskgraph\nimport miniray\n"
                "@miniray.remote\ndef sq(x):\n    print('sq', x)\n    return x * x\n"
                "@miniray.remote\ndef add(a, b):\n    return a + b\n"
                "print(miniray.get(add.remote(sq.remote(2), sq.remote(3))))")
        result.raise_error()
        graph = result.result
        assert captured.stdout.splitlines()[:3] == ["sq 2", "sq 3", "13"]
        labels = sorted(d["label"] for _, d in graph.nodes(data=True))
        assert labels == ["add #1", "sq #1", "sq #2"]
        assert {d["state"] for _, d in graph.nodes(data=True)} == {"FINISHED"}
        assert graph.number_of_edges() == 2
        shell.run_cell("%unload_ext miniray_magics")
    finally:
        InteractiveShell.clear_instance()
