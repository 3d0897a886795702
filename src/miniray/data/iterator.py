"""Iterating: ``DataIterator`` (batches, rows, torch batches) and ``streaming_split``.

    blocks (pa.Table, zero-copy views of the store) ──rebatch to batch_size──► [local shuffle buffer]
        ──► to_batch(batch_format) ──► user

``streaming_split(n)`` runs one execution inside a coordinator actor; each of the n iterators asks it
for the next block (first come, first served), so n training workers in other processes share one
stream.  When every iterator has seen the end, the next epoch starts a fresh execution.
"""
from __future__ import annotations

import numpy as np

import miniray
from miniray.data import block as B


def rebatch(blocks, batch_size, drop_last=False, shuffle_buffer=None, seed=None):
    """Tables of exactly ``batch_size`` rows (the last may be short unless ``drop_last``)."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r}: give a positive int, or None for whole blocks.")
    if shuffle_buffer:
        yield from _shuffled(blocks, batch_size or 256, shuffle_buffer, drop_last, seed)
        return
    buf, n = [], 0
    for blk in blocks:
        if batch_size is None:
            if blk.num_rows:
                yield blk
            continue
        buf.append(blk)
        n += blk.num_rows
        while n >= batch_size:
            t = B.concat(buf)
            yield t.slice(0, batch_size)
            rest = t.slice(batch_size)
            buf, n = [rest], rest.num_rows
    if n and not drop_last:
        yield B.concat(buf)


def _shuffled(blocks, batch_size, buffer_size, drop_last, seed):
    rng = np.random.default_rng(seed)
    buf = None
    for blk in blocks:
        buf = blk if buf is None else B.concat([buf, blk])
        while buf.num_rows >= buffer_size + batch_size:
            buf = buf.take(rng.permutation(buf.num_rows))
            yield buf.slice(0, batch_size)
            buf = buf.slice(batch_size)
    if buf is not None and buf.num_rows:
        buf = buf.take(rng.permutation(buf.num_rows))
        for s in range(0, buf.num_rows, batch_size):
            piece = buf.slice(s, batch_size)
            if piece.num_rows == batch_size or not drop_last:
                yield piece


class DataIterator:
    """What ``ds.iterator()`` and ``ds.streaming_split(n)`` return; picklable when it is a split."""

    def __init__(self, make_blocks, ds=None):
        self._make_blocks, self._ds = make_blocks, ds

    def iter_batches(self, *, prefetch_batches=1, batch_size=256, batch_format="default",
                     drop_last=False, local_shuffle_buffer_size=None, local_shuffle_seed=None, **_):
        fmt = B.check_batch_format(batch_format)
        for t in rebatch(self._make_blocks(), batch_size, drop_last, local_shuffle_buffer_size,
                         local_shuffle_seed):
            yield B.to_batch(t, fmt)

    def iter_rows(self):
        for blk in self._make_blocks():
            yield from B.to_rows(blk)

    def iter_torch_batches(self, *, batch_size=256, dtypes=None, device="cpu", drop_last=False,
                           local_shuffle_buffer_size=None, local_shuffle_seed=None, **_):
        try:
            import torch
        except ImportError as e:
            raise ImportError("iter_torch_batches needs PyTorch (pip install torch); "
                              "iter_batches() gives numpy batches without it.") from e
        for batch in self.iter_batches(batch_size=batch_size, drop_last=drop_last,
                                       local_shuffle_buffer_size=local_shuffle_buffer_size,
                                       local_shuffle_seed=local_shuffle_seed):
            yield {k: torch.as_tensor(v, dtype=(dtypes or {}).get(k) if isinstance(dtypes, dict)
                                      else dtypes, device=device) for k, v in batch.items()}

    def materialize(self):
        from miniray.data.read_api import from_arrow
        return from_arrow(list(self._make_blocks()))

    def stats(self) -> str:
        return self._ds.stats() if self._ds is not None else ""

    def __repr__(self):
        return "DataIterator()"


class _SplitCoordinator:
    """Actor: owns the streaming execution that n split iterators share."""

    def __init__(self, ds, n):
        import threading
        self.ds, self.n = ds, n
        self.stream, self.finished = None, set()
        self.lock = threading.Lock()

    def next_block(self, i):
        with self.lock:
            return self._next(i)

    def _next(self, i):
        from miniray.data.executor import execute
        if self.stream is None:
            self.stream, self.finished = execute(self.ds._plan, self.ds), set()
        if i in self.finished:
            return None
        try:
            b = next(self.stream)
        except StopIteration:
            self.finished.add(i)
            if len(self.finished) == self.n:
                self.stream = None
            return None
        return [b.ref]


class _SplitBlocks:
    def __init__(self, coord, i):
        self.coord, self.i = coord, i

    def __call__(self):
        while True:
            got = miniray.get(self.coord.next_block.remote(self.i))
            if got is None:
                return
            yield miniray.get(got[0])


def streaming_split(ds, n, equal=False) -> list:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"streaming_split({n!r}): give a number of splits >= 1.")
    # A threaded actor (calls serialised by its lock): a single-threaded one that waits on its own
    # tasks inside a call stalls the other callers' calls in this runtime.
    coord = miniray.remote(_SplitCoordinator).options(max_concurrency=n + 1).remote(ds, n)
    return [DataIterator(_SplitBlocks(coord, i)) for i in range(n)]


def _convert(block, fmt, column):
    if fmt == "pandas":
        return B.to_pandas(block)
    batch = B.to_batch(block, "numpy")
    return batch[column] if column is not None else batch


def convert_refs(bundles, fmt, column=None) -> list:
    fn = miniray.remote(_convert)
    return [fn.remote(b.ref, fmt, column) for b in bundles]
