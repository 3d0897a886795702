"""One text progress bar per operator, drawn on stderr; never floods a log.

On a terminal (or in Jupyter, which honours carriage returns) each operator's line is redrawn in place
at most every 0.2 s.  Elsewhere (a log file, CI) nothing is printed until the operator finishes, then
one line.  ``DataContext.get_current().enable_progress_bars = False`` turns them all off.
"""
from __future__ import annotations

import sys
import time

REDRAW = 0.2


def _interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Bar:
    def __init__(self, name: str, total: int | None, enabled: bool):
        self.name, self.total, self.enabled = name, total, enabled
        self.done = self.rows = 0
        self.started = time.perf_counter()
        self._drawn = 0.0
        self._live = enabled and _interactive()

    def update(self, blocks: int, rows: int) -> None:
        self.done += blocks
        self.rows += rows
        if self._live and time.perf_counter() - self._drawn > REDRAW:
            self._draw("\r")

    def _line(self) -> str:
        total = "?" if self.total is None else self.total
        return (f"- {self.name}: {self.done}/{total} blocks, {self.rows:,} rows, "
                f"{time.perf_counter() - self.started:.2f} s")

    def _draw(self, lead: str, end: str = "") -> None:
        self._drawn = time.perf_counter()
        try:
            sys.stderr.write(lead + self._line() + end)
            sys.stderr.flush()
        except (OSError, ValueError):
            self.enabled = self._live = False

    def close(self) -> None:
        if self.enabled:
            self._draw("\r" if self._live else "", "\n")
            self.enabled = False
