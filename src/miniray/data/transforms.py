"""Per-block transforms: what one fused map task (or one actor call) runs on one block.

    ReadTask() or block ──► t1(block, idx) ──► t2(...) ──► ... ──► block out

Each transform is a small picklable object that carries the user's function and its options.  A user
function that raises keeps its own exception type; a note names the operator, the block and (for row
functions) the row, so the error that reaches the driver says where the data broke.
"""
from __future__ import annotations

import inspect
import os
import uuid

import numpy as np
import pyarrow as pa

from miniray.data import block as B


def _annotate(err: BaseException, op: str, idx: int, row=None, rows=None) -> BaseException:
    where = f"miniray.data: operator {op} failed on block {idx}"
    if row is not None:
        where += f", row {_short(row)}"
    if rows is not None:
        where += f", batch of rows {rows[0]}..{rows[1]} of the block"
    try:
        err.add_note(where)
    except Exception:  # exceptions that refuse attributes keep their message alone
        pass
    return err


def _short(v, n: int = 200) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


class Transform:
    name = "Map"

    def setup(self) -> None:
        """Run once per worker/actor before the first block (callable classes build here)."""

    def __call__(self, block: pa.Table, idx: int) -> pa.Table:  # pragma: no cover - abstract
        raise NotImplementedError


class _UserFn(Transform):
    """A user function or callable class with fn_args/fn_kwargs (and constructor arguments)."""

    def __init__(self, name, fn, fn_args=None, fn_kwargs=None, ctor_args=None, ctor_kwargs=None):
        if not callable(fn):
            raise TypeError(f"{name} takes a function or a callable class, not {type(fn).__name__}.")
        self.name, self.fn = name, fn
        self.fn_args, self.fn_kwargs = tuple(fn_args or ()), dict(fn_kwargs or {})
        self.ctor_args, self.ctor_kwargs = tuple(ctor_args or ()), dict(ctor_kwargs or {})
        self.is_class = isinstance(fn, type)
        self._call = None if self.is_class else fn

    def setup(self) -> None:
        if self.is_class and self._call is None:
            try:
                self._call = self.fn(*self.ctor_args, **self.ctor_kwargs)
            except Exception as e:
                raise _annotate(e, f"{self.name} (constructing {self.fn.__name__})", -1)

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.is_class:
            state["_call"] = None  # instances stay in their actor
        return state

    def _user(self, arg):
        if self._call is None:
            self.setup()
        return self._call(arg, *self.fn_args, **self.fn_kwargs)


class MapRows(_UserFn):
    def __call__(self, block, idx):
        out = []
        for row in B.to_rows(block):
            try:
                r = self._user(row)
            except Exception as e:
                raise _annotate(e, self.name, idx, row)
            out.append(r)
        return B.from_rows(out, f"the function given to {self.name}")


class FlatMap(_UserFn):
    def __call__(self, block, idx):
        out = []
        for row in B.to_rows(block):
            try:
                out.extend(self._user(row))
            except TypeError as e:
                if "not iterable" in str(e):
                    raise TypeError(f"the function given to {self.name} must return a list of dicts "
                                    f"(or yield them); it returned a non-iterable for row "
                                    f"{_short(row)}.") from e
                raise _annotate(e, self.name, idx, row)
            except Exception as e:
                raise _annotate(e, self.name, idx, row)
        return B.from_rows(out, f"the function given to {self.name}")


class Filter(_UserFn):
    def __call__(self, block, idx):
        keep = []
        for row in B.to_rows(block):
            try:
                keep.append(bool(self._user(row)))
            except Exception as e:
                raise _annotate(e, self.name, idx, row)
        if not keep:
            return block
        return block.filter(pa.array(keep, type=pa.bool_()))


