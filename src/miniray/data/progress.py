"""One progress bar per operator: a widget in Jupyter, a text line elsewhere; never floods a log.

    Execution builds a stage ──► make_bar(name, total, enabled) ──► WidgetBar | TextBar | off
    each block out of the stage ──► bar.update(1, rows)   (redrawn at most every REDRAW s)
    the run ends (or is abandoned) ──► bar.close()        (final count, time; green when done)

In a Jupyter kernel with ipywidgets (told apart as ``miniray.get(progress=True)`` does: IPython is
loaded, its shell has a kernel, ipywidgets imports) each operator
gets one row: its name, an ``IntProgress`` and a count of blocks and rows, updated in place, so a
notebook's output holds one widget per operator and no text.  On a terminal each operator's line is
redrawn in place on stderr.  Elsewhere (a log file, CI, a kernel without widgets) nothing is printed
until the operator finishes, then one line.  ``DataContext.get_current().enable_progress_bars =
False`` turns them all off.
"""
from __future__ import annotations

import sys
import time

REDRAW = 0.2  # seconds between two redraws of one bar


def make_bar(name: str, total: int | None, enabled: bool):
    """The bar for one operator: a widget in a Jupyter kernel, text elsewhere."""
    if enabled and _in_widget_kernel():
        try:
            return WidgetBar(name, total)
        except Exception:  # widgets broken in this kernel: fall back to text
            pass
    return TextBar(name, total, enabled)


def _in_widget_kernel() -> bool:
    ipython = sys.modules.get("IPython")   # never imported here: a plain script stays light
    if ipython is None or getattr(ipython.get_ipython(), "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _interactive() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _Counts:
    """What every bar counts: blocks and rows done since the operator started."""

    def __init__(self, name: str, total: int | None):
        self.name, self.total = name, total
        self.done = self.rows = 0
        self.started = time.perf_counter()
        self._drawn = 0.0

    def _counts(self) -> str:
        total = "?" if self.total is None else self.total
        return (f"{self.done}/{total} blocks, {self.rows:,} rows, "
                f"{time.perf_counter() - self.started:.2f} s")

    def _due(self) -> bool:
        now = time.perf_counter()
        if now - self._drawn > REDRAW:
            self._drawn = now
            return True
        return False


class TextBar(_Counts):
    """``- ReadCSV->Map(f): 3/8 blocks, 12,000 rows, 0.41 s`` on stderr."""

    def __init__(self, name: str, total: int | None, enabled: bool):
        super().__init__(name, total)
        self.enabled = enabled
        self._live = enabled and _interactive()

    def update(self, blocks: int, rows: int) -> None:
        self.done += blocks
        self.rows += rows
        if self._live and self._due():
            self._draw("\r")

    def _line(self) -> str:
        return f"- {self.name}: {self._counts()}"

    def _draw(self, lead: str, end: str = "") -> None:
        try:
            sys.stderr.write(lead + self._line() + end)
            sys.stderr.flush()
        except (OSError, ValueError):
            self.enabled = self._live = False

    def close(self) -> None:
        if self.enabled:
            self._draw("\r" if self._live else "", "\n")
            self.enabled = False


class WidgetBar(_Counts):
    """An ipywidgets row: the operator's name, a bar of blocks, the counts; green when finished."""

    def __init__(self, name: str, total: int | None):
        import ipywidgets as w
        from IPython.display import display

        super().__init__(name, total)
        self._bar = w.IntProgress(value=0, min=0, max=max(1, total or 1), bar_style="info")
        self._label = w.Label(self._counts())
        name_label = w.Label(name, layout=w.Layout(min_width="16em"))
        self._box = w.HBox([name_label, self._bar, self._label])
        self.enabled = True
        display(self._box)

    def update(self, blocks: int, rows: int) -> None:
        self.done += blocks
        self.rows += rows
        if self.enabled and self._due():
            self._show()

    def _show(self) -> None:
        # An unknown total grows with the blocks seen, one ahead, until the operator finishes.
        self._bar.max = max(1, self.total if self.total is not None else self.done + 1)
        self._bar.value = min(self.done, self._bar.max)
        self._label.value = self._counts()

    def close(self) -> None:
        if self.enabled:
            self.enabled = False
            finished = self.total is None or self.done >= self.total  # else: a consumer stopped early
            if self.total is None:
                self.total = self.done
            self._show()
            self._bar.bar_style = "success" if finished else "warning"
