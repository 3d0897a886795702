"""Dask on miniray: Dask's scheduler conformance suite, collections against Dask's sync scheduler,
errors, persist, remote args, callbacks, freeing of intermediates, %%taskgraph, the config switch,
and a smoke run of the Ray-vs-Dask benchmark.

One two-CPU runtime serves the whole module (``rt``); it is shut down at the end.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

dask = pytest.importorskip("dask")
pd = pytest.importorskip("pandas")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402
from dask._task_spec import Alias, DataNode  # noqa: E402
from dask.callbacks import Callback  # noqa: E402
from dask.utils_test import GetFunctionTestMixin  # noqa: E402

import miniray  # noqa: E402
from conftest import wait_until  # noqa: E402
from miniray.util.dask import (MinirayDaskCallback, disable_dask_on_miniray,  # noqa: E402
                               enable_dask_on_miniray, miniray_dask_get)


@pytest.fixture(scope="module", autouse=True)
def rt():
    miniray.init(num_cpus=2)
    try:
        yield miniray
    finally:
        miniray.shutdown()


def sync(x):
    return x.compute(scheduler="sync")


def on_miniray(x, **kwargs):
    return x.compute(scheduler=miniray_dask_get, **kwargs)


# --------------------------------------------------------------------------- conformance
class TestGetFunction(GetFunctionTestMixin):
    """Dask's own expectations of a ``get`` function."""

    get = staticmethod(miniray_dask_get)


# --------------------------------------------------------------------------- collections
def test_array_equals_sync():
    x = da.random.default_rng(0).random((600, 600), chunks=(150, 150))
    y = (x + x.T).dot(x[:, :50]).mean(axis=1)
    np.testing.assert_allclose(on_miniray(y), sync(y))


def test_bag_equals_sync():
    b = (db.from_sequence(range(200), npartitions=5).map(lambda v: v * 3)
         .filter(lambda v: v % 2).frequencies())
    assert sorted(on_miniray(b)) == sorted(sync(b))
    words = db.from_sequence(["a b", "b c", "c a a"] * 10, npartitions=3)
    wc = words.map(str.split).flatten().foldby(lambda w: w, lambda n, _: n + 1, 0)
    assert sorted(on_miniray(wc)) == sorted(sync(wc))


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"k": np.arange(2000) % 11, "v": rng.random(2000),
                       "s": [f"name{i % 17}" for i in range(2000)]})
    return dd.from_pandas(df, npartitions=6)


def test_dataframe_groupby_equals_sync(frame):
    agg = frame.groupby("k").agg({"v": ["mean", "max"], "s": "count"})
    pd.testing.assert_frame_equal(on_miniray(agg).sort_index(), sync(agg).sort_index())
    by_name = frame.groupby("s").v.sum()
    pd.testing.assert_series_equal(on_miniray(by_name).sort_index(), sync(by_name).sort_index())


@pytest.mark.parametrize("method", ["tasks", "disk"])
def test_dataframe_set_index_equals_sync(frame, method):
    with dask.config.set({"dataframe.shuffle.method": method}):
        out = frame.set_index("v")
        expected = sync(out)
        got = on_miniray(out)
    pd.testing.assert_frame_equal(got, expected)
    assert got.index.is_monotonic_increasing


def test_delayed_equals_sync():
    @dask.delayed
    def inc(v):
        return v + 1

    @dask.delayed
    def total(*vs):
        return sum(vs)

    out = total(*[inc(i) for i in range(10)], inc(inc(100)))
    assert dask.compute(out, scheduler=miniray_dask_get) == dask.compute(out, scheduler="sync")


class GraphSeen(MinirayDaskCallback):
    """Keeps the graph the scheduler was handed (after Dask's optimizations, such as fusion)."""

    def on_start(self, graph):
        self.graph = graph

    def counts(self):
        tasks = [k for k, v in self.graph.items() if not isinstance(v, (Alias, DataNode))]
        data = [k for k, v in self.graph.items() if isinstance(v, DataNode)]
        deps = sum(len(v.dependencies) for v in self.graph.values() if not isinstance(v, DataNode))
        return tasks, data, deps


