"""Tests for the notebook magics (issue 7): pure functions first, then real shells and kernels.

    hand-built events ──► graph_of / timeline_of / memory_report / DashboardState   (no runtime)
    InteractiveShell that raises on errors ──► each magic against a real miniray.init(num_cpus=2)
    a real ipykernel through nbclient ──► the same magics; their PNGs are saved to docs/img/

The hand-built events have exactly the shape documented in ``miniray/events.py``.  Runtimes started
here are shut down by the end of each class, so the module leaves nothing running.
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import struct
import time
from pathlib import Path

import networkx as nx
import pytest
from IPython.core.error import UsageError

from miniray_magics import graph_of
from miniray_magics.dashboard import Dashboard, DashboardState
from miniray_magics.memory import memory_report
from miniray_magics.timeline import Timeline, chrome_trace, timeline_of

ROOT = Path(__file__).resolve().parent.parent
DOCS_IMG = ROOT / "docs" / "img"
MIB = 1024 * 1024


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature and header chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


class Log:
    """Builds events of the documented shape, with a clock the test controls."""

    def __init__(self):
        self.events: list[dict] = []
        self.ids = itertools.count()
        self.ts = 1000.0

    def emit(self, kind: str, ts: float | None = None, **fields) -> dict:
        event = {"kind": kind, "ts": self.ts if ts is None else ts, "seq": len(self.events),
                 **fields}
        self.events.append(event)
        return event

    def submit(self, name, deps=(), type="task", actor_id=None) -> tuple[str, str]:
        n = next(self.ids)
        task_id, object_id = f"task{n:04d}", f"obj{n:04d}"
        self.emit("submitted", task_id=task_id, name=name, type=type, actor_id=actor_id,
                  deps=list(deps), returns=[object_id], call_site="cell.py:3",
                  resources={"CPU": 1.0})
        return task_id, object_id

    def start(self, task_id, worker, ts, actor_id=None, node_id="node0"):
        self.emit("started", ts=ts, task_id=task_id, worker_id=worker, pid=4000, node_id=node_id,
                  actor_id=actor_id)

    def finish(self, task_id, worker, ts, state="FINISHED"):
        self.emit("finished", ts=ts, task_id=task_id, state=state,
                  error=None if state == "FINISHED" else "ValueError", worker_id=worker, pid=4000)

    def run(self, task_id, worker, start, end, state="FINISHED", actor_id=None):
        self.start(task_id, worker, start, actor_id)
        self.finish(task_id, worker, end, state)

    def put(self, size=1024) -> str:
        object_id = f"put{next(self.ids):04d}"
        self.emit("put", object_id=object_id, size=size, location="inline", call_site="cell.py:1",
                  pid=1, node_id="node0")
        return object_id


def add_tree(log: Log, leaves: int) -> tuple[list[str], set[tuple[str, str]]]:
    """Submit ``leaves`` leaf tasks and a pairwise tree of ``add`` over them; return the task ids
    of the adds and the edges the tree must have (plain Python: the oracle)."""
    level = [log.submit("leaf") for _ in range(leaves)]
    adds, expected = [], set()
    while len(level) > 1:
        nxt = []
        for (ta, oa), (tb, ob) in zip(level[::2], level[1::2]):
            task = log.submit("add", deps=[oa, ob])
            expected |= {(ta, task[0]), (tb, task[0])}
            adds.append(task[0])
            nxt.append(task)
        level = nxt
    return adds, expected


# --------------------------------------------------------------------------- graph_of
def test_seed_example_graph_has_four_nodes_and_no_edges():
    log = Log()
    for i in range(4):
        task, _ = log.submit("my_function")
        log.run(task, f"w{i % 2 + 1}", 1000 + i, 1000.5 + i)
    graph = graph_of(log.events)
    assert isinstance(graph, nx.DiGraph)
    assert sorted(d["label"] for _, d in graph.nodes(data=True)) == [
        f"my_function #{i + 1}" for i in range(4)]
    assert graph.number_of_edges() == 0
    assert {d["state"] for _, d in graph.nodes(data=True)} == {"FINISHED"}
    assert {d["worker"] for _, d in graph.nodes(data=True)} == {"w1", "w2"}


def test_add_tree_has_exactly_the_dependency_edges():
    log = Log()
    adds, expected = add_tree(log, 8)
    graph = graph_of(log.events)
    assert set(graph.edges) == expected
    assert len(adds) == 7 and graph.in_degree(adds[-1]) == 2
    assert [len(g) for g in nx.topological_generations(graph)] == [8, 4, 2, 1]


def test_states_puts_actor_calls_and_outside_inputs():
    log = Log()
    x = log.put()
    create, _ = log.submit("Counter.__init__", type="actor_creation", actor_id="actor1")
    call, result = log.submit("Counter.add", deps=[x], type="actor_method", actor_id="actor1")
    ok, _ = log.submit("f", deps=[result])
    bad, _ = log.submit("g", deps=["from_an_earlier_cell"])
    running, _ = log.submit("h")
    log.run(ok, "w1", 1, 2)
    log.run(bad, "w2", 1, 2, state="FAILED")
    log.start(running, "w1", 3)
    graph = graph_of(log.events)
    nodes = graph.nodes
    assert nodes[x]["kind"] == "put" and nodes[x]["label"] == "put #1"
    assert nodes[create]["label"] == "Counter #1" and nodes[call]["actor"] == "actor1"
    assert (x, call) in graph.edges and (call, ok) in graph.edges
    assert nodes["from_an_earlier_cell"]["kind"] == "external"
    assert [nodes[t]["state"] for t in (ok, bad, running, call)] == [
        "FINISHED", "FAILED", "RUNNING", "PENDING"]
    assert nodes[bad]["error"] == "ValueError"


def test_a_ten_thousand_task_map_collapses_to_a_few_nodes():
    log = Log()
    outs = []
    for i in range(10_000):
        task, out = log.submit("my_function")
        outs.append(out)
        if i % 4 == 0:
            log.run(task, "w1", 1, 2, state="FAILED" if i == 0 else "FINISHED")
    for i in range(0, 10_000, 1000):
        log.submit("combine", deps=outs[i:i + 1000])
    graph = graph_of(log.events, max_nodes=150)
    assert graph.number_of_nodes() == 2 and graph.graph["collapsed"]
    mapped = next(d for _, d in graph.nodes(data=True) if d["name"] == "my_function")
    assert mapped["count"] == 10_000 and mapped["label"] == "my_function ×10000"
    assert mapped["states"] == {"FAILED": 1, "FINISHED": 2499, "PENDING": 7500}
    assert mapped["state"] == "FAILED"
    (edge,) = graph.edges(data=True)
    assert edge[2]["count"] == 10_000
    width, height = png_size(graph._repr_png_())
    assert 300 < width < 3500 and 100 < height < 3500


def test_graph_png_in_both_layouts_and_colourings():
    log = Log()
    add_tree(log, 4)
    log.submit("Counter.__init__", type="actor_creation", actor_id="a1")
    log.submit("Counter.add", type="actor_method", actor_id="a1")
    graph = graph_of(log.events)
    sizes = {}
    for layout, color in (("lr", "state"), ("tb", "worker")):
        graph.graph.update(layout=layout, color=color)
        sizes[layout] = png_size(graph._repr_png_())
    assert sizes["lr"][0] > 300 and sizes["lr"][1] > 200
    assert sizes["tb"][0] > sizes["tb"][1]  # top to bottom: four leaves side by side
    empty = graph_of([])
    assert empty.number_of_nodes() == 0 and png_size(empty._repr_png_())[0] > 100


def test_actor_calls_share_one_lane():
    from miniray_magics.draw_graph import layout

    log = Log()
    calls = [log.submit("C.step", type="actor_method", actor_id="a1")[0] for _ in range(3)]
    free = [log.submit("f")[0] for _ in range(3)]
    pos, lanes = layout(graph_of(log.events), "lr")
    assert len({pos[c][1] for c in calls}) == 1, "an actor's calls sit in one row"
    assert len({pos[c][0] for c in calls}) == 3, "in submission order, one layer each"
    assert len({pos[f][0] for f in free}) == 1 and list(lanes) == ["a1"]


# --------------------------------------------------------------------------- timeline_of
def test_timeline_rows_utilisation_and_critical_path():
    log = Log()
    first, a = log.submit("square")
    second, b = log.submit("square")
    total, _ = log.submit("add", deps=[a, b])
    log.run(first, "w1", 0.0, 1.0)
    log.run(second, "w2", 0.0, 2.0)
    log.run(total, "w1", 2.0, 2.5)
    data = timeline_of(log.events, slots=2)
    assert data.rows == ["w1", "w2"]
    assert data.span == 2.5 and data.busy == 3.5
    assert data.utilisation == pytest.approx(3.5 / (2 * 2.5))
    assert [bar.label for bar in data.critical] == ["square #2", "add #1"]
    assert data.critical_seconds == 2.5
    assert "utilisation 70%" in data.caption() and "square #2 → add #1" in data.caption()
    trace = chrome_trace(data)
    assert sum(e["ph"] == "X" for e in trace) == 3
    assert {e["args"]["name"] for e in trace if e["ph"] == "M"} == {"w1", "w2"}
    assert png_size(Timeline(data)._repr_png_())[0] > 500


def test_timeline_window_clips_and_actor_rows():
    log = Log()
    early, _ = log.submit("f")
    late, _ = log.submit("f")
    step, _ = log.submit("Counter.step", type="actor_method", actor_id="abcdef123")
    log.run(early, "w1", 0.0, 1.0)
    log.run(late, "w1", 4.0, 6.0)
    log.run(step, "w7", 5.0, 5.5, actor_id="abcdef123")
    data = timeline_of(log.events, window=(5.0, 10.0))
    assert data.rows == ["w1", "Counter …f123"]
    assert [(b.start, b.end) for b in data.bars] == [(5.0, 6.0), (5.0, 5.5)]
    running, _ = log.submit("g")
    log.start(running, "w2", 7.0)
    data = timeline_of(log.events, now=9.0)
    assert [(b.state, b.end) for b in data.bars if b.row == "w2"] == [("RUNNING", 9.0)]


def test_two_actors_whose_ids_share_a_prefix_get_two_rows_lanes_and_chips():
    """Issue 20 item 3: ids share their first characters, so id[:6] merged two Sleepers into one
    row at "busy 199%"."""
    from miniray_magics.dashboard import DashboardState
    from miniray_magics.draw_graph import layout
    from miniray_magics.graph import graph_of

    log = Log()
    a, b = "aa013edc78e00000000001", "aa013edc78e00000000002"
    calls = [(log.submit("Sleeper.nap", type="actor_method", actor_id=actor)[0], actor)
             for actor in (a, b)]
    for call, actor in calls:
        log.run(call, "w1", 0.0, 1.0, actor_id=actor)
    data = timeline_of(log.events)
    assert data.rows == ["Sleeper …0001", "Sleeper …0002"]
    assert all(data.row_busy(row) == 1.0 for row in data.rows)
    _, lanes = layout(graph_of(log.events), "lr")
    assert sorted(text for _, text, _ in lanes.values()) == ["Sleeper\n…0001", "Sleeper\n…0002"]
    state = DashboardState()
    state.apply(log.events)
    assert state.workers == {"Sleeper …0001", "Sleeper …0002"}


def test_short_ids_grow_until_they_differ():
    from miniray_magics.figures import short_ids

    assert short_ids(["abc0001", "abc0002"]) == {"abc0001": "0001", "abc0002": "0002"}
    assert short_ids(["x10001", "y10001"]) == {"x10001": "x10001", "y10001": "y10001"}


# --------------------------------------------------------------------------- memory_report
def _objects_and_summary():
    def obj(oid, size, location, ref="LOCAL_REFERENCE", site="nb.py:4", node="n1"):
        return dict(object_id=oid, object_size=size, reference_type=ref, location=location,
                    node_id=node, call_site=site, pid=1)

    objects = [obj("a" * 28, 16 * MIB, "shared_memory"),
               obj("b" * 28, 2 * MIB, "spilled", "PINNED_IN_MEMORY", "nb.py:9"),
               obj("c" * 28, 300, "inline", "USED_BY_PENDING_TASK", "nb.py:9", "n2")]
    summary = {"nodes": [{"node_id": "n1", "capacity": 64 * MIB, "used": 16 * MIB,
                          "spilled": 2 * MIB, "num_objects": 2, "num_spilled": 1},
                         {"node_id": "n2", "capacity": 64 * MIB, "used": 0, "spilled": 0,
                          "num_objects": 1, "num_spilled": 0}],
               "capacity": 128 * MIB, "used": 16 * MIB, "spilled": 2 * MIB}
    return objects, summary


def test_memory_report_groups_by_object_node_and_call_site():
    objects, summary = _objects_and_summary()
    by_object = memory_report(objects, summary, "object")
    assert [e.size for e in by_object.entries] == [16 * MIB, 2 * MIB, 300]
    first = by_object.rows()[0]
    assert first[1] == "16.0 MiB" and "nb.py:4" in first and "LOCAL_REFERENCE" in first
    by_site = memory_report(objects, summary, "callsite")
    assert [(e.label, e.count, e.parts) for e in by_site.entries] == [
        ("nb.py:4", 1, {"shared_memory": 16 * MIB}),
        ("nb.py:9", 2, {"spilled": 2 * MIB, "inline": 300})]
    by_node = memory_report(objects, summary, "node")
    assert [e.label for e in by_node.entries] == ["n1", "n2"]
    assert "16.0 MiB used of 128.0 MiB" in by_object.text()
    html = by_object._repr_html_()
    assert html.count("<tr>") == 4 and "data:image/png;base64," in html
    png_size(by_node._repr_png_())
    with pytest.raises(ValueError):
        memory_report(objects, summary, "colour")


def test_memory_names_objects_apart_explains_reference_types_and_shows_tiny_objects():
    import io

    from matplotlib.image import imread

    objects = [dict(object_id=f"a013edc78e00000000{i:03d}00", object_size=5, location="inline",
                    reference_type=ref, node_id="n1", call_site="nb.py:2", pid=1)
               for i, ref in ((3, "LOCAL_REFERENCE"), (4, "PINNED_IN_MEMORY"))]
    summary = {"nodes": [{"node_id": "n1", "capacity": 64 * MIB, "used": 0, "spilled": 0}],
               "capacity": 64 * MIB, "used": 0, "spilled": 0}
    report = memory_report(objects, summary, "object")
    assert sorted(e.label for e in report.entries) == ["…0300", "…0400"]
    text = report.text()
    assert "LOCAL_REFERENCE: a variable in your program still holds its ObjectRef" in text
    assert "PINNED_IN_MEMORY: an array you got back is a zero-copy view" in text
    assert "USED_BY_PENDING_TASK" not in text, "only the types shown are explained"
    assert "zero-copy view" in report._repr_html_()
    picture = imread(io.BytesIO(report._repr_png_()))[..., :3]
    inline = (abs(picture - [0x9c / 255, 0x75 / 255, 0x5f / 255]).sum(axis=2) < 0.05).sum()
    assert inline > 400, f"two 5-byte objects drew {inline} pixels"


# --------------------------------------------------------------------------- dashboard
class FakeSource:
    """What the dashboard reads, backed by a Log; ``up`` plays miniray.is_initialized()."""

    def __init__(self, log: Log):
        self.log, self.up = log, True

    def initialized(self):
        return self.up

    def cursor(self):
        return len(self.log.events)

    def events(self, since=0):
        return [dict(e) for e in self.log.events[since:]]

    def memory_summary(self):
        return {"nodes": [], "capacity": 100, "used": 25, "spilled": 0}


def test_dashboard_state_folds_events():
    log = Log()
    tasks = [log.submit("f")[0] for _ in range(4)]
    log.run(tasks[0], "w1", 1, 2)
    log.run(tasks[1], "w2", 1, 2, state="FAILED")
    log.start(tasks[2], "w1", 3)
    state = DashboardState()
    state.apply(log.events)
    assert state.counts() == {"pending": 1, "running": 1, "finished": 1, "failed": 1}
    assert state.workers == {"w1", "w2"} and state.busy_workers() == {"w1"}
    assert "[w1: busy] [w2: idle]" in state.text()


def test_dashboard_thread_follows_the_log_and_stops_with_the_runtime():
    log = Log()
    source = FakeSource(log)
    dash = Dashboard(source, interval=0.02).start()
    tasks = [log.submit("f")[0] for _ in range(5)]
    for task in tasks:
        log.run(task, "w1", 1, 2)
    deadline = time.monotonic() + 5
    while dash.state.counts()["finished"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dash.state.counts()["finished"] == 5 and dash.state.store_used == 25
    source.up = False
    dash._thread.join(2)
    assert not dash.running and "shut down" in dash.state.stopped


# --------------------------------------------------------------------------- a real shell
@pytest.fixture(scope="class")
def shell():
    """An InteractiveShell with the magics loaded; ``run`` below makes it raise on errors."""
    from IPython.core.interactiveshell import InteractiveShell

    ipython = InteractiveShell.instance()
    ipython.run_cell("%load_ext miniray_magics").raise_error()
    yield ipython
    ipython.run_cell("%unload_ext miniray_magics")
    InteractiveShell.clear_instance()


def run(shell, code: str):
    """Run a cell; raise its error if it had one; return (its value, what it displayed)."""
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        result = shell.run_cell(code)
    result.raise_error()
    return result.result, captured


class TestBeforeInit:
    """Help and argument checks, and every magic refusing to run before miniray.init()."""

    def test_magics_before_init_say_to_call_init(self, shell):
        import miniray

        assert not miniray.is_initialized()
        for line in ("%timeline", "%memory", "%dashboard", "%taskgraph"):
            with pytest.raises(UsageError, match=r"call miniray\.init\(\) first"):
                run(shell, line)
        with pytest.raises(UsageError, match=r"call miniray\.init\(\) first"):
            run(shell, "%%taskgraph\nx = 1")
        assert not miniray.is_initialized(), "a magic must never start a runtime"

    @pytest.mark.parametrize("line, named", [
        ("%%taskgraph --layout diagonal\nx = 1", "--layout"),
        ("%%taskgraph --max-nodes 0\nx = 1", "--max-nodes"),
        ("%%taskgraph --save graph.svg\nx = 1", "--save"),
        ("%timeline --last 5 --cell", "--last"),
        ("%timeline --last -1", "--last"),
        ("%timeline --save trace.txt", "--save"),
        ("%memory --by colour", "--by"),
        ("%memory --top 0", "--top"),
        ("%dashboard --interval 0", "--interval"),
        ("%timeline --bogus", "--bogus"),
    ])
    def test_bad_options_name_what_was_wrong(self, shell, line, named):
        with pytest.raises(UsageError, match=named):
            run(shell, line)

    def test_question_mark_shows_the_docstring(self, shell, capsys):
        shell.run_cell("%taskgraph?").raise_error()
        help_text = capsys.readouterr().out
        assert "draw the graph of the tasks it submitted" in help_text
        assert "--max-nodes" in help_text and "--layout" in help_text
        for name in ("timeline", "memory", "dashboard"):
            assert "--" in shell.find_line_magic(name).__doc__

    def test_load_ext_miniray_loads_the_magics_too(self):
        from IPython.core.interactiveshell import InteractiveShell

        other = InteractiveShell()
        other.run_cell("%load_ext miniray").raise_error()
        assert other.find_cell_magic("taskgraph") and other.find_line_magic("dashboard")
        other.run_cell("%unload_ext miniray_magics")


SEED = """\
@miniray.remote
def my_function(x):
    return x * x

