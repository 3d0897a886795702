"""Graded tests for exercise 1 (tasks).

Each ``test_task_N_M_*`` runs in the sandbox that executed the submitted notebook; ``nb`` is that
notebook's namespace.  Results are compared with plain Python (the oracle); *how* the work ran is read
from the runtime's event log and from the source of the student's function.
"""
import pytest

from miniray.grading.checks import calls_in_loops, events_during, ran_concurrently, tasks_named

EXERCISE = "01_tasks"

HINTS = {
    "1.1": "Put @ray.remote on the line above `def square(x):`.",
    "1.2": "Build a list of refs with remote_score.remote(x) for every x, then call ray.get once on the list.",
    "1.3": "Keep a list of refs; replace each pair with add.remote(left, right) until one ref is left.",
    "1.4": "Submit every slow_double task first (a list comprehension of refs), then one ray.get on the list.",
}


def test_task_1_1_square_is_a_remote_function(nb):
    ray = nb.ray         # the engine the notebook imported: miniray, or real Ray

    assert hasattr(nb.square, "remote"), "square should be a remote function: decorate it with @ray.remote."
    assert ray.get(nb.square.remote(7)) == 49, "ray.get(square.remote(7)) should be 49."
    assert ray.get([nb.square.remote(i) for i in range(5)]) == [i * i for i in range(5)], \
        "square.remote(i) should give i * i for every i."


def test_task_1_2_same_results_as_the_serial_loop(nb):
    xs = [3, 1, 4, 1, 5, 9, 2, 6]
    got = nb.scores_parallel(xs)
    assert isinstance(got, list), f"scores_parallel should return a list of values, not {type(got).__name__}."
    assert got == nb.scores_serial(xs), (f"scores_parallel({xs}) returned {got}; "
                                         f"expected {nb.scores_serial(xs)} (same values, same order).")


def test_task_1_2_runs_tasks_at_the_same_time(nb):
    xs = list(range(6))
    _, evs = events_during(nb.scores_parallel, xs)
    n = len(tasks_named(evs, "slow_score"))
    assert n == len(xs), (f"scores_parallel({xs}) should submit one remote_score task per item "
                          f"({len(xs)}), but it submitted {n}.")
    assert ran_concurrently(evs), ("No two tasks ran at the same time. Submit all the tasks first, "
                                   "then call ray.get once on the list of refs.")


def test_task_1_3_adds_up_like_sum(nb):
    for xs in ([1, 2], list(range(1, 9)), [5, -3, 10, 7, 1], list(range(100, 113))):
        got = nb.tree_sum(xs)
        assert got == sum(xs), f"tree_sum({xs}) returned {got}; sum({xs}) is {sum(xs)}."


def test_task_1_3_passes_refs_between_tasks(nb):
    xs = list(range(1, 17))
    _, evs = events_during(nb.tree_sum, xs)
    adds = tasks_named(evs, "add")
    assert len(adds) == len(xs) - 1, (f"Adding {len(xs)} numbers pairwise takes {len(xs) - 1} add tasks; "
                                      f"tree_sum submitted {len(adds)}.")
    lines = calls_in_loops(nb.source("tree_sum"), "get")
    assert not lines, (f"tree_sum calls ray.get inside a loop (line {lines[0]} of the function). "
                       "Call it once, on the last ref.")
    if nb.ray.__name__ == "ray":
        pytest.skip("miniray only: Ray's state API records no dependency edges, so which add task "
                    "was given another's ObjectRef cannot be read")
    returned = {oid for e in adds for oid in (e.get("returns") or ())}
    chained = [e for e in adds if returned.intersection(e.get("deps") or ())]
    assert chained, ("No add task received the ObjectRef of another add task. Pass the refs from "
                     "add.remote(...) straight into the next add.remote(...), without ray.get.")


def test_task_1_4_same_total(nb):
    for xs in ([1, 2, 3], list(range(6)), [10, -4]):
        got = nb.total_fast(xs)
        assert got == 2 * sum(xs), f"total_fast({xs}) returned {got}; expected {2 * sum(xs)}."


def test_task_1_4_no_get_inside_the_loop(nb):
    lines = calls_in_loops(nb.source("total_fast"), "get", unless="wait")
    assert not lines, (f"total_fast still calls ray.get inside a loop (line {lines[0]} of the function), "
                       "so each task waits for the one before. Submit all tasks first, then get them all "
                       "with one ray.get (or take them as they finish with ray.wait).")
    _, evs = events_during(nb.total_fast, list(range(6)))
    assert len(tasks_named(evs, "slow_double")) == 6, "total_fast(range(6)) should submit six slow_double tasks."
    assert ran_concurrently(evs), "The slow_double tasks never overlapped; submit them all before waiting."
