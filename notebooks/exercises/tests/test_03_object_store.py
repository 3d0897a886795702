"""Graded tests for exercise 3 (the object store).

Each ``test_task_N_M_*`` runs in the sandbox that executed the submitted notebook; ``nb`` is that
notebook's namespace.  Values are compared with NumPy; how the array travelled (one shared reference,
built in the store, results taken as they finish) is read from the event log and the function's source.
"""
import math

import numpy as np
import pytest

from miniray.grading.checks import calls, events_during, run_intervals, shared_dependency, tasks_named

EXERCISE = "03_object_store"

HINTS = {
    "3.1": "ref = ray.put(arr) once, before the loop; then chunk_sum.remote(ref, lo, hi) for each slice.",
    "3.2": "arr = miniray.util.empty((n,), 'float64'); arr[:] = np.arange(n); return ray.put(arr).",
    "3.3": "Loop while refs are pending: ready, pending = ray.wait(pending, num_returns=1); collect ray.get(ready[0]).",
}


def test_task_3_1_sum_matches_numpy(nb):
    rng = np.random.default_rng(1)
    for n, chunks in ((100_000, 4), (99_999, 3), (10, 1)):
        arr = rng.random(n)
        got = nb.parallel_sum(arr, chunks)
        assert math.isclose(got, float(arr.sum()), rel_tol=1e-9), \
            f"parallel_sum(arr of {n}, {chunks}) returned {got}; arr.sum() is {float(arr.sum())}."


def test_task_3_1_every_task_shares_one_reference(nb):
    arr = np.random.default_rng(2).random(400_000)
    _, evs = events_during(nb.parallel_sum, arr, 4)
    parts = tasks_named(evs, "chunk_sum")
    assert len(parts) == 4, f"parallel_sum(arr, 4) should run four chunk_sum tasks, it ran {len(parts)}."
    if nb.ray.__name__ == "ray":
        pytest.skip("miniray only: Ray's state API does not record which ObjectRefs a task was given")
    assert shared_dependency(parts), ("The chunk_sum tasks did not all receive the same ObjectRef, so the array "
                                      "was stored more than once. Call ray.put(arr) once and pass that ref.")
    big = [e for e in evs if e["kind"] == "put" and e.get("size", 0) >= arr.nbytes]
    assert len(big) <= 1, f"The {arr.nbytes // 2**20} MiB array was put {len(big)} times; put it once."


def test_task_3_2_ramp_built_in_the_store(nb):
    ray = nb.ray         # the engine the notebook imported: miniray, or real Ray
    if ray.__name__ == "ray":
        pytest.skip("miniray only: Ray has no util.empty to build a writable array in its object store")

    ref = nb.ramp_in_store(1000)
    assert type(ref).__name__ == "ObjectRef", f"ramp_in_store should return an ObjectRef (from ray.put), not {type(ref).__name__}."
    got = ray.get(ref)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64, "The stored value should be a float64 NumPy array."
    assert np.array_equal(got, np.arange(1000, dtype=np.float64)), "ray.get(ramp_in_store(1000)) should hold 0, 1, ..., 999."
    assert calls(nb.source("ramp_in_store"), "empty"), \
        "Create the array with miniray.util.empty(...) so that it is born in shared memory."


def test_task_3_3_results_in_finishing_order(nb):
    delays = [0.3, 0.05, 0.2, 0.1]
    got, evs = events_during(nb.as_they_finish, delays)
    assert sorted(got) == sorted(delays), f"as_they_finish({delays}) should return every result; it returned {got}."
    runs = tasks_named(evs, "sleepy")
    assert len(runs) == len(delays), f"as_they_finish should start one sleepy task per delay ({len(delays)})."
    finished = {e["task_id"]: e["ts"] for e in evs if e["kind"] == "finished"}
    started = {e["task_id"]: e["ts"] for e in evs if e["kind"] == "started"}
    # Which run slept which delay: the longer the sleep, the longer the run (submission order is
    # not enough: Ray stamps submissions in whole milliseconds, and four can share one).
    ran_for = sorted((finished.get(r["task_id"], math.inf) - started.get(r["task_id"], 0.0), r["task_id"])
                     for r in runs)
    when = {d: finished.get(tid, math.inf) for d, (_, tid) in zip(sorted(delays), ran_for)}
    expected = sorted(delays, key=when.get)
    # Two tasks that finish within a few milliseconds may both be ready at one ray.wait: either order is fine.
    late = [(a, b) for i, a in enumerate(got) for b in got[i + 1:] if when[a] > when[b] + 0.03]
    assert not late, (f"The tasks finished in the order {expected}, but as_they_finish returned "
                      f"{list(got)}. Take each result as soon as ray.wait says it is ready.")
    assert len(run_intervals(evs)) == len(delays), "Every sleepy task should have run to the end."
