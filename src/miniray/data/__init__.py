"""miniray.data: Ray Data's API on miniray, streaming blocks through the object store.

    import miniray as ray
    ds = ray.data.range(1000).map_batches(lambda b: {"id": b["id"] * 2})
    ds.sum("id")                       # 999000

Modules: ``dataset`` (the Dataset API over a lazy ``plan``), ``read_api`` (creators and readers),
``block`` (Arrow blocks and batch formats), ``transforms`` (what a map task runs), ``executor``
(streaming with backpressure over tasks and actor pools), ``shuffle`` and ``aggregate``
(map-reduce stages), ``grouped``, ``iterator``, ``formats``, ``context``, ``stats``, ``progress``.
See docs/data.md for what is covered and what differs from Ray Data.
"""
from miniray.data.aggregate import AggregateFn, Count, Max, Mean, Min, Std, Sum
from miniray.data.context import ActorPoolStrategy, DataContext, ExecutionOptions, TaskPoolStrategy
from miniray.data.dataset import Dataset, MaterializedDataset, Schema
from miniray.data.grouped import GroupedData
from miniray.data.iterator import DataIterator
from miniray.data.read_api import (from_arrow, from_arrow_refs, from_items, from_numpy, from_numpy_refs,
                                   from_pandas, from_pandas_refs, range, range_tensor, read_binary_files,
                                   read_csv, read_json, read_numpy, read_parquet, read_text)

__all__ = ["ActorPoolStrategy", "TaskPoolStrategy", "Dataset", "MaterializedDataset", "Schema", "DataContext", "ExecutionOptions", "DataIterator",
           "GroupedData", "AggregateFn", "Count", "Sum", "Min", "Max", "Mean", "Std", "range",
           "range_tensor", "from_items", "from_pandas", "from_numpy", "from_arrow", "from_arrow_refs",
           "from_pandas_refs", "from_numpy_refs", "read_csv", "read_json", "read_parquet", "read_text",
           "read_numpy", "read_binary_files"]