def test_each_task_is_one_miniray_task_named_after_its_key():
    x = (da.ones((400, 400), chunks=(200, 200)) + 1).sum()
    start = miniray.events.cursor()
    with GraphSeen() as seen:
        assert on_miniray(x) == 2 * 400 * 400
    tasks, data, _ = seen.counts()
    events = miniray.events.events(start)
    names = [e["name"] for e in events if e["kind"] == "submitted"]
    assert sorted(names) == sorted(k if isinstance(k, str) else str(k) for k in tasks)
    assert len([e for e in events if e["kind"] == "put"]) == len(data)


# --------------------------------------------------------------------------- errors
class Boom(Exception):
    pass


def test_failing_task_raises_the_users_exception_naming_the_key():
    def fail(v):
        raise Boom(f"bad value {v}")

    dsk = {"x": 1, "y": (fail, "x"), "z": (lambda v: v + 1, "y"), "w": (abs, -3)}
    with pytest.raises(Boom, match="bad value 1") as info:
        miniray_dask_get(dsk, ["z", "w"])
    assert "y" == info.value.function_name and "Dask task y" in str(info.value.__notes__)
    with pytest.raises(Boom) as info:
        on_miniray(dask.delayed(fail)(2, dask_key_name="my-failing-key"))
    assert "my-failing-key" in str(info.value)


def test_missing_key_raises_keyerror():
    with pytest.raises(KeyError, match="nope"):
        miniray_dask_get({"x": 1}, "nope")
    with pytest.raises(KeyError):
        miniray_dask_get({"x": 1}, [["x", "nope"]])


# --------------------------------------------------------------------------- options
def test_persist_returns_object_refs():
    dsk = {"x": 1, "y": (lambda v: v * 10, "x"), "z": (sum, ["x", "y"])}
    refs = miniray_dask_get(dsk, ["y", "z"], miniray_persist=True)
    assert all(isinstance(r, miniray.ObjectRef) for r in refs)
    assert miniray.get(list(refs)) == [10, 11]
    arr = miniray_dask_get(dict((da.arange(10, chunks=5) * 2).sum().__dask_graph__()),
                           [], miniray_persist=True)
    assert arr == ()


def test_remote_args_reach_every_task():
    start = miniray.events.cursor()
    dsk = {"a": (abs, -1), "b": (abs, -2), "c": (max, "a", "b")}
    assert miniray_dask_get(dsk, "c", miniray_remote_args={"num_cpus": 2}) == 2
    subs = wait_until(lambda: [e for e in miniray.events.events(start)
                               if e["kind"] == "submitted" and e["name"] in "abc"])
    assert len(subs) == 3 and all(e["resources"].get("CPU") == 2 for e in subs)


