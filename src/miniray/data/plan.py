"""The lazy plan: a source and a tuple of logical operators.  Nothing here runs anything.

    Plan(source, ops=(MapOp, MapOp, AllToAllOp, LimitOp, ...), ctx)
      source: RangeSource | TableSource | FileSource | RefsSource | UnionSource
              .inputs(ncpus) -> [ReadTask | RefBundle]   (decided at execution, so creating a dataset
              never starts the runtime, and block counts follow the cluster's CPUs)

Every transformation of a Dataset returns a new Dataset holding ``plan.with_op(op)``; plans are
immutable and picklable (a Dataset can be passed to a task).  The executor fuses consecutive task
MapOps (and a source's ReadTasks) into one task per block.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple

from miniray.data.context import DataContext


class RefBundle(NamedTuple):
    ref: Any            # ObjectRef of a pyarrow.Table
    meta: Any           # stats.BlockMeta


class ReadTask:
    """A picklable recipe for one block, run inside the first task that needs it."""

    def __init__(self, fn: Callable, *args):
        self.fn, self.args = fn, args

    def __call__(self):
        return self.fn(*self.args)


def num_blocks_for(rows: int, bytes_: int, ncpus: int, ctx: DataContext, override=None) -> int:
    """Few big blocks: split for the CPUs only when each block keeps enough rows to be worth a task."""
    if override is not None:
        return max(1, min(int(override), max(rows, 1)))
    by_size = math.ceil(bytes_ / ctx.target_max_block_size) if bytes_ else 1
    by_cpu = min(ncpus, math.ceil(rows / ctx.target_min_rows_per_block)) if rows else 1
    return max(1, by_size, by_cpu)


class Source:
    name = "Read"

    def inputs(self, ncpus: int, ctx: DataContext) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_rows(self):
        """Rows, when known without running anything (else None)."""
        return None


def _range_block(start: int, end: int, tensor_shape):
    import numpy as np
    import pyarrow as pa
    ids = np.arange(start, end, dtype=np.int64)
    if tensor_shape is None:
        return pa.table({"id": ids})
    from miniray.data.block import array_to_column
    data = np.broadcast_to(ids.reshape((-1,) + (1,) * len(tensor_shape)), (len(ids), *tensor_shape))
    return pa.table({"data": array_to_column(np.ascontiguousarray(data))})


class RangeSource(Source):
    def __init__(self, n: int, override=None, tensor_shape=None):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"range(n) takes an int >= 0, got {n!r}.")
        self.n, self.override, self.tensor_shape = n, override, tensor_shape
        self.name = "ReadRange" if tensor_shape is None else "ReadRangeTensor"

    def num_rows(self):
        return self.n

    def inputs(self, ncpus, ctx):
        per_row = 8 * (math.prod(self.tensor_shape) if self.tensor_shape else 1)
        k = num_blocks_for(self.n, self.n * per_row, ncpus, ctx, self.override)
        bounds = [self.n * i // k for i in range(k + 1)]
        return [ReadTask(_range_block, bounds[i], bounds[i + 1], self.tensor_shape) for i in range(k)]


class TableSource(Source):
    """Data already in the driver (from_items, from_pandas, from_numpy, from_arrow): put on execution."""

    def __init__(self, tables: list, name: str, override=None):
        self.tables, self.name, self.override = tables, name, override
        self._bundles = None

    def num_rows(self):
        return sum(t.num_rows for t in self.tables)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_bundles"] = None
        return state

    def inputs(self, ncpus, ctx):
        if self._bundles is None:
            import miniray
            from miniray.data.block import concat
            from miniray.data.stats import BlockMeta
            pieces = self.tables
            if len(pieces) == 1 or self.override is not None:
                whole = concat(pieces)
                k = num_blocks_for(whole.num_rows, whole.nbytes, ncpus, ctx, self.override)
                b = [whole.num_rows * i // k for i in range(k + 1)]
                pieces = [whole.slice(b[i], b[i + 1] - b[i]) for i in range(k)]
            self._bundles = [RefBundle(miniray.put(t), BlockMeta(t.num_rows, t.nbytes, t.schema))
                             for t in pieces]
        return list(self._bundles)


class FileSource(Source):
    def __init__(self, files: list, sizes: list, fmt: str, reader: Callable, options: dict, override):
        self.files, self.sizes, self.fmt = files, sizes, fmt
        self.reader, self.options, self.override = reader, options, override
        self.name = f"Read{fmt}"

    def counting(self) -> "FileSource":
        """The same files read for their row count only (no columns parsed or converted)."""
        src = FileSource(self.files, self.sizes, self.fmt, self.reader,
                         {**self.options, "count_only": True}, self.override)
        src.name = self.name
        return src

    def inputs(self, ncpus, ctx):
        n = len(self.files)
        if self.override is not None:
            k = max(1, min(n, int(self.override)))
        else:
            k = min(n, max(2 * ncpus, math.ceil(sum(self.sizes) / ctx.target_max_block_size)))
        groups = [self.files[n * i // k:n * (i + 1) // k] for i in range(k)]
        return [ReadTask(self.reader, g, self.fmt, self.options) for g in groups]


class RefsSource(Source):
    """Blocks already in the object store (materialize, from_arrow_refs, split)."""

    def __init__(self, bundles: list, name: str = "FromBlocks"):
        self.bundles, self.name = list(bundles), name

    def num_rows(self):
        return sum(b.meta.num_rows for b in self.bundles)

    def inputs(self, ncpus, ctx):
        return list(self.bundles)


class UnionSource(Source):
    name = "Union"

    def __init__(self, plans: list):
        self.plans = plans

    def num_rows(self):
        counts = [p.num_rows() for p in self.plans]
        return None if None in counts else sum(counts)


@dataclass(frozen=True)
class MapOp:
    name: str
    transform: Any                    # transforms.Transform
    compute: Any = None               # None: tasks; (min, max) actors
    remote_args: dict = field(default_factory=dict)
    keeps_rows: bool = False          # one row out per row in (map, add_column, ...)


@dataclass(frozen=True)
class AllToAllOp:
    name: str
    fn: Callable                      # fn(bundles, ctx, opstats) -> list[RefBundle]
    keeps_rows: bool = False
    reorders_only: bool = False       # same rows, other order/blocks (count() may skip it)


@dataclass(frozen=True)
class LimitOp:
    n: int
    name: str = "Limit"


@dataclass(frozen=True)
class Plan:
    source: Source
    ops: tuple = ()
    ctx: DataContext = field(default_factory=lambda: DataContext.get_current().copy())

    def with_op(self, op) -> "Plan":
        return replace(self, ops=self.ops + (op,))

    def num_rows(self):
        """Row count known without executing (source rows through row-preserving ops), else None."""
        n = self.source.num_rows()
        for op in self.ops:
            if n is None:
                return None
            if isinstance(op, LimitOp):
                n = min(n, op.n)
            elif not getattr(op, "keeps_rows", False):
                return None
        return n
