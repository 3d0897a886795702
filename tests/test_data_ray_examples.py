"""Ray Data's documented examples (quickstart, key concepts, loading local files, transforming with
map / map_batches in pandas and numpy formats, callable classes with concurrency, grouping and
aggregations, iterating over batches, saving, shuffling) run unchanged with ray aliased to miniray,
in a real driver process that starts its own runtime and exits on its own."""
from __future__ import annotations

import os

from helpers import run_as_ray

EXAMPLES = r'''
import sys, os, time
import ray
from typing import Dict
import numpy as np
import pandas as pd
tmp = sys.argv[1]
# quickstart: from items, map_batches numpy, take
ds = ray.data.from_items([{"sepal.length": 5.1 + i / 10, "petal.width": i / 10, "variety": "abc"[i % 3]}
                          for i in range(30)])
def transform_batch(batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    vec_a = batch["petal.width"]
    batch["petal.width.x2"] = vec_a * 2
    return batch
transformed = ds.map_batches(transform_batch)
print("QUICK", transformed.count(), sorted(transformed.columns()), round(transformed.take(2)[1]["petal.width.x2"], 3))
# key concepts: range, schema, show, take_batch
ds = ray.data.range(100)
print("RANGE", ds.count(), ds.schema().names, ds.take_batch(3)["id"].tolist())
# local files
pd.DataFrame({"a": list(range(10)), "b": [str(i) for i in range(10)]}).to_csv(os.path.join(tmp, "x.csv"), index=False)
ds = ray.data.read_csv(os.path.join(tmp, "x.csv"))
print("CSV", ds.count(), ds.sum("a"))
os.makedirs(os.path.join(tmp, "pq"), exist_ok=True)
ray.data.range(20).write_parquet(os.path.join(tmp, "pq"))
ds = ray.data.read_parquet(os.path.join(tmp, "pq"))
print("PQ", ds.count(), ds.max("id"))
with open(os.path.join(tmp, "t.txt"), "w") as f:
    f.write("hello\nworld\n")
print("TXT", ray.data.read_text(os.path.join(tmp, "t.txt")).take_all())
with open(os.path.join(tmp, "j.jsonl"), "w") as f:
    f.write('{"k": 1}\n{"k": 2}\n')
print("JSON", ray.data.read_json(os.path.join(tmp, "j.jsonl")).sum("k"))
np.save(os.path.join(tmp, "a.npy"), np.arange(6).reshape(3, 2))
print("NPY", ray.data.read_numpy(os.path.join(tmp, "a.npy")).count())
# transforming: map rows, flat_map, filter
def parse(row):
    row["double"] = row["id"] * 2
    return row
ds = ray.data.range(10).map(parse)
print("MAP", ds.sum("double"))
print("FLAT", ray.data.range(3).flat_map(lambda row: [row] * 2).count())
print("FILTER", ray.data.range(10).filter(lambda row: row["id"] % 2 == 0).count())
# map_batches pandas
def add_pd(batch: pd.DataFrame) -> pd.DataFrame:
    batch["sq"] = batch["id"] ** 2
    return batch
ds = ray.data.range(10).map_batches(add_pd, batch_format="pandas", batch_size=4)
print("PANDAS", ds.sum("sq"))
def increase_brightness(batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    batch["data"] = np.clip(batch["data"] + 4, 0, 255)
    return batch
ds = ray.data.from_numpy(np.zeros((4, 2, 2), dtype=np.uint8)).map_batches(increase_brightness, batch_format="numpy")
print("NUMPY", int(ds.take_batch(4)["data"].sum()))
# callable class with concurrency
class Model:
    def __init__(self):
        self.w = 3
    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return {"pred": batch["id"] * self.w}
ds = ray.data.range(12).map_batches(Model, concurrency=2, batch_size=4)
print("CLASS", ds.sum("pred"))
# groupby & aggregation
from ray.data.aggregate import Count, Mean, Sum, Max
ds = ray.data.from_items([{"g": i % 3, "v": i} for i in range(12)])
print("GCOUNT", sorted((r["g"], r["count()"]) for r in ds.groupby("g").count().take_all()))
print("GMEAN", sorted((r["g"], r["mean(v)"]) for r in ds.groupby("g").mean("v").take_all()))
print("AGG", ds.aggregate(Count(), Mean("v"), Max("v")))
def norm(df: pd.DataFrame) -> pd.DataFrame:
    df["v"] = df["v"] - df["v"].mean()
    return df
print("MAPGROUPS", ds.groupby("g").map_groups(norm, batch_format="pandas").sum("v"))
# iterating
ds = ray.data.range(10)
print("ITB", [len(b["id"]) for b in ds.iter_batches(batch_size=4)])
print("ITBPD", [type(b).__name__ for b in ds.iter_batches(batch_size=5, batch_format="pandas")])
print("ITROWS", sum(r["id"] for r in ds.iter_rows()))
# shuffle
ds = ray.data.range(50)
print("SHUF", sorted(r["id"] for r in ds.random_shuffle(seed=1).take_all()) == list(range(50)),
      ds.randomize_block_order().count())
print("ITSHUF", sum(len(b["id"]) for b in ds.iter_batches(batch_size=8, local_shuffle_buffer_size=16)))
# saving
out = os.path.join(tmp, "out")
ray.data.range(10).write_csv(os.path.join(out, "csv"))
ray.data.range(10).write_json(os.path.join(out, "json"))
ray.data.range(10).write_numpy(os.path.join(out, "npy"), column="id")
print("SAVE", ray.data.read_csv(os.path.join(out, "csv")).count(), ray.data.read_json(os.path.join(out, "json")).count(), ray.data.read_numpy(os.path.join(out, "npy")).count())
print("TOPD", ray.data.range(5).to_pandas().shape)
class Scaler:
    def __init__(self, factor):
        self.factor = factor
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch["id"] = batch["id"] * self.factor
        return batch
ds = ray.data.range(8).map_batches(Scaler, fn_constructor_kwargs={"factor": 10}, concurrency=(1, 2), batch_format="pandas")
print("CTOR", ds.sum("id"))
ds = ray.data.from_pandas(pd.DataFrame({"g": ["a", "b", "a"], "v": [1, 2, 3]}))
print("GAGG", sorted((r["g"], r["sum(v)"], r["max(v)"]) for r in ds.groupby("g").aggregate(Sum("v"), Max("v")).take_all()))
print("SORT", [r["v"] for r in ds.sort("v", descending=True).take_all()], ds.unique("g") and sorted(ds.unique("g")))
print("DIR", ray.data.read_parquet(os.path.join(tmp, "pq")).count(), ray.data.read_csv(os.path.join(out, "csv")).count())
mat = ray.data.range(10).map(parse).materialize()
print("MAT", mat.count(), mat.sum("double"))
'''

