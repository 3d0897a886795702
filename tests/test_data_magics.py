"""Seeing a dataset run (issue 16): operators in %%taskgraph and %timeline, progress bars.

    hand-built events named as miniray.data names its tasks ──► graph_of: one node per operator
    a real kernel (nbclient) ──► %%taskgraph / %timeline of a pipeline, the per-operator widgets
    a real terminal (a pty) ──► text bars redrawn in place at a bounded rate
"""
from __future__ import annotations

import base64
import os
import pty
import select
import subprocess
import sys
import textwrap
import time

import nbformat
from nbclient import NotebookClient

from miniray_magics.graph import graph_of, operator_of

WIDGET = "application/vnd.jupyter.widget-view+json"


def _events(calls):
    """Events of finished tasks: ``calls`` is [(name, deps, type, actor_id)], one return each."""
    out, ts = [], 100.0
    for i, (name, deps, kind, actor) in enumerate(calls):
        tid = f"t{i}"
        out.append({"kind": "submitted", "ts": ts, "seq": len(out), "task_id": tid, "name": name,
                    "type": kind, "actor_id": actor, "deps": list(deps), "returns": [f"o{i}"]})
        out.append({"kind": "started", "ts": ts + 0.1, "seq": len(out), "task_id": tid,
                    "worker_id": f"w{i % 2}", "node_id": "n", "actor_id": actor})
        out.append({"kind": "finished", "ts": ts + 0.5, "seq": len(out), "task_id": tid,
                    "worker_id": f"w{i % 2}", "state": "FINISHED"})
        ts += 0.2
    return out


def test_operator_names_are_told_apart_from_user_calls():
    assert operator_of("ReadCSV->Map(add_fare)") == "ReadCSV->Map(add_fare)"
    assert operator_of("Sort(x, y) reduce") == "Sort(x, y) reduce"
    assert operator_of("Repartition[4] gather") == "Repartition[4] gather"
    assert operator_of("MapBatches(Model).process", "actor_method") == "MapBatches(Model)"
    assert operator_of("MapBatches(Model).__init__", "actor_creation") == "MapBatches(Model) actors"
    for name, kind in [("add", "task"), ("my_function", "task"), ("Counter.incr", "actor_method"),
                       ("Counter.__init__", "actor_creation"), ("put", "put")]:
        assert operator_of(name, kind) is None, name


def test_graph_draws_one_node_per_operator_with_block_counts():
    calls = [("ReadCSV->Map(f)", [], "task", None) for _ in range(4)]
    calls += [("Sort(x) sample", [f"o{i}"], "task", None) for i in range(4)]
    calls += [("Sort(x) map", [f"o{i}"], "task", None) for i in range(4)]
    calls += [("Sort(x) reduce", [f"o{i}" for i in range(8, 12)], "task", None) for _ in range(2)]
    calls += [("add", [], "task", None), ("add", [], "task", None)]   # user calls stay apart
    graph = graph_of(_events(calls), max_nodes=150)
    labels = sorted(d["label"] for _, d in graph.nodes(data=True))
    assert labels == ["ReadCSV->Map(f) ×4", "Sort(x) map ×4", "Sort(x) reduce ×2",
                      "Sort(x) sample ×4", "add #1", "add #2"], labels
    by_label = {d["label"]: n for n, d in graph.nodes(data=True)}
    assert graph.has_edge(by_label["ReadCSV->Map(f) ×4"], by_label["Sort(x) map ×4"])
    assert graph.edges[by_label["Sort(x) map ×4"], by_label["Sort(x) reduce ×2"]]["count"] == 8
    assert graph.nodes[by_label["Sort(x) map ×4"]]["states"] == {"FINISHED": 4}
    plain = graph_of(_events(calls), operators=False)
    assert plain.number_of_nodes() == len(calls)


def _run_notebook(tmp_path, cells):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outs = [cell.outputs for cell in nb.cells]
    errors = [o for out in outs for o in out if o.output_type == "error"]
    assert not errors, errors
    return outs


def _text(outs) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outs)


