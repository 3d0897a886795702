"""Graded tests for exercise 9 (durable pipelines).

Each ``test_task_N_M_*`` runs in the sandbox that executed the submitted notebook; ``nb`` is that
notebook's namespace.  Results are compared with plain Python; "nothing ran" and "each day fetched
once" are read from the event log and from the steps' own log file; "one step per turn" from the
workflow's storage.
"""
import os
import uuid

from miniray.grading.checks import events_during

EXERCISE = "09_workflows"

HINTS = {
    "9.1": "return report.bind(*[clean.bind(load.bind(d)) for d in days]): .bind() builds, .execute() runs.",
    "9.2": "dag = total.bind(*[fetch.bind(d, LOG, MARKER) for d in days]); try workflow.run(dag, "
           "workflow_id=workflow_id); except ConnectionError: return workflow.resume(workflow_id).",
    "9.3": "if n == 1: return turns; else return workflow.continuation(collatz.bind(next_n, turns + 1)); "
           "collatz_workflow runs workflow.run(collatz.bind(n, 0), workflow_id=workflow_id).",
}


def _oracle_pipeline(days):
    return sum(sum(r for r in (d, -d, 2 * d) if r >= 0) for d in days)


def test_task_9_1_builds_without_running(nb):
    import miniray as ray

    dag, evs = events_during(nb.build_pipeline, [1, 2, 3, 4])
    assert isinstance(dag, nb.DAGNode), (f"build_pipeline should return a DAG node (from .bind()), not "
                                         f"{type(dag).__name__}.")
    ran = [e["name"] for e in evs if e["kind"] == "submitted"]
    assert not ran, f"build_pipeline ran tasks ({ran}); use .bind() so that nothing runs until .execute()."
    got = ray.get(dag.execute())
    want = _oracle_pipeline([1, 2, 3, 4])
    assert got == want, f"ray.get(dag.execute()) gave {got}, expected {want}."
    assert ray.get(nb.build_pipeline([5]).execute()) == _oracle_pipeline([5])


def test_task_9_2_resumes_and_fetches_each_day_once(nb):
    for path in (nb.LOG, nb.MARKER):
        if os.path.exists(path):
            os.unlink(path)
    wid = f"grade-{uuid.uuid4().hex[:8]}"
    got = nb.fetch_all([1, 2, 3, 4, 5], wid)
    assert got == 1500, f"fetch_all([1, 2, 3, 4, 5], ...) returned {got}; expected 100+200+300+400+500 = 1500."
    with open(nb.LOG) as f:
        lines = f.read().split("\n")
    counts = {d: lines.count(f"fetch {d}") for d in range(1, 6)}
    assert counts[3] == 2, f"Day 3 should be fetched twice (it fails once); it was fetched {counts[3]} time(s)."
    again = [d for d in (1, 2, 4, 5) if counts[d] != 1]
    assert not again, (f"Days {again} were fetched more than once ({counts}): run the DAG with workflow.run so each "
                       "finished fetch is saved, and resume the same workflow_id instead of running it anew.")
    assert str(nb.workflow.get_status(wid)) == "SUCCESSFUL", "The workflow should end SUCCESSFUL."


def _collatz_turns(n):
    turns = 0
    while n != 1:
        n, turns = (n // 2 if n % 2 == 0 else 3 * n + 1), turns + 1
    return turns


def test_task_9_3_one_step_per_turn(nb):
    for n in (6, 7, 1):
        wid = f"grade-collatz-{n}-{uuid.uuid4().hex[:6]}"
        got = nb.collatz_workflow(n, wid)
        turns = _collatz_turns(n)
        assert got == turns, f"collatz_workflow({n}) returned {got}; the walk from {n} takes {turns} turns."
        steps = [t for t in range(_collatz_turns(n) + 1)
                 if _has_task(nb, wid, "collatz" if t == 0 else f"collatz_{t}")]
        assert len(steps) == _collatz_turns(n) + 1, (
            f"The workflow for {n} saved {len(steps)} collatz steps; each turn should be its own step "
            f"({_collatz_turns(n) + 1} in all): return workflow.continuation(collatz.bind(...)) instead of looping "
            "inside one step.")


def _has_task(nb, wid, task_id):
    try:
        return nb.workflow.get_metadata(wid, task_id).get("status") == "SUCCESSFUL"
    except Exception:
        return False
