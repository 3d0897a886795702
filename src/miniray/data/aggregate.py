"""Aggregations as partial states: Count, Sum, Min, Max, Mean, Std, and a user's AggregateFn.

    block ──partial(keys)──► states table (one row per group) ─┐
    block ──partial(keys)──► states table                      ├─ concat ──merge──► finalize ──► result
                                                               ┘
Built-ins keep their states as Arrow columns (sums, counts, min, max, sum of squares) and use Arrow's
hash aggregation, so a group-by never loops over rows in Python.  A user's ``AggregateFn`` keeps its
accumulators as pickled values, one per group, and runs ``init``/``accumulate_row``/``merge``/
``finalize`` in Python.  Output columns are named as in Ray: ``count()``, ``sum(x)``, ``mean(x)``...
"""
from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class AggregateFn:
    """A user aggregation: ``init(key) -> acc``, ``accumulate_row(acc, row) -> acc`` (or
    ``accumulate_block(acc, block) -> acc``), ``merge(a, b) -> acc``, ``finalize(acc) -> value``."""

    def __init__(self, init, merge, accumulate_row=None, accumulate_block=None, finalize=None,
                 name=None):
        if (accumulate_row is None) == (accumulate_block is None):
            raise ValueError("AggregateFn needs exactly one of accumulate_row or accumulate_block.")
        self.init, self.merge, self.finalize = init, merge, finalize or (lambda a: a)
        self.accumulate_row, self.accumulate_block = accumulate_row, accumulate_block
        self.name = name or "custom()"


class _Builtin:
    """parts: (source, arrow partial fn, arrow merge fn); source is 'x', 'x2' (x squared) or '*'."""
    parts: tuple = ()
    label = ""

    def __init__(self, on=None, ignore_nulls=True, alias_name=None):
        self.on, self.ignore_nulls = on, ignore_nulls
        self.name = alias_name or f"{self.label}({on or ''})"

    def finalize(self, cols: list):
        return cols[0]


class Count(_Builtin):
    label, parts = "count", (("*", "count_all", "sum"),)


class Sum(_Builtin):
    label, parts = "sum", (("x", "sum", "sum"), ("x", "count", "sum"))

    def finalize(self, cols):
        return pc.if_else(pc.equal(cols[1], 0), pa.scalar(None, cols[0].type), cols[0])


class Min(_Builtin):
    label, parts = "min", (("x", "min", "min"),)


class Max(_Builtin):
    label, parts = "max", (("x", "max", "max"),)


class Mean(_Builtin):
    label, parts = "mean", (("x", "sum", "sum"), ("x", "count", "sum"))

    def finalize(self, cols):
        s, n = pc.cast(cols[0], pa.float64()), pc.cast(cols[1], pa.float64())
        return pc.divide(s, pc.if_else(pc.equal(n, 0), pa.scalar(None, pa.float64()), n))


class Std(_Builtin):
    label = "std"
    parts = (("x", "sum", "sum"), ("x2", "sum", "sum"), ("x", "count", "sum"))

    def __init__(self, on=None, ddof=1, ignore_nulls=True, alias_name=None):
        super().__init__(on, ignore_nulls, alias_name)
        self.ddof = ddof

    def finalize(self, cols):
        s, q, n = (np.asarray(pc.cast(c, pa.float64()).to_numpy(zero_copy_only=False)) for c in cols)
        with np.errstate(invalid="ignore", divide="ignore"):
            m2 = np.maximum(q - s * s / n, 0.0)
            out = np.sqrt(m2 / (n - self.ddof))
        return pa.array(np.where(n - self.ddof > 0, out, np.nan), mask=(n - self.ddof) <= 0)


BUILTINS = {"count": Count, "sum": Sum, "min": Min, "max": Max, "mean": Mean, "std": Std}


def check_on(block: pa.Table, aggs) -> None:
    for a in aggs:
        on = getattr(a, "on", None)
        if on is not None and on not in block.column_names:
            raise KeyError(f"{a.name}: no column {on!r}; the dataset has columns {block.column_names}.")


