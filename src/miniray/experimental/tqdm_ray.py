"""``tqdm`` that works inside tasks: each worker's bar prints to the driver's terminal (stderr).

Workers share the driver's terminal (their stderr is inherited), so a plain text bar written with
carriage returns is visible; this class keeps tqdm's calling conventions (``total``, ``desc``,
``update``, ``close``, iteration) and falls back to a minimal bar when tqdm is not installed.
"""
from __future__ import annotations

import sys

try:
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover - tqdm is an optional dependency
    _tqdm = None


class tqdm:  # noqa: N801 - the name users import
    def __init__(self, iterable=None, desc=None, total=None, position=None, **kwargs):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.total, self.n = iterable, desc or "", total, 0
        self._bar = _tqdm(total=total, desc=desc, file=sys.stderr, mininterval=0.5, **kwargs) if _tqdm else None

    def update(self, n=1):
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        else:
            sys.stderr.write(f"\r{self.desc} {self.n}/{self.total or '?'}")

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def close(self):
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
