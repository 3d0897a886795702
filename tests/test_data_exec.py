"""miniray.data's execution: streaming under a memory bound, actor pools, fusion, errors that teach,
progress bars.  Real runtimes, real workers, real shared memory."""
from __future__ import annotations

import os
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

import miniray as ray
from miniray.util.state import memory_summary

pytestmark = pytest.mark.timeout(120, method="signal")
MiB = 2 ** 20


@pytest.fixture
def ctx():
    c = ray.data.DataContext.get_current()
    saved = c.copy()
    c.enable_progress_bars = False
    yield c
    ray.data.DataContext._set_current(saved)


def _payload(batch):
    n = len(batch["id"])
    return {"id": batch["id"], "payload": np.random.default_rng(int(batch["id"][0])).random((n, 128))}


class _Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, batch):
        return {"id": batch["id"], "payload": batch["payload"] * self.k}


def test_three_times_the_store_streams_to_parquet_without_spilling(tmp_path, ctx):
    """192 MiB of blocks flow task map -> actor map -> write_parquet through a 64 MiB store."""
    ray.init(num_cpus=2, object_store_memory=64 * MiB)
    try:
        rows_per_block = 8 * MiB // (129 * 8)
        blocks = 24
        peak, spilled, stop = [0], [0], threading.Event()

        def watch():   # the store's use and its spilled bytes (restores lower them: keep the max)
            while not stop.is_set():
                s = memory_summary()
                peak[0], spilled[0] = max(peak[0], s["used"]), max(spilled[0], s["spilled"])
                stop.wait(0.01)

        t = threading.Thread(target=watch)
        t.start()
        try:
            (ray.data.range(rows_per_block * blocks, override_num_blocks=blocks)
                .map_batches(_payload)
                .map_batches(_Scale, fn_constructor_args=(2.0,), concurrency=1)
                .write_parquet(str(tmp_path / "out")))
        finally:
            stop.set()
            t.join()
        summary = memory_summary()
        assert spilled[0] == 0 and summary["spilled"] == 0   # without backpressure: ~140 MiB spilled
        assert 0 < peak[0] <= 0.75 * summary["capacity"], f"peak {peak[0] / MiB:.1f} MiB"
        files = sorted(os.listdir(tmp_path / "out"))
        assert len(files) == blocks
        n = sum(pq.read_metadata(tmp_path / "out" / f).num_rows for f in files)
        assert n == rows_per_block * blocks
        first = pq.read_table(tmp_path / "out" / files[0]).to_pydict()
        assert first["id"][:3] == [0, 1, 2]
        np.testing.assert_allclose(first["payload"][0], 2 * np.random.default_rng(0).random((1, 128))[0])
    finally:
        ray.shutdown()


class _Tagger:
    made = 0

    def __init__(self, offset, *, scale):
        self.offset, self.scale, self.me = offset, scale, f"{os.getpid()}-{id(self)}"

    def __call__(self, batch):
        return {"id": batch["id"] * self.scale + self.offset, "actor": np.array([self.me] * len(batch["id"]))}


@pytest.mark.parametrize("concurrency", [2, (1, 2), None])
def test_callable_class_runs_on_an_actor_pool(rt, ctx, concurrency):
    ds = ray.data.range(64, override_num_blocks=8).map_batches(
        _Tagger, fn_constructor_args=(5,), fn_constructor_kwargs={"scale": 3}, concurrency=concurrency,
        batch_size=4)
    rows = ds.take_all()
    assert [r["id"] for r in rows] == [i * 3 + 5 for i in range(64)]
    actors = {r["actor"] for r in rows}
    assert 1 <= len(actors) <= 2          # built once per actor, never once per batch
    if concurrency == 2:
        assert len(actors) == 2
    assert "actors" in ds.materialize().stats()


def test_consecutive_maps_fuse_into_one_task_per_block(rt, ctx):
    ds = (ray.data.range(1000, override_num_blocks=4).map(lambda r: {"id": r["id"] + 1})
          .filter(lambda r: r["id"] % 2 == 0).map_batches(lambda b: {"id": b["id"] * 10}))
    m = ds.materialize()
    first = m.stats().splitlines()[0]
    assert first.startswith("Operator 0 ReadRange->Map(<lambda>)->Filter(<lambda>)->MapBatches(<lambda>): "
                            "4 tasks")
    assert sum(r["id"] for r in m.take_all()) == 10 * sum(i for i in range(1, 1001) if i % 2 == 0)


def test_user_errors_keep_their_type_and_say_where(rt, ctx):
    with pytest.raises(ZeroDivisionError) as e:
        ray.data.range(20, override_num_blocks=2).map(lambda r: {"v": 1 / (r["id"] - 13)}).take_all()
    assert "operator Map(<lambda>) failed on block 1, row {'id': 13}" in str(e.value)

    def bad(batch):
        raise ValueError("no good")

    with pytest.raises(ValueError, match="no good") as e:
        ray.data.range(10).map_batches(bad).count()
    assert "MapBatches(bad) failed on block 0, batch of rows 0..10 of the block" in str(e.value)
    with pytest.raises(KeyError, match="nope"):
        ray.data.range(5).filter(lambda r: r["nope"]).take_all()
    assert ray.data.range(5).map(lambda r: {"ok": r["id"]}).count() == 5   # the runtime is fine


def test_wrong_types_formats_and_columns_say_what_was_expected(rt, ctx):
    with pytest.raises(TypeError, match="must return a dict of numpy arrays"):
        ray.data.range(5).map_batches(lambda b: [1, 2]).take_all()
    with pytest.raises(TypeError, match="rows are dicts"):
        ray.data.range(5).map(lambda r: r["id"]).take_all()
    with pytest.raises(ValueError, match="different lengths"):
        ray.data.range(5).map_batches(lambda b: {"a": b["id"], "b": b["id"][:2]}).take_all()
    with pytest.raises(ValueError, match="'numpy' .*'pandas' or 'pyarrow'"):
        ray.data.range(5).map_batches(lambda b: b, batch_format="arrow")
    with pytest.raises(ValueError, match="batch_format"):
        list(ray.data.range(5).iter_batches(batch_format="tensor"))
    with pytest.raises(KeyError, match=r"no column 'z'; the dataset has columns \['id'\]"):
        ray.data.range(5).select_columns(["z"]).take_all()
    with pytest.raises(KeyError, match="no column 'z'"):
        ray.data.range(5).groupby("z").count().take_all()
    with pytest.raises(KeyError, match="no column 'z'"):
        ray.data.range(5).sum("z")
    with pytest.raises(KeyError, match="no column 'z'"):
        ray.data.range(5).sort("z").take_all()
    with pytest.raises(ValueError, match="concurrency"):
        ray.data.range(5).map_batches(_Scale, concurrency=0)


def test_progress_bars_one_line_per_operator_and_off_switch(rt, ctx, capfd):
    ctx.enable_progress_bars = True
    ray.data.range(100, override_num_blocks=2).map(lambda r: r).random_shuffle(seed=1).take_all()
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("- ")]
    assert len(lines) == 2, err
    assert lines[0].startswith("- ReadRange->Map(<lambda>): 2/? blocks, 100 rows")
    assert lines[1].startswith("- RandomShuffle: ")
    ctx.enable_progress_bars = False
    ray.data.range(100).map(lambda r: r).take_all()
    assert "ReadRange" not in capfd.readouterr().err