# -- partial / merge / finalize on tables --------------------------------------------------------
def partial(block: pa.Table, keys: list, aggs: list) -> pa.Table:
    """One row per group of ``block``: the keys and every aggregation's state columns."""
    missing = [k for k in keys if k not in block.column_names]
    if missing:
        raise KeyError(f"groupby: no column {missing[0]!r}; the dataset has columns {block.column_names}.")
    check_on(block, aggs)
    if any(isinstance(a, AggregateFn) for a in aggs):
        return _py_partial(block, keys, aggs)
    cols, specs = {k: block.column(k) for k in keys}, []
    for j, a in enumerate(aggs):
        for k, (src, fn, _) in enumerate(a.parts):
            name = f"__p{j}_{k}"
            if src == "*":
                specs.append(([], fn, name))
                continue
            col = block.column(a.on)
            if src == "x2":
                col = pc.multiply(pc.cast(col, pa.float64()), pc.cast(col, pa.float64()))
            cols[name] = col
            specs.append((name, fn, name))
    if not keys:   # one group: Arrow's scalar kernels, without a hash-aggregation plan
        return pa.table({n: [_scalar(cols[c] if c else None, f, block.num_rows)] for c, f, n in specs})
    t = pa.table(cols)
    out = t.group_by(keys, use_threads=True).aggregate([(c, f) for c, f, _ in specs])
    names = [k for k in keys] + [n for _, _, n in specs]
    got = [k for k in keys] + [("count_all" if c == [] else f"{c}_{f}") for c, f, _ in specs]
    return pa.table({n: out.column(g) for n, g in zip(names, got)})


def merge_finalize(partials: list, keys: list, aggs: list) -> pa.Table:
    """Combine states of many blocks and compute the result columns (sorted by the keys)."""
    from miniray.data.block import concat
    t = concat(partials)
    if any(isinstance(a, AggregateFn) for a in aggs):
        return _py_merge(t, keys, aggs)
    specs = []
    for j, a in enumerate(aggs):
        for k, (_, _, merge) in enumerate(a.parts):
            specs.append((f"__p{j}_{k}", merge))
    if not keys:
        m = pa.table({f"{c}_{f}": [_scalar(t.column(c) if c in t.column_names else pa.array([], pa.float64()),
                                           f, t.num_rows)] for c, f in specs})
    else:
        m = t.group_by(keys, use_threads=True).aggregate(specs)
    out = {k: m.column(k) for k in keys}
    for j, a in enumerate(aggs):
        cols = [m.column(f"__p{j}_{k}_{merge}") for k, (_, _, merge) in enumerate(a.parts)]
        out[a.name] = a.finalize(cols)
    res = pa.table(out)
    if keys:
        res = res.sort_by([(k, "ascending") for k in keys])
    return res


def _scalar(col, fn: str, num_rows: int):
    """One aggregate of a whole column, as a scalar (``count_all`` needs no column)."""
    if fn == "count_all":
        return num_rows
    if fn == "count":
        return pc.count(col).as_py()
    return pc.call_function(fn, [col]).as_py()


def _group_rows(block, keys):
    from miniray.data.block import to_rows
    groups: dict = {}
    for row in to_rows(block):
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def _as_fn(a) -> AggregateFn:
    if isinstance(a, AggregateFn):
        return a
    raise TypeError(f"{a.name} cannot be mixed with AggregateFn; aggregate them in separate calls.")


def _py_partial(block, keys, aggs):
    fns = [_as_fn(a) for a in aggs]
    groups = _group_rows(block, keys)
    rows = []
    for key, members in groups.items():
        states = []
        for f in fns:
            acc = f.init(key[0] if len(key) == 1 else key)
            if f.accumulate_block is not None:
                from miniray.data.block import from_rows
                acc = f.accumulate_block(acc, from_rows(members))
            else:
                for r in members:
                    acc = f.accumulate_row(acc, r)
            states.append(pickle.dumps(acc))
        rows.append((key, states))
    cols = {k: [r[0][i] for r in rows] for i, k in enumerate(keys)}
    for j in range(len(fns)):
        cols[f"__s{j}"] = pa.array([r[1][j] for r in rows], pa.binary())
    return pa.table(cols)


def _py_merge(t, keys, aggs):
    fns = [_as_fn(a) for a in aggs]
    merged: dict = {}
    for row in t.to_pylist():
        key = tuple(row[k] for k in keys)
        states = [pickle.loads(row[f"__s{j}"]) for j in range(len(fns))]
        if key in merged:
            merged[key] = [f.merge(a, b) for f, a, b in zip(fns, merged[key], states)]
        else:
            merged[key] = states
    order = sorted(merged, key=lambda k: tuple((v is None, v) for v in k)) if keys else list(merged)
    if not keys and not order:
        order, merged = [()], {(): [f.init(None) for f in fns]}
    out = {k: [key[i] for key in order] for i, k in enumerate(keys)}
    for j, f in enumerate(fns):
        out[f.name] = [f.finalize(merged[key][j]) for key in order]
    return pa.table(out)


def scalar(value):
    """A result cell as a plain Python value."""
    return value.as_py() if hasattr(value, "as_py") else value
