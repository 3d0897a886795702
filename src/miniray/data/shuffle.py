"""All-to-all operators as map-reduce stages over tasks: repartition, random_shuffle, sort,
group-by aggregation and map_groups, zip.

    inputs (M blocks) ──map task per block──► R pieces each ──reduce task per partition──► R blocks
    sort / map_groups:  a sample of the first key from each block picks R-1 boundaries first
    aggregates:         map = partial states per block (small), one reduce merges and finalizes

Each function here runs in the driver (or whichever process executes the dataset), takes the
upstream ``RefBundle``s and returns the output bundles; the data itself only moves between tasks.
With one input block everything is one task.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

import miniray
from miniray.data import aggregate as A
from miniray.data import block as B
from miniray.data.executor import bundles, execute, meta_of, run_tasks
from miniray.data.plan import RefBundle
from miniray.data.stats import BlockMeta


def _out(block):
    return block, meta_of(block)


# -- tasks ----------------------------------------------------------------------------------------
def _gather_task(spec, *blocks):
    """spec: [(position in blocks, start, length)] -> their slices concatenated."""
    return _out(B.concat([blocks[i].slice(s, n) for i, s, n in spec]))


def _shuffle_map(block, r, seed, idx):
    rng = np.random.default_rng(None if seed is None else [seed, idx])
    part = rng.integers(0, r, block.num_rows)
    pieces = [block.filter(pa.array(part == j)) for j in range(r)]
    return pieces if r > 1 else pieces[0]


def _shuffle_reduce(seed, j, *pieces):
    t = B.concat(list(pieces))
    rng = np.random.default_rng(None if seed is None else [seed, 10_000_019 + j])
    return _out(t.take(pa.array(rng.permutation(t.num_rows))) if t.num_rows else t)


def _sample_task(block, key, k):
    B.check_columns(block, [key], "sort")
    if block.num_rows <= k:
        return block.column(key).to_numpy(zero_copy_only=False)
    idx = np.linspace(0, block.num_rows - 1, k).astype(np.int64)
    return block.column(key).take(pa.array(idx)).to_numpy(zero_copy_only=False)


def _range_map(block, key, bounds, r):
    B.check_columns(block, [key], "sort")
    vals = block.column(key).to_numpy(zero_copy_only=False)
    part = np.searchsorted(bounds, vals, side="right")
    pieces = [block.filter(pa.array(part == j)) for j in range(r)]
    return pieces if r > 1 else pieces[0]


def _sorted(t, keys, desc):
    B.check_columns(t, keys, "sort")
    return t.sort_by([(k, "descending" if d else "ascending") for k, d in zip(keys, desc)])


def _sort_reduce(keys, desc, *pieces):
    return _out(_sorted(B.concat(list(pieces)), keys, desc))


def _groups_reduce(keys, fn, fmt, *pieces):
    t = B.concat(list(pieces))
    if t.num_rows == 0:
        return _out(t)
    t = _sorted(t, keys, [False] * len(keys))
    cols = [t.column(k).to_numpy(zero_copy_only=False) for k in keys]
    change = np.zeros(t.num_rows, bool)
    change[0] = True
    for c in cols:
        change[1:] |= c[1:] != c[:-1]
    starts = list(np.flatnonzero(change)) + [t.num_rows]
    outs = []
    for s, e in zip(starts[:-1], starts[1:]):
        group = t.slice(s, e - s)
        try:
            res = fn(B.to_batch(group, fmt))
        except Exception as err:
            err.add_note(f"miniray.data: operator MapGroups failed on the group with key "
                         f"{[c[s] for c in cols]}")
            raise
        outs.append(B.to_block(res, "the function given to map_groups"))
    return _out(B.concat(outs))


def _final_task(keys, aggs, *partials):
    return _out(A.merge_finalize(list(partials), keys, aggs))


def _zip_task(a, b):
    names = list(a.column_names)
    for name, col in zip(b.column_names, b.columns):
        new = name
        i = 1
        while new in names:
            new = f"{name}_{i}"
            i += 1
        names.append(new)
        a = a.append_column(new, col)
    return _out(a)


# -- stages (run in the executing process) -------------------------------------------------------
def _slices(inputs, cuts):
    """For output ranges [cuts[j], cuts[j+1]) of the global row order: the (bundle, start, n) pieces."""
    offsets = np.cumsum([0] + [b.meta.num_rows for b in inputs])
    out = []
    for j in range(len(cuts) - 1):
        lo, hi, pieces = cuts[j], cuts[j + 1], []
        for i, b in enumerate(inputs):
            s, e = max(lo, offsets[i]), min(hi, offsets[i + 1])
            if s < e:
                pieces.append((i, int(s - offsets[i]), int(e - s)))
        out.append(pieces)
    return out


def gather(inputs, cuts) -> list:
    """Blocks made of the global row ranges between ``cuts`` (zero-copy slices, one task each)."""
    calls = []
    for pieces in _slices(inputs, cuts):
        if len(pieces) == 1 and pieces[0][1] == 0 and pieces[0][2] == inputs[pieces[0][0]].meta.num_rows:
            calls.append(inputs[pieces[0][0]])
            continue
        used = sorted({i for i, _, _ in pieces})
        pos = {i: p for p, i in enumerate(used)}
        spec = [(pos[i], s, n) for i, s, n in pieces]
        calls.append((spec, *[inputs[i].ref for i in used]))
    tasks = [c for c in calls if not isinstance(c, RefBundle)]
    made = iter(bundles(run_tasks(_gather_task, tasks)))
    return [c if isinstance(c, RefBundle) else next(made) for c in calls]


def repartition(n: int, shuffle: bool = False, seed=None):
    def run(inputs, ctx, st):
        if shuffle:
            return random_shuffle(seed, n)(inputs, ctx, st)
        total = sum(b.meta.num_rows for b in inputs)
        return gather(inputs, [total * j // n for j in range(n + 1)])
    return run


def random_shuffle(seed=None, num_blocks=None):
    def run(inputs, ctx, st):
        r = num_blocks or max(1, len(inputs))
        if len(inputs) == 1 and r == 1:
            return bundles(run_tasks(_shuffle_reduce, [(seed, 0, inputs[0].ref)]))
        pieces = [run_tasks(_shuffle_map, [(b.ref, r, seed, i)], num_returns=r)[0]
                  for i, b in enumerate(inputs)]
        pieces = [p if r > 1 else [p] for p in pieces]
        st.tasks += len(inputs)
        return bundles(run_tasks(_shuffle_reduce, [(seed, j, *[p[j] for p in pieces]) for j in range(r)]))
    return run


def randomize_block_order(seed=None):
    def run(inputs, ctx, st):
        order = np.random.default_rng(seed).permutation(len(inputs))
        return [inputs[i] for i in order]
    return run


def _range_partition(inputs, key, r, reduce_fn, reduce_args, descending=False):
    """Sample boundaries of ``key``, split every block by them, reduce each partition."""
    if r == 1 or len(inputs) <= 1:
        refs = [b.ref for b in inputs]
        return bundles(run_tasks(reduce_fn, [(*reduce_args, *refs)]))
    samples = miniray.get(run_tasks(_sample_task, [(b.ref, key, 64) for b in inputs], num_returns=1))
    allv = np.sort(np.concatenate(samples))
    bounds = allv[[len(allv) * j // r for j in range(1, r)]] if len(allv) else allv
    pieces = [run_tasks(_range_map, [(b.ref, key, bounds, r)], num_returns=r)[0] for b in inputs]
    order = range(r - 1, -1, -1) if descending else range(r)
    return bundles(run_tasks(reduce_fn, [(*reduce_args, *[p[j] for p in pieces]) for j in order]))


def _top_task(block, keys, desc, k):
    """The rows that can be among the first ``k`` of the sort: the top k and any ties with them."""
    import pyarrow.compute as pc
    B.check_columns(block, keys, "sort")
    if block.num_rows <= k or k == 0:
        return block.slice(0, k)
    order = [(c, "descending" if d else "ascending") for c, d in zip(keys, desc)]
    top = pc.select_k_unstable(block, k, order)
    edge = block.column(keys[0]).take(top).to_numpy(zero_copy_only=False)
    edge = edge.min() if desc[0] else edge.max()
    col = block.column(keys[0])
    keep = pc.greater_equal(col, edge) if desc[0] else pc.less_equal(col, edge)
    return block.filter(keep)


class sort:
    """Sort as a range-partitioned map-reduce; followed by a limit k, each block sends only its
    top k rows (and ties) to one merging task."""

    def __init__(self, keys: list, descending: list, limit=None):
        self.keys, self.descending, self.limit = keys, descending, limit

    def with_limit(self, k: int) -> "sort":
        return sort(self.keys, self.descending, k)

    def __call__(self, inputs, ctx, st):
        inputs = [b for b in inputs if b.meta.num_rows]
        if not inputs:
            return []
        if self.limit is not None:
            tops = run_tasks(_top_task, [(b.ref, self.keys, self.descending, self.limit)
                                         for b in inputs], num_returns=1)
            return bundles(run_tasks(_sort_reduce, [(self.keys, self.descending, *tops)]))
        return _range_partition(inputs, self.keys[0], len(inputs), _sort_reduce,
                                (self.keys, self.descending), descending=self.descending[0])


def map_groups(keys: list, fn, fmt: str):
    def run(inputs, ctx, st):
        inputs = [b for b in inputs if b.meta.num_rows]
        if not inputs:
            return []
        return _range_partition(inputs, keys[0], len(inputs), _groups_reduce, (keys, fn, fmt))
    return run


def merge_partials(keys: list, aggs: list):
    """The reduce of a group-by whose map side (``transforms.PartialAggregate``) ran fused into the
    upstream tasks: one task merges every block's states."""
    def run(inputs, ctx, st):
        return bundles(run_tasks(_final_task, [(keys, aggs, *[b.ref for b in inputs])]))
    return run


def zip_with(other_plan):
    """Zip with another dataset's plan, run when this stage runs (its blocks re-cut to ours)."""
    def run(inputs, ctx, st):
        other_bundles = list(execute(other_plan))
        n_self = sum(b.meta.num_rows for b in inputs)
        n_other = sum(b.meta.num_rows for b in other_bundles)
        if n_self != n_other:
            raise ValueError(f"zip: the datasets have {n_self} and {n_other} rows; zip needs equal "
                             "row counts.")
        cuts = list(np.cumsum([0] + [b.meta.num_rows for b in inputs]))
        aligned = gather(other_bundles, cuts)
        return bundles(run_tasks(_zip_task, [(a.ref, b.ref) for a, b in zip(inputs, aligned)]))
    return run


def empty_bundle() -> RefBundle:
    t = pa.table({})
    return RefBundle(miniray.put(t), BlockMeta(0, 0, t.schema))