def test_taskgraph_timeline_and_widgets_of_a_pipeline_in_a_real_kernel(tmp_path):
    csv = tmp_path / "rides"
    csv.mkdir()
    for part in range(4):
        csv.joinpath(f"part{part}.csv").write_text(
            "km,fare\n" + "".join(f"{i % 7},{i * 1.5}\n" for i in range(part * 100, part * 100 + 100)))
    cells = [
        "import miniray as ray\nray.init(num_cpus=2)\n%load_ext miniray_magics\n"
        "def add_fare(r):\n    return {**r, 'per_km': r['fare'] / (r['km'] + 1)}",
        f"%%taskgraph --save {tmp_path}/graph.png\n"
        f"ds = ray.data.read_csv({str(csv)!r}).map(add_fare)\n"
        "rows = ds.sort('per_km').take_all()",
        "g = %taskgraph\nprint(len(rows), sorted(d['label'] for _, d in g.nodes(data=True)))",
        "t = %timeline --cell\nprint(t.data.rows, sorted({b.name for b in t.data.bars}))\nt",
        "ray.data.range(2000, override_num_blocks=8).map_batches(lambda b: b).count()",
        "ray.data.DataContext.get_current().enable_progress_bars = False\n"
        "ray.data.range(2000, override_num_blocks=8).map(lambda r: r).count()",
    ]
    outs = _run_notebook(tmp_path, cells)
    assert (tmp_path / "graph.png").read_bytes()[:4] == b"\x89PNG"
    drawn = [o["data"]["image/png"] for o in outs[1] if "image/png" in o.get("data", {})]
    assert drawn and base64.b64decode(drawn[0])[:4] == b"\x89PNG"
    said = _text(outs[2])
    assert said.startswith("400 "), said
    for label in ("ReadCSV->Map(add_fare) ×4", "Sort(per_km) sample ×4", "Sort(per_km) map ×4",
                  "Sort(per_km) reduce ×4"):
        assert label in said, said
    assert "#" not in said, said          # no node stands for a single block task
    rows, names = _text(outs[3]).splitlines()[:2]
    assert "ReadCSV->Map(add_fare)" in names and "Sort(per_km) reduce" in names, names
    assert any("image/png" in o.get("data", {}) for o in outs[3])
    # One widget per operator, and no text bars in the cells' output.
    for index, operators in ((1, 2), (4, 1), (5, 0)):     # the last with the bars off
        widgets = [o for o in outs[index] if WIDGET in o.get("data", {})]
        assert len(widgets) == operators, outs[index]
        streams = [o for o in outs[index] if o.output_type == "stream"]
        assert not streams, streams
    assert "2000" in _text(outs[4]) and "2000" in _text(outs[5])


def test_text_bars_are_redrawn_in_place_at_a_bounded_rate_on_a_terminal():
    script = textwrap.dedent("""
        import time, miniray as ray
        ray.init(num_cpus=2)
        def slow(b):
            time.sleep(0.02)
            return b
        t0 = time.perf_counter()
        ray.data.range(4000, override_num_blocks=40).map_batches(slow).count()
        print("WALL", time.perf_counter() - t0, flush=True)
        ray.shutdown()
    """)
    main, tty = pty.openpty()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=tty,
                            env=env)
    os.close(tty)
    seen, deadline = b"", time.monotonic() + 90
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([main], [], [], 0.2)[0]:
                try:
                    seen += os.read(main, 65536)
                except OSError:
                    break
        out = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    text = seen.decode(errors="replace")
    wall = float(out.split("WALL")[1].split()[0])
    draws = text.count("\r- ")
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.startswith("- ")]
    assert lines and lines[-1].startswith("- ReadRange->MapBatches(slow)"), lines
    assert ": 40/? blocks" in lines[-1], lines
    # At most one redraw per REDRAW (0.2 s) per operator, plus the final line of each.
    assert 1 <= draws <= wall / 0.2 + 3, (draws, wall, text[-500:])
    assert text.count("\n") <= 3, text[-500:]


def test_timeline_names_bars_by_operator_with_a_row_per_pool_actor():
    from miniray_magics.timeline import timeline_of

    calls = [("ReadRange->Map(f)", [], "task", None) for _ in range(2)]
    calls += [("MapBatches(Model).__init__", [], "actor_creation", a) for a in ("a1", "a2")]
    calls += [("MapBatches(Model).process", [f"o{i}"], "actor_method", ("a1", "a2")[i])
              for i in range(2)]
    data = timeline_of(_events(calls))
    assert {b.name for b in data.bars} == {"ReadRange->Map(f)", "MapBatches(Model)",
                                           "MapBatches(Model) actors"}
    assert sorted(data.actor_rows) == [r for r in data.rows if r.startswith("MapBatches(Model)")]
    assert len(data.actor_rows) == 2
