"""``ds.groupby(key)``: aggregations per group and ``map_groups``, as map-reduce stages.

Results are datasets with one row per group, sorted by the key, with columns named as in Ray
(``g``, ``count()``, ``mean(x)``, ...).
"""
from __future__ import annotations

from miniray.data import aggregate as A
from miniray.data import block as B
from miniray.data import shuffle as S
from miniray.data import transforms as T
from miniray.data.plan import AllToAllOp


class GroupedData:
    def __init__(self, ds, key):
        if key is not None and not isinstance(key, (str, list, tuple)):
            raise TypeError(f"groupby(key): give a column name or a list of them, not {key!r}.")
        self._ds = ds
        self._keys = [] if key is None else ([key] if isinstance(key, str) else list(key))

    def __repr__(self):
        return f"GroupedData(keys={self._keys})"

    def aggregate(self, *aggs):
        if not aggs:
            raise ValueError("aggregate() needs at least one aggregation, e.g. Count() or Mean('x').")
        for a in aggs:
            if not isinstance(a, (A.AggregateFn, A._Builtin)):
                raise TypeError(f"aggregate() takes Count(), Sum(col), ... or AggregateFn, got {a!r}.")
        name = f"Aggregate({', '.join(a.name for a in aggs)})"
        ds = self._ds._map("PartialAggregate", T.PartialAggregate(self._keys, list(aggs)))
        return ds._with(AllToAllOp(name, S.merge_partials(self._keys, list(aggs))))

    def _each(self, cls, on, **kw):
        on_list = [on] if isinstance(on, str) else list(on or [])
        if not on_list:
            raise ValueError(f"{cls.label}(on): give the column to aggregate.")
        return self.aggregate(*[cls(o, **kw) for o in on_list])

    def count(self):
        return self.aggregate(A.Count())

    def sum(self, on=None, ignore_nulls=True):
        return self._each(A.Sum, on, ignore_nulls=ignore_nulls)

    def min(self, on=None, ignore_nulls=True):
        return self._each(A.Min, on, ignore_nulls=ignore_nulls)

    def max(self, on=None, ignore_nulls=True):
        return self._each(A.Max, on, ignore_nulls=ignore_nulls)

    def mean(self, on=None, ignore_nulls=True):
        return self._each(A.Mean, on, ignore_nulls=ignore_nulls)

    def std(self, on=None, ddof=1, ignore_nulls=True):
        return self._each(A.Std, on, ddof=ddof, ignore_nulls=ignore_nulls)

    def map_groups(self, fn, *, batch_format="default", **_):
        """``fn(batch of one group) -> batch``; the results concatenated."""
        if not self._keys:
            raise ValueError("map_groups needs a groupby key.")
        if not callable(fn):
            raise TypeError("map_groups takes a function of one batch.")
        fmt = B.check_batch_format(batch_format)
        name = f"MapGroups({getattr(fn, '__name__', 'fn')})"
        return self._ds._with(AllToAllOp(name, S.map_groups(self._keys, fn, fmt)))
