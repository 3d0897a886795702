"""miniray.data's API against pandas and plain Python as oracles: same rows, same aggregates.

One two-CPU runtime (``rt``) serves the module; datasets are small so each test takes milliseconds
after the workers have imported pyarrow once.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import miniray as ray
from miniray.data.aggregate import AggregateFn, Count, Max, Mean, Sum

pytestmark = pytest.mark.timeout(120, method="signal")


@pytest.fixture(autouse=True)
def quiet(rt):
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield rt


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(7)
    n = 3000
    return pd.DataFrame({"id": np.arange(n), "g": rng.integers(0, 7, n), "h": rng.integers(0, 3, n),
                         "x": rng.random(n)})


def test_range_and_from_items_follow_ray_conventions():
    assert ray.data.range(4).take_all() == [{"id": 0}, {"id": 1}, {"id": 2}, {"id": 3}]
    assert ray.data.from_items([5, 6]).take_all() == [{"item": 5}, {"item": 6}]
    assert ray.data.from_items([{"a": 1}, {"a": 2}]).take(1) == [{"a": 1}]
    ds = ray.data.range(10, override_num_blocks=3)
    assert ds.count() == 10 and ds.num_blocks() == 3
    s = ds.schema()
    assert s.names == ["id"] and str(s.types[0]) == "int64" and ds.columns() == ["id"]
    assert "Column" in repr(s)


def test_row_functions_against_python():
    ds = ray.data.range(200, override_num_blocks=4)
    got = ds.map(lambda r: {"v": r["id"] * 3}).filter(lambda r: r["v"] % 2 == 0).take_all()
    assert got == [{"v": i * 3} for i in range(200) if (i * 3) % 2 == 0]
    flat = ray.data.range(5).flat_map(lambda r: [{"v": r["id"]}] * r["id"]).take_all()
    assert flat == [{"v": i} for i in range(5) for _ in range(i)]


@pytest.mark.parametrize("fmt,typ", [("default", dict), ("numpy", dict), ("pandas", pd.DataFrame),
                                     ("pyarrow", pa.Table)])
def test_map_batches_formats_and_batch_size(fmt, typ):
    def fn(batch, k, *, add):
        assert isinstance(batch, typ)
        n = len(batch) if not isinstance(batch, dict) else len(batch["id"])
        assert n <= 16
        if fmt == "pyarrow":
            return pa.table({"id": batch["id"], "y": pa.array(np.asarray(batch["id"]) * k + add)})
        return {"id": np.asarray(batch["id"]), "y": np.asarray(batch["id"]) * k + add}

    ds = ray.data.range(100, override_num_blocks=2).map_batches(fn, batch_size=16, batch_format=fmt,
                                                                  fn_args=(2,), fn_kwargs={"add": 1})
    assert ds.to_pandas()["y"].tolist() == [i * 2 + 1 for i in range(100)]


def test_map_batches_default_batch_is_dict_of_numpy_and_generators_work():
    seen = ray.data.range(10).map_batches(
        lambda b: {"t": np.array([type(b["id"]).__name__] * len(b["id"]))}).take(1)
    assert seen == [{"t": "ndarray"}]

    def gen(batch):
        for i in range(2):
            yield {"id": batch["id"] + 100 * i}

    got = sorted(r["id"] for r in ray.data.range(3).map_batches(gen).take_all())
    assert got == [0, 1, 2, 100, 101, 102]


def test_column_operations_against_pandas(frame):
    ds = ray.data.from_pandas(frame)
    out = (ds.add_column("x2", lambda df: df["x"] * 2).drop_columns(["h"])
             .rename_columns({"g": "group"}).select_columns(["id", "group", "x2"]).to_pandas())
    want = frame.assign(x2=frame["x"] * 2).drop(columns=["h"]).rename(columns={"g": "group"})
    pd.testing.assert_frame_equal(out, want[["id", "group", "x2"]])


def test_groupby_aggregates_against_pandas(frame):
    ds = ray.data.from_pandas(frame, override_num_blocks=3)
    g = frame.groupby("g")["x"]
    for name, want in [("count", frame.groupby("g").size()), ("sum", g.sum()), ("min", g.min()),
                       ("max", g.max()), ("mean", g.mean()), ("std", g.std())]:
        grouped = ds.groupby("g")
        res = (grouped.count() if name == "count" else getattr(grouped, name)("x")).to_pandas()
        col = "count()" if name == "count" else f"{name}(x)"
        assert res["g"].tolist() == list(want.index)
        np.testing.assert_allclose(res[col].to_numpy(), want.to_numpy(), rtol=1e-9)
    multi = ds.groupby(["g", "h"]).aggregate(Count(), Sum("x"), Mean("id")).to_pandas()
    want = frame.groupby(["g", "h"]).agg(n=("x", "size"), s=("x", "sum"), m=("id", "mean")).reset_index()
    assert multi[["g", "h"]].values.tolist() == want[["g", "h"]].values.tolist()
    np.testing.assert_allclose(multi["sum(x)"], want["s"])
    np.testing.assert_allclose(multi["mean(id)"], want["m"])
    assert multi["count()"].tolist() == want["n"].tolist()


def test_global_aggregates_against_numpy(frame):
    ds = ray.data.from_pandas(frame, override_num_blocks=4)
    x = frame["x"].to_numpy()
    assert ds.sum("id") == frame["id"].sum()
    assert ds.min("x") == x.min() and ds.max("x") == x.max()
    assert ds.mean("x") == pytest.approx(x.mean())
    assert ds.std("x") == pytest.approx(x.std(ddof=1))
    assert ds.std("x", ddof=0) == pytest.approx(x.std())
    assert ds.sum(["id", "g"]) == {"sum(id)": frame["id"].sum(), "sum(g)": frame["g"].sum()}
    assert ds.aggregate(Max("x"), Count()) == {"max(x)": x.max(), "count()": len(x)}
    assert ray.data.range(0).sum("id") is None


def test_custom_aggregate_fn(frame):
    ds = ray.data.from_pandas(frame, override_num_blocks=3)
    spread = AggregateFn(init=lambda k: [1e9, -1e9],
                         accumulate_row=lambda a, r: [min(a[0], r["x"]), max(a[1], r["x"])],
                         merge=lambda a, b: [min(a[0], b[0]), max(a[1], b[1])],
                         finalize=lambda a: a[1] - a[0], name="spread")
    got = ds.groupby("g").aggregate(spread).to_pandas()
    want = frame.groupby("g")["x"].agg(lambda s: s.max() - s.min())
    np.testing.assert_allclose(got["spread"], want.to_numpy())


def test_map_groups_against_pandas(frame):
    ds = ray.data.from_pandas(frame, override_num_blocks=3)
    out = ds.groupby("g").map_groups(
        lambda df: pd.DataFrame({"g": [df["g"].iloc[0]], "top": [df["x"].max()]}),
        batch_format="pandas").to_pandas().sort_values("g")
    want = frame.groupby("g")["x"].max()
    np.testing.assert_allclose(out["top"], want.to_numpy())


def test_sort_against_pandas(frame):
    ds = ray.data.from_pandas(frame, override_num_blocks=4)
    assert ds.sort("x").to_pandas()["id"].tolist() == frame.sort_values("x")["id"].tolist()
    desc = ds.sort("x", descending=True).take(7)
    assert [r["id"] for r in desc] == frame.sort_values("x", ascending=False)["id"].head(7).tolist()
    multi = ds.sort(["g", "x"], descending=[True, False]).to_pandas()
    want = frame.sort_values(["g", "x"], ascending=[False, True])
    assert multi["id"].tolist() == want["id"].tolist()
    assert ds.sort("g").take(5) == frame.sort_values("g", kind="stable").head(5).to_dict("records")


def test_random_shuffle_keeps_rows_and_seed_repeats():
    ds = ray.data.range(500, override_num_blocks=3)
    a = [r["id"] for r in ds.random_shuffle(seed=3).take_all()]
    b = [r["id"] for r in ds.random_shuffle(seed=3).take_all()]
    assert sorted(a) == list(range(500)) and a == b and a != list(range(500))
    order = [r["id"] for r in ds.randomize_block_order(seed=1).take_all()]
    assert sorted(order) == list(range(500))


def test_repartition_limit_union_zip_unique():
    ds = ray.data.range(100, override_num_blocks=3)
    re = ds.repartition(7)
    assert re.num_blocks() == 7 and [r["id"] for r in re.take_all()] == list(range(100))
    assert sorted(r["id"] for r in ds.repartition(2, shuffle=True).take_all()) == list(range(100))
    assert ds.limit(13).count() == 13 and ds.limit(13).take_all()[-1] == {"id": 12}
    u = ds.union(ray.data.range(5)).take_all()
    assert [r["id"] for r in u] == list(range(100)) + list(range(5))
    z = ds.zip(ray.data.range(100, override_num_blocks=5).map(lambda r: {"id": r["id"] * 2}))
    assert z.take(3) == [{"id": 0, "id_1": 0}, {"id": 1, "id_1": 2}, {"id": 2, "id_1": 4}]
    assert sorted(ray.data.from_items([3, 1, 3, 2, 1]).unique("item")) == [1, 2, 3]
    frac = ray.data.range(2000).random_sample(0.25, seed=0).count()
    assert 380 < frac < 620


def test_splits():
    ds = ray.data.range(10, override_num_blocks=3)
    parts = ds.split(3)
    assert [p.count() for p in parts] == [3, 3, 4]
    assert sum((p.take_all() for p in parts), []) == ds.take_all()
    assert [p.count() for p in ds.split(3, equal=True)] == [3, 3, 3]
    a, b, c = ds.split_at_indices([2, 5])
    assert [r["id"] for r in b.take_all()] == [2, 3, 4] and c.count() == 5
    train, test = ds.train_test_split(test_size=0.3)
    assert train.count() == 7 and [r["id"] for r in test.take_all()] == [7, 8, 9]


def test_iter_batches_sizes_formats_and_shuffle_buffer():
    ds = ray.data.range(100, override_num_blocks=3)
    sizes = [len(b["id"]) for b in ds.iter_batches(batch_size=30)]
    assert sizes == [30, 30, 30, 10]
    assert [len(b) for b in ds.iter_batches(batch_size=30, drop_last=True, batch_format="pandas")] == [30] * 3
    got = np.concatenate([b["id"] for b in ds.iter_batches(batch_size=8, local_shuffle_buffer_size=20,
                                                           local_shuffle_seed=0)])
    assert sorted(got) == list(range(100)) and list(got) != list(range(100))
    assert [r["id"] for r in ds.iter_rows()] == list(range(100))
    tb = ds.take_batch(5, batch_format="pyarrow")
    assert isinstance(tb, pa.Table) and tb.num_rows == 5


def test_conversions_and_tensors():
    ds = ray.data.range(6, override_num_blocks=2)
    refs = ds.to_numpy_refs()
    assert np.concatenate([ray.get(r)["id"] for r in refs]).tolist() == list(range(6))
    tables = ray.get(ds.to_arrow_refs())
    assert sum(t.num_rows for t in tables) == 6
    back = ray.data.from_arrow_refs(ds.to_arrow_refs())
    assert back.take_all() == ds.take_all()
    t = ray.data.range_tensor(4, shape=(2, 3)).take_batch(4)["data"]
    assert t.shape == (4, 2, 3) and (t[3] == 3).all()
    arr = np.arange(24.0).reshape(4, 2, 3)
    rows = ray.data.from_numpy(arr).map(lambda r: {"s": float(r["data"].sum())}).take_all()
    assert [r["s"] for r in rows] == [float(a.sum()) for a in arr]


def test_materialize_and_stats():
    ds = ray.data.range(1000, override_num_blocks=2).map_batches(lambda b: b).filter(lambda r: r["id"] < 10)
    assert ds.stats() == ""
    m = ds.materialize()
    text = m.stats()
    assert "ReadRange->MapBatches(<lambda>)->Filter(<lambda>): 2 tasks" in text and "CPU time" in text
    assert m.count() == 10 and m.num_blocks() == 2


@ray.remote
def _consume(ds, factor):
    return ds.map(lambda r: {"v": r["id"] * factor}).sum("v")


def test_dataset_passed_to_task():
    ds = ray.data.range(50, override_num_blocks=2).filter(lambda r: r["id"] % 2 == 0)
    assert ray.get(_consume.remote(ds, 3)) == 3 * sum(range(0, 50, 2))
    mat = ray.data.from_items(list(range(10))).materialize()
    assert ray.get(_consume.remote(mat.rename_columns({"item": "id"}), 1)) == 45


@ray.remote
def _drain(it):
    return [int(v) for b in it.iter_batches(batch_size=None) for v in b["id"]]


def test_streaming_split_feeds_consumers_in_tasks():
    its = ray.data.range(400, override_num_blocks=8).streaming_split(2)
    # The consumers leave a CPU free for the tasks that produce their blocks (as in Ray, a consumer
    # that holds every CPU starves the pipeline it waits on).
    parts = ray.get([_drain.options(num_cpus=0.5).remote(it) for it in its])
    assert sorted(parts[0] + parts[1]) == list(range(400))
    assert parts[0] and parts[1]


def test_import_miniray_stays_light_and_data_is_reachable():
    import subprocess
    import sys
    code = ("import sys, miniray; heavy = [m for m in ('pyarrow', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy; import miniray as ray; ray.data.range; "
            "from miniray.data import Dataset, DataContext; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


class _Double:
    def __call__(self, batch):
        return {"id": batch["id"] * 2}


def test_older_compute_strategy_spelling():
    ds = ray.data.range(20, override_num_blocks=2).map_batches(
        _Double, compute=ray.data.ActorPoolStrategy(size=1))
    assert [r["id"] for r in ds.take_all()] == [2 * i for i in range(20)]


def test_data_uses_only_the_public_api_of_the_core():
    """Layers: miniray.data is a library; it may import ``miniray`` itself and its own modules only."""
    import ast
    import pathlib
    pkg = pathlib.Path(ray.data.__file__).parent
    bad = []
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("miniray") and name != "miniray" and not name.startswith("miniray.data"):
                    bad.append(f"{path.name}: {name}")
    assert not bad, bad
