"""Progress for long waits: ``miniray.get(refs, progress=True)`` calls :func:`track` first.

    get(refs, progress=True) ──► track(refs, wait) ──► loop: wait(pending, timeout=tick)
                                                            └─► bar.advance(newly ready)
                                  bar = WidgetBar  (a Jupyter kernel with ipywidgets)
                                      | TextBar    (tqdm on stderr, everywhere else)

Runs in the caller's thread and blocks until every ref is ready (finished or failed: errors are
left for ``get`` to raise).  It writes nothing but the bar: the widget in a notebook, tqdm's line on
stderr elsewhere.  It needs only ``wait(refs, num_returns=..., timeout=...)``, so tests hand it a
fake.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

TICK = 0.1  # seconds between bar updates


def track(refs: list, wait: Callable[..., tuple[list, list]], timeout: float | None = None,
          desc: str = "miniray.get") -> None:
    """Block until all ``refs`` are ready (or ``timeout`` passes), showing a progress bar."""
    pending = _unique(refs)
    bar = _make_bar(len(pending), desc)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        # Main loop: ask for everything, accept what is ready after one tick.
        while pending:
            tick = TICK if deadline is None else max(0.0, min(TICK, deadline - time.monotonic()))
            ready, pending = wait(pending, num_returns=len(pending), timeout=tick)
            bar.advance(len(ready))
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        bar.close(done=not pending)


def _unique(refs: list) -> list:
    """The refs once each, in order (``wait`` may refuse duplicates)."""
    try:
        return list(dict.fromkeys(refs))
    except TypeError:  # unhashable refs: keep them as given
        return list(refs)


def _make_bar(total: int, desc: str):
    if _in_widget_kernel():
        try:
            return WidgetBar(total, desc)
        except Exception:  # widgets broken in this kernel: fall back to text
            pass
    return TextBar(total, desc)


def _in_widget_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class TextBar:
    """tqdm on stderr."""

    def __init__(self, total: int, desc: str):
        from tqdm.std import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="obj", file=sys.stderr, leave=True,
                         dynamic_ncols=True)

    def advance(self, n: int) -> None:
        if n:
            self._bar.update(n)

    def close(self, done: bool) -> None:
        self._bar.close()


class WidgetBar:
    """An ipywidgets progress bar with a count, green when everything is ready."""

    def __init__(self, total: int, desc: str):
        import ipywidgets as w
        from IPython.display import display

        self.total, self.count, self.start = total, 0, time.monotonic()
        self._bar = w.IntProgress(value=0, min=0, max=max(1, total), bar_style="info")
        self._label = w.Label(self._text())
        self._box = w.HBox([w.Label(desc), self._bar, self._label])
        display(self._box)

    def _text(self, done: bool = False) -> str:
        text = f"{self.count} / {self.total} ready"
        return text + f" in {time.monotonic() - self.start:.1f} s" if done else text

    def advance(self, n: int) -> None:
        if n:
            self.count += n
            self._bar.value = self.count
            self._label.value = self._text()

    def close(self, done: bool) -> None:
        self._bar.bar_style = "success" if done else "warning"
        self._label.value = self._text(done=True)
