"""``Dataset``: the user's handle on a lazy plan, with Ray Data's method names and conventions.

Transformations return a new Dataset whose plan has one more operator (nothing runs); consumption
methods (take, count, iter_batches, write_*, ...) run the plan through the streaming executor.
A Dataset pickles as its plan, so it can be passed to tasks and actors and executed there.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import replace

import pyarrow as pa

import miniray
from miniray.data import aggregate as A
from miniray.data import block as B
from miniray.data import shuffle as S
from miniray.data import transforms as T
from miniray.data.executor import execute
from miniray.data.plan import AllToAllOp, FileSource, LimitOp, MapOp, Plan, RefsSource, UnionSource


def _fn_name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _remote_args(num_cpus=None, num_gpus=None, memory=None, extra=None) -> dict:
    args = {k: v for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus), ("memory", memory))
            if v is not None}
    args.update(extra or {})
    return args


def _pool(fn, concurrency, compute=None):
    """(min, max) actors for a callable class; None for a plain function (tasks)."""
    from miniray.data.context import ActorPoolStrategy
    if isinstance(compute, ActorPoolStrategy) and concurrency is None:
        concurrency = compute.concurrency()
    if not isinstance(fn, type):
        return None
    if concurrency is None:
        return (1, None)
    if isinstance(concurrency, tuple) and len(concurrency) == 2 and concurrency[1] is None:
        return (max(1, concurrency[0]), None)
    if isinstance(concurrency, int) and concurrency >= 1:
        return (concurrency, concurrency)
    if isinstance(concurrency, tuple) and len(concurrency) in (2, 3) and 1 <= concurrency[0] <= concurrency[1]:
        return (concurrency[0], concurrency[1])
    raise ValueError(f"concurrency={concurrency!r}: give an int n >= 1 (a pool of n actors) or a "
                     "tuple (min, max) for an autoscaling pool.")


class Schema:
    """Column names and types (``ds.schema()``), printed as Ray prints it."""

    def __init__(self, base: pa.Schema):
        self.base_schema = base
        self.names = list(base.names)
        self.types = [f.type for f in base]

    def __eq__(self, other):
        return isinstance(other, Schema) and self.base_schema == other.base_schema

    def __repr__(self):
        w = max([len("Column")] + [len(n) for n in self.names])
        rows = [f"{'Column':<{w}}  Type", f"{'-' * 6:<{w}}  ----"]
        rows += [f"{n:<{w}}  {t}" for n, t in zip(self.names, self.types)]
        return "\n".join(rows)


class Dataset:
    def __init__(self, plan: Plan):
        self._plan = plan
        self._last_stats = None

    def __getstate__(self):
        return {"_plan": self._plan, "_last_stats": None}

    def _with(self, op) -> "Dataset":
        return Dataset(self._plan.with_op(op))

    def _map(self, name, transform, compute=None, remote_args=None, keeps_rows=False) -> "Dataset":
        return self._with(MapOp(name, transform, compute, remote_args or {}, keeps_rows))

    # -- row and batch transformations ----------------------------------------------------------
    def map(self, fn, *, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
            fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None, concurrency=None,
            **ray_remote_args) -> "Dataset":
        """Apply ``fn(row: dict) -> dict`` to every row."""
        name = f"Map({_fn_name(fn)})"
        t = T.MapRows(name, fn, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs)
        return self._map(name, t, _pool(fn, concurrency),
                         _remote_args(num_cpus, num_gpus, memory, ray_remote_args), keeps_rows=True)

    def map_batches(self, fn, *, batch_size=None, compute=None, batch_format="default",
                    zero_copy_batch=True, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
                    fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None,
                    concurrency=None, udf_modifying_row_count=False, **ray_remote_args) -> "Dataset":
        """Apply ``fn(batch) -> batch`` (dict of numpy arrays by default; or a generator of batches).
        A callable class runs on a pool of actors: ``concurrency=n`` or ``(min, max)``."""
        name = f"MapBatches({_fn_name(fn)})"
        t = T.MapBatches(name, fn, batch_size, batch_format, fn_args=fn_args, fn_kwargs=fn_kwargs,
                         ctor_args=fn_constructor_args, ctor_kwargs=fn_constructor_kwargs)
        return self._map(name, t, _pool(fn, concurrency, compute),
                         _remote_args(num_cpus, num_gpus, memory, ray_remote_args))

    def flat_map(self, fn, *, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
                 fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None,
                 concurrency=None, **ray_remote_args) -> "Dataset":
        """Apply ``fn(row) -> list of rows``."""
        name = f"FlatMap({_fn_name(fn)})"
        t = T.FlatMap(name, fn, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs)
        return self._map(name, t, _pool(fn, concurrency), _remote_args(num_cpus, num_gpus, memory,
                                                                      ray_remote_args))

    def filter(self, fn=None, *, expr=None, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
               fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None,
               concurrency=None, **ray_remote_args) -> "Dataset":
        """Keep the rows for which ``fn(row)`` is true."""
        if expr is not None:
            raise NotImplementedError("filter(expr=...) is not supported by miniray.data; pass a "
                                      "function, e.g. filter(lambda r: r['x'] > 0).")
        name = f"Filter({_fn_name(fn)})"
        t = T.Filter(name, fn, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs)
        return self._map(name, t, _pool(fn, concurrency), _remote_args(num_cpus, num_gpus, memory,
                                                                      ray_remote_args))

    def add_column(self, col: str, fn, *, batch_format="pandas", **_) -> "Dataset":
        """Add (or replace) column ``col`` = ``fn(batch)`` (a pandas DataFrame by default)."""
        return self._map(f"AddColumn({col})", T.AddColumn(col, fn, batch_format), keeps_rows=True)

    def drop_columns(self, cols, **_) -> "Dataset":
        return self._map("DropColumns", T.DropColumns(cols), keeps_rows=True)

    def select_columns(self, cols, **_) -> "Dataset":
        return self._map("SelectColumns", T.SelectColumns(cols), keeps_rows=True)

    def rename_columns(self, names: dict, **_) -> "Dataset":
        return self._map("RenameColumns", T.RenameColumns(names), keeps_rows=True)

    def random_sample(self, fraction: float, *, seed=None) -> "Dataset":
        if not 0 <= fraction <= 1:
            raise ValueError(f"random_sample(fraction={fraction!r}): give a fraction in [0, 1].")
        return self._map("RandomSample", T.RandomSample(fraction, seed))

    # -- all-to-all ------------------------------------------------------------------------------
    def repartition(self, num_blocks: int, *, shuffle: bool = False, **_) -> "Dataset":
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"repartition({num_blocks!r}): give a number of blocks >= 1.")
        return self._with(AllToAllOp(f"Repartition[{num_blocks}]", S.repartition(num_blocks, shuffle),
                                     keeps_rows=True, reorders_only=True))

    def random_shuffle(self, *, seed=None, num_blocks=None, **_) -> "Dataset":
        return self._with(AllToAllOp("RandomShuffle", S.random_shuffle(seed, num_blocks),
                                     keeps_rows=True, reorders_only=True))

    def randomize_block_order(self, *, seed=None) -> "Dataset":
        return self._with(AllToAllOp("RandomizeBlockOrder", S.randomize_block_order(seed),
                                     keeps_rows=True, reorders_only=True))

    def sort(self, key, descending=False) -> "Dataset":
        keys = [key] if isinstance(key, str) else list(key or [])
        if not keys:
            raise ValueError("sort(key): give a column name or a list of them.")
        desc = list(descending) if isinstance(descending, (list, tuple)) else [descending] * len(keys)
        if len(desc) != len(keys):
            raise ValueError(f"sort: {len(keys)} keys but {len(desc)} descending flags.")
        return self._with(AllToAllOp(f"Sort({', '.join(keys)})", S.sort(keys, desc), keeps_rows=True,
                                     reorders_only=True))

    def groupby(self, key) -> "GroupedData":
        from miniray.data.grouped import GroupedData
        return GroupedData(self, key)

    def union(self, *others: "Dataset") -> "Dataset":
        plans = [self._plan] + [o._plan for o in others]
        return Dataset(Plan(UnionSource(plans), (), self._plan.ctx))

    def zip(self, *others: "Dataset") -> "Dataset":
        ds = self
        for other in others:
            ds = ds._with(AllToAllOp("Zip", S.zip_with(other._plan), keeps_rows=True))
        return ds

    def limit(self, limit: int) -> "Dataset":
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit({limit!r}): give a number of rows >= 0.")
        return self._with(LimitOp(limit))

    # -- splitting -------------------------------------------------------------------------------
    def _bundles(self) -> list:
        return list(execute(self._plan, self))

    def _split_by_rows(self, cuts) -> list:
        parts = S.gather(self._bundles(), cuts)
        return [MaterializedDataset(Plan(RefsSource([p], "Split"), (), self._plan.ctx)) for p in parts]

    def split(self, n: int, *, equal: bool = False, locality_hints=None) -> list:
        """``n`` materialized datasets of (nearly) equal rows; ``equal=True`` drops the remainder."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"split({n!r}): give a number of splits >= 1.")
        total = self.count()
        per = total // n
        cuts = [per * i for i in range(n + 1)] if equal else [total * i // n for i in range(n + 1)]
        return self._split_by_rows(cuts)

    def split_at_indices(self, indices: list) -> list:
        if any(b < a for a, b in zip(indices, indices[1:])) or any(i < 0 for i in indices):
            raise ValueError(f"split_at_indices({indices!r}): indices must be >= 0 and sorted.")
        total = self.count()
        cuts = [0] + [min(i, total) for i in indices] + [total]
        return self._split_by_rows(cuts)

    def split_proportionately(self, proportions: list) -> list:
        total = self.count()
        cuts, acc = [], 0.0
        for p in proportions:
            acc += p
            cuts.append(int(total * acc))
        return self.split_at_indices(cuts)

    def train_test_split(self, test_size, *, shuffle: bool = False, seed=None, **_) -> list:
        """(train, test); ``test_size`` is a fraction in (0, 1) or a number of rows."""
        ds = self.random_shuffle(seed=seed) if shuffle else self
        total = ds.count()
        if isinstance(test_size, float):
            if not 0 < test_size < 1:
                raise ValueError(f"test_size={test_size}: a float must be in (0, 1).")
            test = math.ceil(total * test_size)
        elif isinstance(test_size, int) and 0 < test_size < total:
            test = test_size
        else:
            raise ValueError(f"test_size={test_size!r}: give a fraction or a row count below {total}.")
        return ds.materialize().split_at_indices([total - test])

    def streaming_split(self, n: int, *, equal: bool = False, locality_hints=None) -> list:
        """``n`` DataIterators that share one streaming execution (for n training workers)."""
        from miniray.data.iterator import streaming_split
        return streaming_split(self, n, equal)

    # -- consumption -----------------------------------------------------------------------------
    def iter_internal_ref_bundles(self):
        return execute(self._plan, self)

    def _iter_blocks(self, plan=None):
        for b in execute(plan or self._plan, self):
            yield miniray.get(b.ref)

    def iterator(self):
        from miniray.data.iterator import DataIterator
        return DataIterator(lambda: self._iter_blocks(), self)

    def iter_batches(self, **kw):
        """Batches of ``batch_size`` rows (256; None for whole blocks) in ``batch_format``."""
        return self.iterator().iter_batches(**kw)

    def iter_rows(self):
        return self.iterator().iter_rows()

    def iter_torch_batches(self, **kw):
        return self.iterator().iter_torch_batches(**kw)

    def take(self, limit: int = 20) -> list:
        rows = []
        for blk in self._iter_blocks(self._plan.with_op(LimitOp(limit))):
            rows += B.to_rows(blk)
        return rows[:limit]

    def take_all(self, limit=None) -> list:
        rows = []
        for blk in self._iter_blocks():
            rows += B.to_rows(blk)
            if limit is not None and len(rows) > limit:
                raise ValueError(f"take_all(limit={limit}): the dataset has more than {limit} rows.")
        return rows

    def take_batch(self, batch_size: int = 20, *, batch_format="default"):
        fmt = B.check_batch_format(batch_format)
        blocks = list(self._iter_blocks(self._plan.with_op(LimitOp(batch_size))))
        return B.to_batch(B.concat(blocks), fmt)

    def show(self, limit: int = 20) -> None:
        for row in self.take(limit):
            print(row)

    def count(self) -> int:
        """Rows; shuffles and sorts at the end are skipped (they keep the rows), a plain file read
        parses no values, and only each block's count comes back."""
        known = self._plan.num_rows()
        if known is not None:
            return known
        ops = list(self._plan.ops)
        while ops and getattr(ops[-1], "reorders_only", False):
            ops.pop()
        source = self._plan.source
        if not ops and isinstance(source, FileSource):
            source = source.counting()
        plan = replace(self._plan, source=source, ops=tuple(ops) + (MapOp("Count", T.CountRows()),))
        total = 0
        for blk in self._iter_blocks(plan):
            total += sum(blk.column("n").to_pylist()) if blk.num_rows else 0
        return total

    def schema(self, fetch_if_missing: bool = True):
        for b in execute(self._plan, self):
            if b.meta.schema is not None and (b.meta.num_rows or len(b.meta.schema)):
                return Schema(b.meta.schema)
        return None

    def columns(self, fetch_if_missing: bool = True):
        s = self.schema()
        return None if s is None else s.names

    def num_blocks(self) -> int:
        return len(self._bundles())

    def size_bytes(self) -> int:
        return sum(b.meta.size_bytes for b in execute(self._plan, self))

    def input_files(self) -> list:
        return list(getattr(self._plan.source, "files", []))

    def _global(self, cls, on, **kw):
        on_list = [on] if isinstance(on, str) or on is None else list(on)
        aggs = [cls(o, **kw) for o in on_list]
        row = self.aggregate(*aggs, _as_dict=True)
        if len(aggs) == 1:
            return row[aggs[0].name]
        return row

    def aggregate(self, *aggs, _as_dict=False):
        """Whole-dataset aggregations: partial states in the upstream tasks, merged here."""
        if not aggs:
            raise ValueError("aggregate() needs at least one aggregation, e.g. Sum('x').")
        ds = self._map("PartialAggregate", T.PartialAggregate([], list(aggs)))
        partials = list(ds._iter_blocks())
        self._last_stats = ds._last_stats
        result = A.merge_finalize(partials, [], list(aggs))
        return B.to_rows(result)[0] if result.num_rows else {a.name: None for a in aggs}

    def sum(self, on=None, ignore_nulls=True):
        return self._global(A.Sum, on, ignore_nulls=ignore_nulls)

    def min(self, on=None, ignore_nulls=True):
        return self._global(A.Min, on, ignore_nulls=ignore_nulls)

    def max(self, on=None, ignore_nulls=True):
        return self._global(A.Max, on, ignore_nulls=ignore_nulls)

    def mean(self, on=None, ignore_nulls=True):
        return self._global(A.Mean, on, ignore_nulls=ignore_nulls)

    def std(self, on=None, ddof=1, ignore_nulls=True):
        return self._global(A.Std, on, ddof=ddof, ignore_nulls=ignore_nulls)

    def unique(self, column: str) -> list:
        return [r[column] for r in self.select_columns([column]).groupby(column).count().take_all()]

    def to_pandas(self, limit=None):
        blocks = list(self._iter_blocks())
        t = B.concat(blocks)
        if limit is not None and t.num_rows > limit:
            raise ValueError(f"to_pandas(limit={limit}): the dataset has {t.num_rows} rows.")
        return B.to_pandas(t)

    def to_arrow_refs(self) -> list:
        return [b.ref for b in self._bundles()]

    def to_pandas_refs(self) -> list:
        from miniray.data.iterator import convert_refs
        return convert_refs(self._bundles(), "pandas")

    def to_numpy_refs(self, *, column=None) -> list:
        from miniray.data.iterator import convert_refs
        return convert_refs(self._bundles(), "numpy", column)

    def materialize(self) -> "MaterializedDataset":
        """Run the plan now and keep its blocks in the object store."""
        bundles = self._bundles()
        mds = MaterializedDataset(Plan(RefsSource(bundles, "FromBlocks"), (), self._plan.ctx))
        mds._last_stats = self._last_stats
        return mds

    def stats(self) -> str:
        """Rows, bytes, tasks, wall and CPU time per operator of the last execution ("" if none)."""
        return self._last_stats.to_string() if self._last_stats is not None else ""

    # -- writing ---------------------------------------------------------------------------------
    def _write(self, fmt: str, path: str, options: dict) -> None:
        from miniray.data import formats
        path = formats.prepare_dir(path, f"write_{fmt}")
        prefix = options.pop("filename_prefix", None) or uuid.uuid4().hex[:12]
        ds = self._map(f"Write{fmt.capitalize()}", T.WriteBlock(path, fmt, prefix, options))
        for _ in execute(ds._plan, ds):
            pass
        self._last_stats = ds._last_stats

    def write_parquet(self, path: str, *, filesystem=None, arrow_parquet_args=None, **kw) -> None:
        self._write("parquet", path, {"arrow_parquet_args": arrow_parquet_args or {}, **_wkw(kw)})

    def write_csv(self, path: str, *, filesystem=None, **kw) -> None:
        self._write("csv", path, _wkw(kw))

    def write_json(self, path: str, *, filesystem=None, pandas_json_args=None, **kw) -> None:
        self._write("json", path, {"pandas_json_args": pandas_json_args or {}, **_wkw(kw)})

    def write_numpy(self, path: str, *, column: str, filesystem=None, **kw) -> None:
        self._write("numpy", path, {"column": column, **_wkw(kw)})

    # -- looks -----------------------------------------------------------------------------------
    def __repr__(self):
        names = [op.name for op in self._plan.ops]
        n = self._plan.num_rows()
        head = f"{type(self).__name__}(num_rows={'?' if n is None else n})"
        if not names:
            return f"{head} from {self._plan.source.name}"
        return " -> ".join([self._plan.source.name] + names) + f"\n{head}"


def _wkw(kw: dict) -> dict:
    return {"filename_prefix": kw.pop("filename_prefix", None)} if "filename_prefix" in kw else {}


class MaterializedDataset(Dataset):
    """A dataset whose blocks are already in the object store (or in the driver)."""

    def _with(self, op) -> Dataset:
        return Dataset(self._plan.with_op(op))
