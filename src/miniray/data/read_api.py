"""Creating datasets: ``range``, ``from_*`` and ``read_*``.  Each returns a lazy Dataset at once.

Nothing runs until the dataset is consumed: paths are checked now (a bad path fails here and says
which), data given from the driver is converted to Arrow now and put in the store on first execution.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from miniray.data import block as B
from miniray.data import formats
from miniray.data.dataset import Dataset, MaterializedDataset
from miniray.data.plan import FileSource, Plan, RangeSource, RefsSource, TableSource

_IGNORED = {"filesystem", "parallelism", "ray_remote_args", "meta_provider", "partition_filter",
            "partitioning", "ignore_missing_paths", "shuffle", "concurrency", "arrow_open_stream_args",
            "schema", "tensor_column_schema"}


def _override(kw, override_num_blocks):
    par = kw.pop("parallelism", -1)
    return override_num_blocks if override_num_blocks is not None else (None if par in (-1, None) else par)


def range(n: int, *, override_num_blocks=None, **kw) -> Dataset:
    """Rows ``{"id": 0} ... {"id": n-1}``."""
    return Dataset(Plan(RangeSource(n, _override(kw, override_num_blocks))))


def range_tensor(n: int, *, shape=(1,), override_num_blocks=None, **kw) -> Dataset:
    """Rows ``{"data": array of `shape` filled with the row's index}``."""
    return Dataset(Plan(RangeSource(n, _override(kw, override_num_blocks), tuple(shape))))


def from_items(items, *, override_num_blocks=None, **kw) -> MaterializedDataset:
    """A list of dicts gives those rows; a list of other values gives rows ``{"item": value}``."""
    items = list(items)
    if items and all(isinstance(i, Mapping) for i in items):
        table = B.from_rows(items, "from_items")
    else:
        table = pa.table({"item": B.array_to_column(items, "item")}) if items else pa.table({})
    return MaterializedDataset(Plan(TableSource([table], "FromItems", _override(kw, override_num_blocks))))


def from_pandas(dfs, *, override_num_blocks=None) -> MaterializedDataset:
    import pandas as pd
    dfs = [dfs] if isinstance(dfs, pd.DataFrame) else list(dfs)
    for d in dfs:
        if not isinstance(d, pd.DataFrame):
            raise TypeError(f"from_pandas takes DataFrames (or a list of them), got {type(d).__name__}.")
    return MaterializedDataset(Plan(TableSource([B.to_block(d) for d in dfs], "FromPandas",
                                                override_num_blocks)))


def from_numpy(ndarrays) -> MaterializedDataset:
    """One row per first-axis entry, in a column named ``data``."""
    arrs = [ndarrays] if isinstance(ndarrays, np.ndarray) else list(ndarrays)
    return MaterializedDataset(Plan(TableSource([pa.table({"data": B.array_to_column(a)}) for a in arrs],
                                                "FromNumpy")))


def from_arrow(tables) -> MaterializedDataset:
    tables = [tables] if isinstance(tables, pa.Table) else list(tables)
    return MaterializedDataset(Plan(TableSource(tables, "FromArrow")))


def from_arrow_refs(refs) -> MaterializedDataset:
    """Blocks already in the object store (refs of ``pyarrow.Table``)."""
    import miniray
    from miniray.data.executor import meta_of
    refs = refs if isinstance(refs, list) else [refs]
    blocks = miniray.get(refs)
    from miniray.data.plan import RefBundle
    return MaterializedDataset(Plan(RefsSource([RefBundle(r, meta_of(b)) for r, b in zip(refs, blocks)],
                                               "FromArrowRefs")))


def from_pandas_refs(refs) -> MaterializedDataset:
    import miniray
    refs = refs if isinstance(refs, list) else [refs]
    return from_pandas(miniray.get(refs))


def from_numpy_refs(refs) -> MaterializedDataset:
    import miniray
    refs = refs if isinstance(refs, list) else [refs]
    return from_numpy(miniray.get(refs))


def _read(fmt: str, paths, override_num_blocks, kw: dict, options: dict) -> Dataset:
    op = f"read_{fmt}" if fmt != "binary" else "read_binary_files"
    exts = kw.pop("file_extensions", None)
    for k in list(kw):
        if k in _IGNORED:
            kw.pop(k)
    override = _override(kw, override_num_blocks)
    files, sizes = formats.resolve_paths(paths, op, exts or formats.EXTENSIONS.get(fmt))
    options.update(include_paths=kw.pop("include_paths", False))
    if kw:
        raise TypeError(f"{op}() got unexpected argument(s) {sorted(kw)}.")
    return Dataset(Plan(FileSource(files, sizes, fmt, formats.read_files, options, override)))


def read_csv(paths, *, override_num_blocks=None, **kw) -> Dataset:
    """CSV files (header row) via pyarrow; ``parse_options``/``read_options``/``convert_options``."""
    opts = {k: kw.pop(k) for k in ("read_options", "parse_options", "convert_options") if k in kw}
    return _fmt(_read("csv", paths, override_num_blocks, kw, opts), "csv")


def read_json(paths, *, override_num_blocks=None, **kw) -> Dataset:
    """JSON lines files (or files holding one JSON array of records)."""
    opts = {k: kw.pop(k) for k in ("read_options", "parse_options") if k in kw}
    return _fmt(_read("json", paths, override_num_blocks, kw, opts), "json")


def read_parquet(paths, *, columns=None, filter=None, override_num_blocks=None, **kw) -> Dataset:
    opts = {"columns": columns, "filters": kw.pop("filters", filter)}
    return _fmt(_read("parquet", paths, override_num_blocks, kw, opts), "parquet")


def read_text(paths, *, encoding="utf-8", drop_empty_lines=True, override_num_blocks=None,
              **kw) -> Dataset:
    """One row ``{"text": line}`` per line."""
    opts = {"encoding": encoding, "drop_empty_lines": drop_empty_lines}
    return _fmt(_read("text", paths, override_num_blocks, kw, opts), "text")


def read_numpy(paths, *, override_num_blocks=None, **kw) -> Dataset:
    """``.npy`` files; one row ``{"data": arr[i]}`` per first-axis entry."""
    return _fmt(_read("numpy", paths, override_num_blocks, kw, {}), "numpy")


def read_binary_files(paths, *, include_paths=False, override_num_blocks=None, **kw) -> Dataset:
    """One row ``{"bytes": content}`` per file (plus ``"path"`` with ``include_paths=True``)."""
    kw["include_paths"] = include_paths
    return _fmt(_read("binary", paths, override_num_blocks, kw, {}), "binary")


def _fmt(ds: Dataset, fmt: str) -> Dataset:
    src = ds._plan.source
    src.name = {"csv": "ReadCSV", "json": "ReadJSON", "parquet": "ReadParquet", "text": "ReadText",
                "numpy": "ReadNumpy", "binary": "ReadBinary"}[fmt]
    return ds