class MapBatches(_UserFn):
    def __init__(self, name, fn, batch_size=None, batch_format="default", **kw):
        super().__init__(name, fn, **kw)
        if batch_size is not None and batch_size != "default" and (
                not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size={batch_size!r}: give a positive int, or None for whole blocks.")
        self.batch_size = None if batch_size == "default" else batch_size
        self.batch_format = B.check_batch_format(batch_format)

    def __call__(self, block, idx):
        n, step = block.num_rows, self.batch_size or max(block.num_rows, 1)
        outs = []
        for start in range(0, max(n, 1), step):
            piece = block if step >= n and start == 0 else block.slice(start, step)
            batch = B.to_batch(piece, self.batch_format)
            try:
                res = self._user(batch)
                if inspect.isgenerator(res) or (hasattr(res, "__next__") and not isinstance(res, dict)):
                    outs.extend(B.to_block(r, f"the generator given to {self.name}") for r in res)
                else:
                    outs.append(B.to_block(res, f"the function given to {self.name}"))
            except (TypeError, ValueError) as e:
                if "it must return" in str(e) or "different lengths" in str(e):
                    raise
                raise _annotate(e, self.name, idx, rows=(start, start + piece.num_rows))
            except Exception as e:
                raise _annotate(e, self.name, idx, rows=(start, start + piece.num_rows))
        return B.concat(outs)


class AddColumn(_UserFn):
    def __init__(self, col, fn, batch_format="pandas"):
        super().__init__("AddColumn", fn)
        self.col, self.batch_format = col, B.check_batch_format(batch_format)

    def __call__(self, block, idx):
        try:
            values = self._user(B.to_batch(block, self.batch_format))
        except Exception as e:
            raise _annotate(e, self.name, idx)
        if hasattr(values, "to_numpy") and not isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = values.to_numpy()
        col = B.array_to_column(values, self.col)
        if len(col) != block.num_rows:
            raise ValueError(f"add_column({self.col!r}): the function returned {len(col)} values for a "
                             f"batch of {block.num_rows} rows; return one value per row.")
        if self.col in block.column_names:
            return block.set_column(block.column_names.index(self.col), self.col, col)
        return block.append_column(self.col, col)


class SelectColumns(Transform):
    name = "SelectColumns"

    def __init__(self, cols):
        self.cols = [cols] if isinstance(cols, str) else list(cols)

    def __call__(self, block, idx):
        B.check_columns(block, self.cols, "select_columns")
        return block.select(self.cols)


class DropColumns(SelectColumns):
    name = "DropColumns"

    def __call__(self, block, idx):
        B.check_columns(block, self.cols, "drop_columns")
        return block.drop_columns(self.cols)


class RenameColumns(Transform):
    name = "RenameColumns"

    def __init__(self, names):
        if not isinstance(names, dict):
            raise TypeError("rename_columns takes a dict {old name: new name}.")
        self.names = names

    def __call__(self, block, idx):
        B.check_columns(block, list(self.names), "rename_columns")
        return block.rename_columns([self.names.get(c, c) for c in block.column_names])


class RandomSample(Transform):
    name = "RandomSample"

    def __init__(self, fraction, seed):
        self.fraction, self.seed = fraction, seed

    def __call__(self, block, idx):
        rng = np.random.default_rng(None if self.seed is None else [self.seed, idx])
        return block.filter(pa.array(rng.random(block.num_rows) < self.fraction))


class WriteBlock(Transform):
    """Write one block as one file under ``path``; the output block lists the file written."""
    name = "Write"

    def __init__(self, path, fmt, prefix, options):
        self.path, self.fmt, self.prefix, self.options = path, fmt, prefix, options
        self.name = f"Write{fmt.capitalize()}"

    def __call__(self, block, idx):
        ext = {"parquet": "parquet", "csv": "csv", "json": "json", "numpy": "npy"}[self.fmt]
        file = os.path.join(self.path, f"{self.prefix}_{idx:06d}_{uuid.uuid4().hex[:6]}.{ext}")
        if block.num_rows == 0 and self.fmt != "parquet":
            return pa.table({"path": pa.array([], pa.string()), "num_rows": pa.array([], pa.int64())})
        from miniray.data import formats
        formats.write(block, file, self.fmt, self.options)
        return pa.table({"path": [file], "num_rows": [block.num_rows]})


class CountRows(Transform):
    """The block's row count as a one-row block (count() sends no data back)."""
    name = "Count"

    def __call__(self, block, idx):
        return pa.table({"n": pa.array([block.num_rows], pa.int64())})


class PartialAggregate(Transform):
    """Map-side combine of a group-by: the block's partial states, one row per group."""
    name = "PartialAggregate"

    def __init__(self, keys, aggs):
        self.keys, self.aggs = keys, aggs

    def __call__(self, block, idx):
        from miniray.data.aggregate import partial
        return partial(block, self.keys, self.aggs)