def test_callbacks_miniray_and_dask_style():
    class Record(MinirayDaskCallback):
        def __init__(self):
            self.seen, self.lock = [], threading.Lock()

        def on_start(self, graph):
            self.seen.append(("start", len(graph)))

        def on_submit(self, key, ref):
            self.seen.append(("submit", key, isinstance(ref, miniray.ObjectRef)))

        def on_finish(self, key, ref):
            with self.lock:
                self.seen.append(("finish", key))

        def on_end(self, failed):
            self.seen.append(("end", failed))

    pre, post = [], []
    dask_cb = Callback(pretask=lambda key, dsk, state: pre.append(key),
                       posttask=lambda key, res, dsk, state, wid: post.append((key, res)))
    dsk = {"x": 1, "y": (abs, "x"), "z": (max, "x", "y"), "alias": "z"}
    rec = Record()
    with rec:
        assert miniray_dask_get(dsk, "alias", callbacks=[dask_cb]) == 1
    assert miniray_dask_get(dsk, "alias", callbacks=[rec]) == 1     # passed, not active
    first = rec.seen[:len(rec.seen) // 2]
    assert first[0] == ("start", 4) and first[-1] == ("end", False)
    assert [s for s in first if s[0] == "submit"] == [("submit", "y", True), ("submit", "z", True)]
    assert sorted(s[1] for s in first if s[0] == "finish") == ["y", "z"]
    assert first.index(("finish", "y")) < first.index(("submit", "z", True))
    assert sorted(pre) == ["alias", "y", "z"]
    assert all(isinstance(r, miniray.ObjectRef) for _, r in post)


# --------------------------------------------------------------------------- memory and pictures
def test_intermediates_are_freed_as_their_dependents_finish():
    """A chain of 1 MiB arrays: when step k is submitted, step k-2's object must be gone."""
    steps = 6
    dsk = {"a0": (np.ones, 1 << 17)}
    for k in range(1, steps):
        dsk[f"a{k}"] = (np.add, f"a{k - 1}", 1.0)
    dsk["total"] = (np.sum, f"a{steps - 1}")
    made, gone_in_time = {}, []

    class Watch(MinirayDaskCallback):
        def on_submit(self, key, ref):
            made[key] = ref.hex()
            if key.startswith("a") and int(key[1:]) >= 2:
                old = made[f"a{int(key[1:]) - 2}"]
                gone_in_time.append(bool(wait_until(lambda: old not in live(), timeout=5)))

    def live():
        return {o["object_id"] for o in miniray.util.state.list_objects()}

    import miniray.util.state  # noqa: F401

    assert miniray_dask_get(dsk, "total", callbacks=[Watch()]) == (1 << 17) * steps
    assert gone_in_time == [True] * (steps - 2)
    assert wait_until(lambda: not (set(made.values()) & live()), timeout=5), "all freed at the end"


def test_taskgraph_magic_draws_one_node_per_dask_task():
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    x = (da.ones((300, 300), chunks=(100, 100)) * 2).sum(axis=0)
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("%load_ext miniray_magics").raise_error()
        shell.user_ns.update(x=x, get=miniray_dask_get)
        with GraphSeen() as seen:
            result = shell.run_cell("%%taskgraph --max-nodes 1000\nout = x.compute(scheduler=get)")
        result.raise_error()
        graph = result.result
        tasks, data, deps = seen.counts()
        n_tasks, n_data = len(tasks), len(data)
        kinds = [d["kind"] for _, d in graph.nodes(data=True)]
        assert kinds.count("task") == n_tasks and kinds.count("put") == n_data
        assert {d["state"] for _, d in graph.nodes(data=True) if d["kind"] == "task"} == {"FINISHED"}
        assert graph.number_of_edges() == deps
        np.testing.assert_allclose(shell.user_ns["out"], np.full(300, 600.0))
    finally:
        shell.run_cell("%unload_ext miniray_magics")
        InteractiveShell.clear_instance()


# --------------------------------------------------------------------------- config switch
def test_enable_and_disable_set_and_restore_the_config(frame):
    with dask.config.set(scheduler="sync"):
        enable_dask_on_miniray()
        try:
            assert dask.config.get("scheduler") is miniray_dask_get
            assert dask.config.get("dataframe.shuffle.method") == "tasks"
            start = miniray.events.cursor()
            assert frame.v.sum().compute() == pytest.approx(sync(frame.v.sum()))
            assert any(e["kind"] == "submitted" for e in miniray.events.events(start))
        finally:
            disable_dask_on_miniray()
        assert dask.config.get("scheduler") == "sync"
        assert dask.config.get("dataframe.shuffle.method", None) is None
    with enable_dask_on_miniray(shuffle=None):
        assert dask.config.get("scheduler") is miniray_dask_get
    assert dask.config.get("scheduler", None) is None
    with pytest.raises(RuntimeError, match="not enabled"):
        disable_dask_on_miniray()


# --------------------------------------------------------------------------- the benchmark
def test_ray_vs_dask_benchmark_smoke(tmp_path, capsys):
    """``--quick`` on Dask on miniray and dask.distributed: both workloads run and give the right
    answers (no timing assertions)."""
    pytest.importorskip("distributed")
    pytest.importorskip("matplotlib")
    from miniray.bench import ray_vs_dask

    figure = tmp_path / "ray-vs-dask.png"
    assert ray_vs_dask.main(["--quick", "--only", "dask_on_miniray,dask", "--out", str(tmp_path),
                             "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| broadcast")
            or line.startswith("| set_index")]
    assert len(rows) == 4 and all(line.rstrip().endswith("| ok     |") for line in rows), out
    assert figure.stat().st_size > 10_000
    assert list(tmp_path.glob("ray-vs-dask-*-quick.json"))
