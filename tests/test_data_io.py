"""miniray.data's readers and writers, round trips checked against pandas/pyarrow reading the same
files; paths as files, directories, globs and file:// URLs; bad paths that name themselves."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import miniray as ray

pytestmark = pytest.mark.timeout(120, method="signal")


@pytest.fixture(autouse=True)
def quiet(rt):
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield rt


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(3)
    return pd.DataFrame({"id": np.arange(500), "g": rng.integers(0, 5, 500), "x": rng.random(500)})


def test_csv_round_trip_with_directory_glob_and_file_url(tmp_path, frame):
    frame.to_csv(tmp_path / "one.csv", index=False)
    ds = ray.data.read_csv(str(tmp_path / "one.csv"))
    pd.testing.assert_frame_equal(ds.to_pandas(), pd.read_csv(tmp_path / "one.csv"))
    ds.filter(lambda r: r["g"] == 1).write_csv(str(tmp_path / "out"))
    back = ray.data.read_csv(f"file://{tmp_path / 'out'}").to_pandas().sort_values("id")
    want = frame[frame["g"] == 1]
    assert back["id"].tolist() == want["id"].tolist()
    np.testing.assert_allclose(back["x"], want["x"])
    assert ray.data.read_csv(str(tmp_path / "o*.csv")).count() == 500
    got = ray.data.read_csv(str(tmp_path / "one.csv"), include_paths=True).take(1)[0]
    assert got["path"].endswith("one.csv")


def test_parquet_and_json_round_trips(tmp_path, frame):
    ray.data.from_pandas(frame, override_num_blocks=3).write_parquet(str(tmp_path / "pq"))
    assert len(list((tmp_path / "pq").iterdir())) == 3
    back = ray.data.read_parquet(str(tmp_path / "pq")).to_pandas()
    pd.testing.assert_frame_equal(back, frame)
    assert ray.data.read_parquet(str(tmp_path / "pq"), columns=["x"]).columns() == ["x"]
    ray.data.from_pandas(frame).write_json(str(tmp_path / "js"))
    pd.testing.assert_frame_equal(ray.data.read_json(str(tmp_path / "js")).to_pandas(), frame)
    (tmp_path / "arr.json").write_text(json.dumps([{"a": 1}, {"a": 2}]))
    assert ray.data.read_json(str(tmp_path / "arr.json")).take_all() == [{"a": 1}, {"a": 2}]


def test_text_numpy_and_binary_files(tmp_path):
    (tmp_path / "t.txt").write_text("alpha\n\nbeta\ngamma\n")
    assert ray.data.read_text(str(tmp_path / "t.txt")).take_all() == [
        {"text": "alpha"}, {"text": "beta"}, {"text": "gamma"}]
    arr = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "a.npy", arr)
    np.testing.assert_array_equal(ray.data.read_numpy(str(tmp_path / "a.npy")).take_batch(10)["data"], arr)
    ray.data.from_numpy(arr).write_numpy(str(tmp_path / "np"), column="data")
    (f,) = list((tmp_path / "np").iterdir())
    np.testing.assert_array_equal(np.load(f), arr)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "a.bin").write_bytes(b"\x00\x01")
    (tmp_path / "bin" / "b.bin").write_bytes(b"xyz")
    rows = ray.data.read_binary_files(str(tmp_path / "bin"), include_paths=True).take_all()
    assert [(r["path"].rsplit("/", 1)[1], r["bytes"]) for r in rows] == [("a.bin", b"\x00\x01"),
                                                                          ("b.bin", b"xyz")]


def test_many_small_files_are_read_in_few_tasks(tmp_path, frame):
    for i in range(12):
        frame.iloc[i * 10:(i + 1) * 10].to_csv(tmp_path / f"part{i:02d}.csv", index=False)
    ds = ray.data.read_csv(str(tmp_path))
    m = ds.materialize()
    assert m.num_blocks() <= 4 and m.count() == 120
    assert m.to_pandas()["id"].tolist() == list(range(120))


def test_bad_paths_say_which(tmp_path):
    with pytest.raises(FileNotFoundError, match="read_csv: no such file or directory: .*nothere.csv"):
        ray.data.read_csv(str(tmp_path / "nothere.csv"))
    with pytest.raises(FileNotFoundError, match="matches no files"):
        ray.data.read_parquet(str(tmp_path / "*.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="found no files"):
        ray.data.read_json(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="only local paths"):
        ray.data.read_csv("s3://bucket/x.csv")
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        ray.data.range(3).write_parquet(str(tmp_path / "f"))
    (tmp_path / "broken.csv").write_text('a,b\n1,2\n3\n')
    with pytest.raises(Exception, match="broken.csv"):
        ray.data.read_csv(str(tmp_path / "broken.csv")).take_all()
