"""Graded tests for exercise 4 (Dask on miniray, and memory).

Each ``test_task_N_M_*`` runs in the sandbox that executed the submitted notebook; ``nb`` is that
notebook's namespace.  Results are compared with plain Python and NumPy; that the graph ran on miniray,
and how many intermediate arrays were alive at once, are read from the runtime's event log.
"""
import gc
import time

import numpy as np
import pytest

from miniray.grading.checks import events_during, live_objects_peak, tasks_named

EXERCISE = "04_dask"

HINTS = {
    "4.1": "parts = [dask.delayed(inc)(x) for x in xs]; dask.delayed(total)(parts).compute(scheduler=miniray_dask_get).",
    "4.2": "Rebind one variable: ref = smooth.remote(ref) in the loop, then return ray.get(ref).",
    "4.3": "da.from_array(arr, chunks=chunk).mean().compute(scheduler=miniray_dask_get), converted with float().",
}


def smooth_numpy(arr, steps):
    for _ in range(steps):
        arr = (np.roll(arr, 1) + arr + np.roll(arr, -1)) / 3
    return arr


def test_task_4_1_total_matches_python(nb):
    for xs in ([1, 2, 3], list(range(10)), [-5]):
        got = nb.delayed_total(xs)
        assert got == sum(x + 1 for x in xs), f"delayed_total({xs}) returned {got}; expected {sum(x + 1 for x in xs)}."


def test_task_4_1_graph_runs_on_miniray(nb):
    xs = list(range(6))
    _, evs = events_during(nb.delayed_total, xs)
    ran = tasks_named(evs, kind="task")
    assert len(ran) >= len(xs), ("The graph's tasks did not run on miniray. "
                                 "Compute it with .compute(scheduler=miniray_dask_get).")


def test_task_4_2_same_result(nb):
    arr = np.random.default_rng(3).random(10_000)
    got = nb.pipeline(arr, 4)
    assert isinstance(got, np.ndarray), f"pipeline should return the final array, not {type(got).__name__}."
    assert np.allclose(got, smooth_numpy(arr, 4)), "pipeline(arr, 4) should equal smooth applied four times."


def test_task_4_2_intermediates_are_freed(nb):
    if nb.ray.__name__ == "ray":
        pytest.skip("miniray only: Ray's state API does not report when an object is freed")
    from miniray.util.state import list_objects

    before = len(list_objects())
    arr = np.random.default_rng(4).random(250_000)
    got, evs = events_during(nb.pipeline, arr, 8)
    assert np.allclose(got, smooth_numpy(arr, 8)), "pipeline(arr, 8) should equal smooth applied eight times."
    peak = live_objects_peak(evs)
    assert peak <= 3, (f"Up to {peak} arrays were alive in the object store at once during pipeline(arr, 8). "
                       "Hold only the latest reference (ref = smooth.remote(ref)) so each step's input can be freed.")
    del got   # a zero-copy result keeps its object alive; the student's refs must not
    gc.collect()
    deadline = time.monotonic() + 3
    while len(list_objects()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    left = len(list_objects()) - before
    assert left <= 0, f"{left} object(s) were still in the store after pipeline returned; keep no references to them."


def test_task_4_3_mean_on_miniray(nb):
    arr = np.random.default_rng(5).random(1000)
    got, evs = events_during(nb.dask_mean, arr, 250)
    assert isinstance(got, float), f"dask_mean should return a float, not {type(got).__name__}."
    assert np.isclose(got, arr.mean()), f"dask_mean returned {got}; arr.mean() is {arr.mean()}."
    assert len(tasks_named(evs, kind="task")) >= 4, \
        "The dask array's tasks did not run on miniray: pass scheduler=miniray_dask_get to compute()."
