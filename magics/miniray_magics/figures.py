"""Shared figure plumbing: Agg-only matplotlib figures, PNG bytes, colours and byte sizes.

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas, never through pyplot, so no
GUI backend is touched and the notebook's inline backend never shows a figure twice.  Every picture
the magics make goes through :func:`png_bytes`.
"""
from __future__ import annotations

import io
import os
import re

STATE_COLOURS = {
    "FINISHED": "#59a14f",   # green
    "FAILED": "#e15759",     # red
    "RUNNING": "#f28e2b",    # orange
    "PENDING": "#bab0ac",    # grey
    "CANCELLED": "#b07aa1",  # purple
    "READY": "#76b7d6",      # light blue: objects (puts, inputs)
}
LOCATION_COLOURS = {"inline": "#9c755f", "shared_memory": "#4e79a7", "spilled": "#e15759"}
# No pure red in the cycle: red means "failed" everywhere.
CYCLE = ("#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
         "#9c755f", "#1f77b4", "#8c564b", "#17becf", "#bcbd22", "#bab0ac")


def new_figure(width: float, height: float):
    """A figure of ``width`` × ``height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def colour_cycle(names) -> dict:
    """A stable colour for each name, in the order given."""
    return {name: CYCLE[i % len(CYCLE)] for i, name in enumerate(names)}


def fmt_bytes(size: float | int | None) -> str:
    if size is None:
        return "?"
    size = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def save_png(data: bytes, filename: str) -> str:
    """Write PNG bytes to ``filename``, creating its folder; returns the path written."""
    folder = os.path.dirname(os.path.abspath(filename))
    os.makedirs(folder, exist_ok=True)
    with open(filename, "wb") as f:
        f.write(data)
    return filename


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def short_actor_id(actor_id) -> str:
    """Six characters that tell actors apart.  A miniray actor id is "a", the session's 10-hex
    prefix, then an 11-hex counter, so every actor of a session shares its head: show the tail.
    Other ids (Ray's are random throughout) show their head."""
    text = str(actor_id)
    if re.fullmatch(r"a[0-9a-f]{21}", text):
        return text[-6:]
    return text[:6]


def natural_key(text) -> list:
    """Sort ``w2`` before ``w10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]