EXPECTED = {
    "QUICK": "30 ['petal.width', 'petal.width.x2', 'sepal.length', 'variety'] 0.2",
    "RANGE": "100 ['id'] [0, 1, 2]",
    "CSV": "10 45", "PQ": "20 19", "TXT": "[{'text': 'hello'}, {'text': 'world'}]",
    "JSON": "3", "NPY": "3", "MAP": "90", "FLAT": "6", "FILTER": "5", "PANDAS": "285",
    "NUMPY": "64", "CLASS": "198", "GCOUNT": "[(0, 4), (1, 4), (2, 4)]",
    "GMEAN": "[(0, 4.5), (1, 5.5), (2, 6.5)]",
    "AGG": "{'count()': 12, 'mean(v)': 5.5, 'max(v)': 11}", "MAPGROUPS": "0.0",
    "ITB": "[4, 4, 2]", "ITBPD": "['DataFrame', 'DataFrame']", "ITROWS": "45",
    "SHUF": "True 50", "ITSHUF": "50", "SAVE": "10 10 10", "TOPD": "(5, 1)", "CTOR": "280",
    "GAGG": "[('a', 4, 3), ('b', 2, 2)]", "SORT": "[3, 2, 1] ['a', 'b']", "DIR": "20 10",
    "MAT": "10 90",
}


def test_ray_docs_data_examples_run_unchanged(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = run_as_ray(tmp_path, "miniray.data, miniray.data.aggregate", EXAMPLES, str(data))
    assert {k: lines.get(k) for k in EXPECTED} == EXPECTED
