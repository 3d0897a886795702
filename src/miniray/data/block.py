"""Blocks and batches: a block is a ``pyarrow.Table``; batches are views of it in a user's format.

    block (pa.Table) ──to_batch(fmt)──► dict[str, np.ndarray] | pandas.DataFrame | pa.Table
           ▲                                        │ user's batch function
           └──────────────to_block(value)───────────┘
    block ──to_rows──► [dict, ...] ──row function──► [dict, ...] ──from_rows──► block

Arrow tables are the natural block: their buffers pickle out of band, so a block read from the object
store in a worker is a zero-copy view of shared memory.  Columns of n-dimensional arrays are stored
as Arrow's fixed-shape tensor extension type and come back as ``(rows, *shape)`` numpy arrays.
Nothing here touches the runtime; every function is pure.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

BATCH_FORMATS = ("default", "numpy", "pandas", "pyarrow")


def check_batch_format(batch_format) -> str:
    fmt = "default" if batch_format is None else batch_format
    if fmt not in BATCH_FORMATS:
        raise ValueError(f"batch_format={batch_format!r} is not one miniray.data knows: use 'numpy' "
                         f"(dict of numpy arrays, the default), 'pandas' or 'pyarrow'.")
    return fmt


def _is_tensor(t) -> bool:
    return isinstance(t, pa.FixedShapeTensorType)


def column_to_numpy(col) -> np.ndarray:
    """One column as numpy: zero-copy for a single chunk of numbers without nulls."""
    if isinstance(col, pa.ChunkedArray):
        if _is_tensor(col.type):
            if col.num_chunks == 0:
                return np.empty((0, *col.type.shape))
            col = pa.concat_arrays(col.chunks) if col.num_chunks > 1 else col.chunk(0)
        elif col.num_chunks == 1:
            col = col.chunk(0)
        else:
            return col.to_numpy()
    if _is_tensor(col.type):
        return col.to_numpy_ndarray()
    return col.to_numpy(zero_copy_only=False)


def array_to_column(values, name: str = "?"):
    """A numpy array (n-d allowed), list or Arrow array as an Arrow column."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray) and values.ndim > 1:
        return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(values))
    if isinstance(values, list) and values and isinstance(values[0], np.ndarray) and values[0].ndim:
        return array_to_column(np.stack(values), name)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
        raise TypeError(f"column {name!r}: cannot store values of type {type(values).__name__} "
                        f"in a block ({e}).") from None


def to_batch(block: pa.Table, batch_format: str):
    """The block in the user's format (``batch_format`` already checked)."""
    if batch_format in ("default", "numpy"):
        return {name: column_to_numpy(block.column(i)) for i, name in enumerate(block.column_names)}
    if batch_format == "pandas":
        return to_pandas(block)
    return block


def _with_tensors(block: pa.Table, plain) -> dict:
    """Columns by name: tensor columns as lists of numpy arrays, the others through ``plain``."""
    return {name: list(column_to_numpy(col)) if _is_tensor(col.type) else plain(col)
            for name, col in zip(block.column_names, block.columns)}


def to_pandas(block: pa.Table):
    import pandas as pd
    if not any(_is_tensor(f.type) for f in block.schema):
        return block.to_pandas()
    return pd.DataFrame(_with_tensors(block, lambda c: c.to_pandas()))


def to_block(value, what: str = "the batch function") -> pa.Table:
    """A user's batch (table, DataFrame or dict of arrays) as a block; anything else is a TypeError."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, Mapping):
        cols = {str(k): array_to_column(v, k) for k, v in value.items()}
        lengths = {len(c) for c in cols.values()}
        if len(lengths) > 1:
            sizes = {k: len(c) for k, c in cols.items()}
            raise ValueError(f"{what} returned columns of different lengths {sizes}: every column of "
                             "a batch needs one value per row.")
        return pa.table(cols)
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(value, pd.DataFrame):
        return _from_pandas(value)
    raise TypeError(f"{what} returned {type(value).__name__}; it must return a dict of numpy arrays "
                    "(column name -> array), a pandas.DataFrame or a pyarrow.Table.")


def _from_pandas(df) -> pa.Table:
    cols = {}
    for name in df.columns:
        s = df[name]
        if s.dtype == object and len(s) and isinstance(s.iloc[0], np.ndarray):
            cols[str(name)] = array_to_column(np.stack(s.to_list()), name)
        else:
            cols[str(name)] = pa.Array.from_pandas(s)
    return pa.table(cols) if cols else pa.table({})


def to_rows(block: pa.Table) -> list[dict]:
    """Rows as dicts of Python values (tensor columns give numpy arrays)."""
    if not any(_is_tensor(f.type) for f in block.schema):
        return block.to_pylist()
    cols = _with_tensors(block, lambda c: c.to_pylist())
    names = list(cols)
    return [dict(zip(names, vals)) for vals in zip(*cols.values())]


def from_rows(rows: list, what: str = "the row function") -> pa.Table:
    """Dict rows as a block; a row that is not a dict is a TypeError that says so."""
    if not rows:
        return pa.table({})
    names: dict = {}
    for r in rows:
        if not isinstance(r, Mapping):
            raise TypeError(f"{what} returned {type(r).__name__} ({r!r:.60}); rows are dicts of "
                            "column name -> value, e.g. return {'x': 1}.")
        for k in r:
            names.setdefault(k, None)
    if all(not isinstance(v, np.ndarray) for v in rows[0].values()):
        try:
            return pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    cols = {str(k): array_to_column([r.get(k) for r in rows], k) for k in names}
    return pa.table(cols)


def concat(blocks: list) -> pa.Table:
    blocks = [b for b in blocks if b.num_columns or b.num_rows]
    if not blocks:
        return pa.table({})
    if len(blocks) == 1:
        return blocks[0]
    try:
        return pa.concat_tables(blocks)
    except pa.ArrowInvalid:
        return pa.concat_tables(blocks, promote_options="permissive")


def size_bytes(block: pa.Table) -> int:
    return block.nbytes


def split_rows(block: pa.Table, max_bytes: int) -> list:
    """Slices of ``block`` each under about ``max_bytes`` (zero-copy)."""
    n = block.num_rows
    if n <= 1 or block.nbytes <= max_bytes:
        return [block]
    k = -(-block.nbytes // max_bytes)
    step = -(-n // k)
    return [block.slice(i, step) for i in range(0, n, step)]


def check_columns(block: pa.Table, cols, op: str) -> None:
    missing = [c for c in cols if c not in block.column_names]
    if missing:
        raise KeyError(f"{op}: no column {missing[0]!r}; the dataset has columns {block.column_names}.")
