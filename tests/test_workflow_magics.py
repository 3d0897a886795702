"""%%taskgraph and the DAG API, in a real InteractiveShell that raises on errors: a bound DAG is
drawn before it runs, and a resumed workflow shows its saved steps as RESTORED, apart from those
that ran."""
from __future__ import annotations

import pytest

from test_magics import run

pytestmark = pytest.mark.timeout(120, method="signal")


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    import miniray
    from IPython.core.interactiveshell import InteractiveShell

    ipython = InteractiveShell.instance()
    ipython.run_cell("%load_ext miniray_magics").raise_error()
    store = tmp_path_factory.mktemp("wf")
    run(ipython, f"""
import os
import miniray
from miniray import workflow
miniray.init(num_cpus=2)
workflow.init(storage={str(store)!r})
MARK = {str(store / 'fixed')!r}

@miniray.remote
def load(d):
    return d

@miniray.remote
def report(*xs):
    if not os.path.exists(MARK):
        raise RuntimeError("not yet")
    return sum(xs)
""")
    yield ipython
    ipython.run_cell("%unload_ext miniray_magics")
    InteractiveShell.clear_instance()
    miniray.shutdown()


def test_taskgraph_draws_a_bound_dag_before_it_runs(shell):
    from miniray import events
    before = events.cursor()
    graph, _ = run(shell, "%%taskgraph\ndag = report.bind(*[load.bind(d) for d in range(3)])\ndag")
    assert not [e for e in events.events(before) if e["kind"] == "submitted"], "nothing ran"
    labels = sorted(d["label"] for _, d in graph.nodes(data=True))
    assert labels == ["load(0)", "load(1)", "load(2)", "report(0)"]
    assert graph.number_of_edges() == 3
    assert {d["state"] for _, d in graph.nodes(data=True)} == {"PENDING"}
    assert graph._repr_png_().startswith(b"\x89PNG")


def test_a_resumed_workflow_colours_restored_steps_apart(shell):
    run(shell, "try:\n    workflow.run(dag, workflow_id='pic')\nexcept RuntimeError:\n    pass\n"
               "open(MARK, 'w').close()")
    graph, captured = run(shell, "%%taskgraph\nworkflow.resume('pic')")
    states = {d["label"]: d["state"] for _, d in graph.nodes(data=True)}
    assert states == {"load": "RESTORED", "load_1": "RESTORED", "load_2": "RESTORED",
                      "report": "FINISHED"}, states          # labelled with their ids in storage
    assert graph.number_of_edges() == 3
    assert [o.data["text/plain"] for o in captured.outputs] == ["3"]
    from miniray_magics.draw_graph import node_colours
    from miniray_magics.figures import STATE_COLOURS
    _, legend = node_colours(graph, "state")
    assert legend["restored"] == STATE_COLOURS["RESTORED"] != legend["finished"]
