"""Graded tests for exercise 7 (datasets).

``nb`` is the executed notebook's namespace.  Results are compared with pandas computing the same
thing on the same rows; how the work ran (map_batches, groupby, an actor pool) is read from the
student's source and the runtime's event log.
"""
import numpy as np
import pandas as pd

from miniray.grading.checks import calls, events_during, tasks_named

EXERCISE = "07_data"

HINTS = {
    "7.1": "return ds.map_batches(fn, batch_format='pandas') where fn keeps df[df.km > 0] and assigns "
           "per_km = fare / km.",
    "7.2": "return ds.groupby('hour').mean('fare').take_all()",
    "7.3": "In __init__ keep self.weight; in __call__ set batch['score'] = self.weight * batch['km'] and "
           "return batch; then ds.map_batches(Scorer, fn_constructor_args=(weight,), concurrency=2).",
}


def _frame():
    rng = np.random.default_rng(5)
    n = 300
    return pd.DataFrame({"hour": rng.integers(0, 6, n), "km": rng.integers(0, 4, n).astype(float),
                         "fare": rng.random(n) * 30})


def _ds(nb, df):
    # Three frames, three blocks.  Not from_pandas(df, override_num_blocks=3): Ray 2.60 splits the
    # frame into numpy arrays there and fails ("'numpy.ndarray' object has no attribute 'columns'").
    return nb.ray.data.from_pandas([df.iloc[i:i + 100] for i in range(0, len(df), 100)])


def test_task_7_1_per_km_matches_pandas(nb):
    df = _frame()
    out = nb.add_per_km(_ds(nb, df))
    assert hasattr(out, "to_pandas"), f"add_per_km should return a Dataset, not {type(out).__name__}."
    got = out.to_pandas().reset_index(drop=True)
    want = df[df["km"] > 0].assign(per_km=lambda d: d["fare"] / d["km"]).reset_index(drop=True)
    assert len(got) == len(want), (f"add_per_km kept {len(got)} rows; the {len(want)} rows with km > 0 "
                                   "should stay.")
    assert "per_km" in got.columns, f"The result has columns {list(got.columns)}; add a 'per_km' column."
    np.testing.assert_allclose(got["per_km"].to_numpy(), want["per_km"].to_numpy(),
                               err_msg="per_km should be fare / km for every row.")
    assert set(want.columns) <= set(got.columns), "Keep the columns hour, km and fare."
    assert calls(nb.source("add_per_km"), "map_batches"), "Use ds.map_batches(...) for this task."


def test_task_7_2_means_match_pandas(nb):
    df = _frame()
    got = nb.mean_fare_by_hour(_ds(nb, df))
    want = df.groupby("hour")["fare"].mean()
    assert isinstance(got, list), f"mean_fare_by_hour should return a list of dicts, not {type(got).__name__}."
    got = sorted(got, key=lambda r: (r.get("hour") is None, r.get("hour")))   # Ray's hash shuffle: any order
    assert [r.get("hour") for r in got] == list(want.index), \
        f"Expected one dict per hour {list(want.index)}; got hours {[r.get('hour') for r in got]}."
    np.testing.assert_allclose([r["mean(fare)"] for r in got], want.to_numpy(),
                               err_msg="Each 'mean(fare)' should be the mean fare of that hour.")
    assert calls(nb.source("mean_fare_by_hour"), "groupby"), "Let the dataset group: use ds.groupby('hour')."


def test_task_7_3_scores_on_two_actors(nb):
    df = _frame()
    out, evs = events_during(lambda: nb.score(_ds(nb, df), 3.0).to_pandas())
    assert "score" in out.columns, f"The result has columns {list(out.columns)}; add a 'score' column."
    np.testing.assert_allclose(out["score"].to_numpy(), 3.0 * df["km"].to_numpy(),
                               err_msg="score should be weight * km for every row.")
    made = tasks_named(evs, kind="actor_creation")
    assert made, "Scorer did not run on actors: pass the class itself to map_batches, with concurrency=2."
    assert len(made) == 2, f"Expected a pool of 2 actors (concurrency=2); {len(made)} were started."