futures = [my_function.remote(i) for i in range(4)]
print(miniray.get(futures))
"""

TREE = """\
@miniray.remote
def add(a, b):
    return a + b

level = [my_function.remote(i) for i in range(8)]
while len(level) > 1:
    level = [add.remote(a, b) for a, b in zip(level[::2], level[1::2])]
miniray.get(level[0])
"""

WORK = """\
@miniray.remote
def work(i):
    time.sleep(0.25)
    return i
"""
PARALLEL_MAP = "miniray.get([work.remote(i) for i in range(6)])"


def tree_edges(graph) -> set[tuple[str, str]]:
    labels = nx.get_node_attributes(graph, "label")
    return {(labels[a], labels[b]) for a, b in graph.edges}


EXPECTED_TREE = ({(f"my_function #{2 * i + 1}", f"add #{i + 1}") for i in range(4)}
                 | {(f"my_function #{2 * i + 2}", f"add #{i + 1}") for i in range(4)}
                 | {("add #1", "add #5"), ("add #2", "add #5"), ("add #3", "add #6"),
                    ("add #4", "add #6"), ("add #5", "add #7"), ("add #6", "add #7")})


@pytest.fixture(scope="class")
def shell_runtime(shell):
    """A real two-CPU runtime started from the shell, shut down after the class."""
    import miniray

    run(shell, "import time\nimport numpy as np\nimport miniray\nminiray.init(num_cpus=2);")
    run(shell, WORK)
    yield shell
    miniray.shutdown()


@pytest.mark.usefixtures("shell_runtime")
class TestInShell:
    """Each magic against a real two-CPU runtime, in a shell that raises on errors."""

    def test_taskgraph_of_the_seed_example(self, shell, tmp_path):
        target = tmp_path / "seed.png"
        graph, captured = run(shell, f"%%taskgraph --save {target}\n{SEED}")
        assert "[0, 1, 4, 9]" in captured.stdout, "the cell's own output is kept"
        labels = sorted(d["label"] for _, d in graph.nodes(data=True))
        assert labels == [f"my_function #{i + 1}" for i in range(4)]
        assert graph.number_of_edges() == 0
        assert {d["state"] for _, d in graph.nodes(data=True)} == {"FINISHED"}
        width, height = png_size(target.read_bytes())
        assert width >= 300 and height >= 200

    def test_taskgraph_of_a_tree_of_adds(self, shell):
        graph, captured = run(shell, f"%%taskgraph --layout tb\n{TREE}")
        assert [o.data["text/plain"] for o in captured.outputs] == ["140"]
        assert tree_edges(graph) == EXPECTED_TREE
        assert png_size(graph._repr_png_())[0] > 500

    def test_taskgraph_keeps_the_cells_error_and_still_draws(self, shell):
        code = ("%%taskgraph\n@miniray.remote\ndef fails(x):\n    raise ValueError(x)\n"
                "miniray.get(fails.remote(1))")
        from IPython.utils.capture import capture_output

        with capture_output() as captured:
            result = shell.run_cell(code)
        assert isinstance(result.error_in_exec, ValueError)
        (shown,) = [o for o in captured.outputs if "image/png" in o.data]
        png_size(shown.data["image/png"])

    def test_timeline_shows_two_worker_rows_after_a_parallel_map(self, shell, tmp_path):
        run(shell, PARALLEL_MAP)
        chart, _ = run(shell, f"%timeline --cell --save {tmp_path / 'trace.json'}")
        assert chart.data.rows == ["w1", "w2"] or len(chart.data.rows) == 2
        assert sorted(bar.label for bar in chart.data.bars) == sorted(f"work #{i + 1}" for i in range(6))
        assert chart.data.utilisation > 0.5
        trace = json.loads((tmp_path / "trace.json").read_text())
        assert sum(e["ph"] == "X" for e in trace) == 6
        everything, _ = run(shell, "%timeline --last 600")
        assert len(everything.data.bars) >= 6
        png_size(chart._repr_png_())

    def test_memory_lists_a_16_mib_object_with_its_call_site(self, shell):
        report, _ = run(shell, "big = miniray.put(np.zeros(2 * 1024 * 1024))\n%memory")
        entry = next(e for e in report.entries if e.size >= 16 * MIB)
        assert entry.size < 17 * MIB and entry.count == 1
        (site,) = entry.call_sites
        assert site.endswith(":1"), site
        assert "16.0 MiB" in report.text() and site in report.text()
        by_site, _ = run(shell, "%memory --by callsite")
        assert by_site.entries[0].label == site
        png_size(report._repr_png_())
        run(shell, "del big")

    def test_dashboard_falls_back_to_text_and_counts_to_the_total(self, shell):
        run(shell, "miniray.get([work.remote(i) for i in range(3)])")
        snapshot, _ = run(shell, "%dashboard")
        counts = snapshot.state.counts()  # the failing task of an earlier test counts as failed
        assert counts["finished"] + counts["failed"] == len(snapshot.state.tasks) >= 3
        assert counts["pending"] == counts["running"] == 0
        run(shell, "%dashboard --stop")

    def test_dashboard_panel_thread_reaches_the_finished_total(self, shell):
        from miniray_magics.dashboard import DashboardPanel
        from miniray_magics.source import RuntimeSource

        dash = Dashboard(RuntimeSource(), DashboardPanel(), interval=0.05).start()
        try:
            run(shell, "miniray.get([work.remote(i) for i in range(4)])")
            deadline = time.monotonic() + 5
            bars = dash.panel.bars

            def done():
                total = len(dash.state.tasks)
                return total and bars["finished"].value + bars["failed"].value == total

            while not done() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert done() and bars["finished"].max == len(dash.state.tasks)
            assert bars["finished"].value >= 4 and bars["running"].value == 0
        finally:
            dash.stop()


# --------------------------------------------------------------------------- a real kernel
KERNEL_CELLS = [
    "import json, time\nimport numpy as np\nimport miniray\nminiray.init(num_cpus=2)\n"
    "%load_ext miniray_magics",
    "%%taskgraph\n" + SEED,
    "%%taskgraph\n" + TREE,
    "print(json.dumps(sorted(map(list, {(_.nodes[a]['label'], _.nodes[b]['label']) "
    "for a, b in _.edges}))))",
    WORK + PARALLEL_MAP,
    "%timeline --cell",
    "print(json.dumps(_.data.rows))",
    "big = miniray.put(np.zeros(2 * 1024 * 1024))\n%memory",
    "print(json.dumps([[e.size, sorted(e.call_sites)] for e in _.entries]))",
    "%dashboard --interval 0.1",
    "miniray.get([work.remote(i) for i in range(4)])\ntime.sleep(1.0)",
    "live = get_ipython().magics_manager.registry['MinirayMagics'].live\n"
    "print(json.dumps([live.state.counts(), live.panel.bars['finished'].value, "
    "len(live.state.tasks), live.running]))",
    "%dashboard --stop",
    "miniray.get([work.remote(i) for i in range(4)], progress=True)",
    "miniray.shutdown()",
]


@pytest.fixture(scope="module")
def kernel_notebook(tmp_path_factory):
    """The cells above, run once in a real python3 kernel through nbclient."""
    import nbformat
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("kernel")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in KERNEL_CELLS]
    # allow_errors: the last cell must shut the kernel's runtime down whatever happened before;
    # each test then checks its own cells for errors.
    client = NotebookClient(notebook, kernel_name="python3", timeout=60, allow_errors=True,
                            resources={"metadata": {"path": str(folder)}})
    client.execute()
    nbformat.write(notebook, folder / "magics.ipynb")
    return notebook


def outputs_of(notebook, index: int, mime: str) -> list:
    errors = [o for o in notebook.cells[index].outputs if o["output_type"] == "error"]
    assert not errors, f"cell {index} failed: {errors[0]['ename']}: {errors[0]['evalue']}"
    return [o["data"][mime] for o in notebook.cells[index].outputs
            if o.get("data", {}).get(mime) is not None]


def printed(notebook, index: int):
    outputs_of(notebook, index, "text/plain")
    text = "".join(o.get("text", "") for o in notebook.cells[index].outputs
                   if o["output_type"] == "stream" and o["name"] == "stdout")
    return json.loads(text)


def save_screenshot(notebook, index: int, name: str) -> bytes:
    (data,) = outputs_of(notebook, index, "image/png")
    picture = base64.b64decode(data)
    if os.environ.get("MINIRAY_REFRESH_DOCS_IMG"):  # never rewrite the tracked pictures by default
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        (DOCS_IMG / name).write_bytes(picture)
    return picture


class TestInKernel:
    """The magics in a real kernel; their PNGs become the screenshots in docs/img/."""

    def test_taskgraph(self, kernel_notebook):
        outputs_of(kernel_notebook, 0, "text/plain")
        assert not outputs_of(kernel_notebook, len(KERNEL_CELLS) - 1, "text/plain")
        assert "[0, 1, 4, 9]" in "".join(o.get("text", "") for o in kernel_notebook.cells[1].outputs)
        (summary,) = outputs_of(kernel_notebook, 1, "text/plain")
        assert summary.startswith("TaskGraph: 4 nodes, 0 edges (4 × my_function")
        width, height = png_size(save_screenshot(kernel_notebook, 1, "taskgraph_seed.png"))
        assert width >= 300 and height >= 200
        png_size(save_screenshot(kernel_notebook, 2, "taskgraph.png"))
        assert {tuple(edge) for edge in printed(kernel_notebook, 3)} == EXPECTED_TREE

    def test_timeline(self, kernel_notebook):
        assert printed(kernel_notebook, 6) == ["w1", "w2"]
        width, _ = png_size(save_screenshot(kernel_notebook, 5, "timeline.png"))
        assert width > 500

    def test_memory(self, kernel_notebook):
        sizes = printed(kernel_notebook, 8)
        size, sites = sizes[0]
        assert 16 * MIB <= size < 17 * MIB and len(sites) == 1 and sites[0].endswith(":1")
        (html,) = outputs_of(kernel_notebook, 7, "text/html")
        assert "16.0 MiB" in html and sites[0] in html
        png_size(save_screenshot(kernel_notebook, 7, "memory.png"))

    def test_the_tracked_docs_pictures_are_left_alone(self, kernel_notebook):
        """Issue 20 item 8: the suite rewrote docs/img/*.png; now only MINIRAY_REFRESH_DOCS_IMG=1 does."""
        if os.environ.get("MINIRAY_REFRESH_DOCS_IMG"):
            pytest.skip("refreshing docs/img on purpose")
        before = {p.name: p.read_bytes() for p in DOCS_IMG.glob("*.png")}
        save_screenshot(kernel_notebook, 5, "timeline.png")
        save_screenshot(kernel_notebook, 7, "memory.png")
        assert {p.name: p.read_bytes() for p in DOCS_IMG.glob("*.png")} == before

    def test_dashboard(self, kernel_notebook):
        (view,) = outputs_of(kernel_notebook, 9, "application/vnd.jupyter.widget-view+json")
        counts, finished_bar, total, running = printed(kernel_notebook, 11)
        assert counts["finished"] == finished_bar == total >= 4 and running
        assert counts["pending"] == counts["running"] == counts["failed"] == 0
        state = kernel_notebook.metadata["widgets"][
            "application/vnd.jupyter.widget-state+json"]["state"]
        bars = [m["state"] for m in state.values() if m["model_name"] == "IntProgressModel"
                and m["state"].get("bar_style") == "success"]
        assert any(bar["value"] == bar["max"] == total for bar in bars), \
            "the browser saw the finished bar reach the total"
        assert view["model_id"] in state

    def test_progress_bar_is_a_widget_and_prints_nothing(self, kernel_notebook):
        cell = kernel_notebook.cells[13]
        assert outputs_of(kernel_notebook, 13, "application/vnd.jupyter.widget-view+json")
        assert not [o for o in cell.outputs if o["output_type"] == "stream"]
        assert outputs_of(kernel_notebook, 13, "text/plain")[-1] == "[0, 1, 2, 3]"


def test_dask_keys_read_as_their_operation_and_collapse_together():
    """Dask names tasks by key, e.g. "('add-3f2a...', 0, 1)"; the graph labels and groups them by the
    operation ("add"), so a big Dask computation collapses into one node per operation."""
    from miniray_magics.graph import display_name, graph_of

    assert display_name("('add-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d', 0, 1)") == "add"
    assert display_name("sum-aggregate-1a2b3c4d5e6f") == "sum-aggregate"
    assert display_name("Counter.__init__") == "Counter" and display_name("my_function") == "my_function"
    events, seq = [], 0
    for i in range(40):
        key = f"('add-{'ab12' * 8}', {i})"
        events.append({"kind": "submitted", "seq": seq, "ts": float(seq), "task_id": f"t{i}", "name": key,
                       "type": "task", "actor_id": None, "deps": [], "returns": [f"t{i}00"],
                       "call_site": "x.py:1", "resources": {"CPU": 1.0}})
        seq += 1
    graph = graph_of(events, max_nodes=10)
    assert graph.number_of_nodes() == 1
    assert "add" in next(iter(graph.nodes(data=True)))[1]["label"]
