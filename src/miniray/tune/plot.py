"""Learning curves of a Tune run as a PNG: every trial's metric over training_iteration.

    ResultGrid (miniray's or Ray's) ──curves_of──► [Curve] ──TunePlot──► _repr_png_ (Agg, no pyplot)

Marks: x where a scheduler stopped a trial early, o where PBT made a trial copy another (from the
trial's own record, or from ``pbt_global.txt`` in the experiment dir, the file Ray writes too), the
best trial drawn thick.  Duck-typed on ``result.metrics_dataframe``, ``result.path`` and
``result.error`` so ``%tune`` draws real Ray's results too.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field

from miniray.tune.utils import flat

COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#1f77b4", "#8c564b", "#17becf", "#bcbd22")


@dataclass
class Curve:
    name: str
    x: list
    y: list
    stopped_early: bool = False
    failed: bool = False
    exploits: list = field(default_factory=list)   # training iterations where it copied another


def _pbt_exploits(experiment_path: str | None) -> dict:
    """{trial dir tag: [iterations]} from pbt_global.txt."""
    out: dict = {}
    if not experiment_path:
        return out
    try:
        with open(os.path.join(experiment_path, "pbt_global.txt")) as f:
            for line in f:
                entry = json.loads(line)
                out.setdefault(str(entry[0]), []).append(entry[2])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _rows(result) -> list[dict]:
    """A result's reports as dicts: miniray keeps them (no pandas needed); Ray's come as a frame."""
    rows = getattr(result, "history", None) or getattr(result, "_rows", None)
    if rows is not None:
        return [flat(r) for r in rows]
    df = result.metrics_dataframe
    return [] if df is None else df.to_dict("records")


def curves_of(grid, metric: str) -> list[Curve]:
    curves = []
    tags = _pbt_exploits(getattr(grid, "experiment_path", None))
    for result in grid:
        rows = _rows(result)
        rows = [r for r in rows if r.get(metric) is not None]
        if not rows:
            continue
        y = [float(r[metric]) for r in rows]
        x = [float(r.get("training_iteration", i + 1)) for i, r in enumerate(rows)]
        path = str(getattr(result, "path", "") or "")
        name = os.path.basename(path) or getattr(result, "trial_id", "trial")
        exploits = [e["iteration"] for e in getattr(result, "exploits", [])]
        if not exploits:
            for tag, iterations in tags.items():
                if f"_{tag}_" in name or name.endswith(tag):
                    exploits = iterations
        stopped = getattr(result, "stopped_early", None)
        curves.append(Curve(name, x, y, bool(stopped), getattr(result, "error", None) is not None,
                            exploits))
    if curves and not any(hasattr(r, "stopped_early") for r in grid):
        longest = max(max(c.x) for c in curves)       # Ray's results: infer early stops
        for c in curves:
            c.stopped_early = not c.failed and max(c.x) < longest
    return curves


def _segments(x: list, y: list) -> list[tuple[list, list]]:
    """Split a curve where its iteration goes back (a trial restored from a checkpoint)."""
    out, start = [], 0
    for i in range(1, len(x)):
        if x[i] <= x[i - 1]:
            out.append((x[start:i], y[start:i]))
            start = i
    out.append((x[start:], y[start:]))
    return out


DEFAULT_FIGSIZE = (7.5, 4.0)    # inches at 100 dpi: 750 x 400 pixels


class TunePlot:
    def __init__(self, curves: list[Curve], metric: str, mode: str | None, title: str,
                 figsize: tuple[float, float] | None = None):
        self.curves, self.metric, self.mode, self.title = curves, metric, mode, title
        self.figsize = _check_figsize(figsize) if figsize is not None else DEFAULT_FIGSIZE

    @property
    def best(self) -> Curve | None:
        if not self.curves or not self.mode:
            return None
        pick = max if self.mode == "max" else min
        return pick(self.curves, key=lambda c: c.y[-1])

    def summary(self) -> str:
        stopped = sum(c.stopped_early for c in self.curves)
        exploited = sum(len(c.exploits) for c in self.curves)
        best = self.best
        text = f"{len(self.curves)} trials, {stopped} stopped early"
        if exploited:
            text += f", {exploited} exploits"
        if best is not None:
            text += f"; best {self.metric}={best.y[-1]:.4g}"
        return text

    def figure(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=self.figsize, dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        best = self.best
        for i, c in enumerate(self.curves):
            colour = COLOURS[i % len(COLOURS)]
            width, alpha = (2.8, 1.0) if c is best else (1.0, 0.65)
            segments = _segments(c.x, c.y)
            for xs, ys in segments:
                ax.plot(xs, ys, color=colour, linewidth=width, alpha=alpha,
                        marker="." if len(xs) < 3 else None)
            if c.stopped_early:
                ax.plot([c.x[-1]], [c.y[-1]], marker="x", color="#e15759", markersize=6,
                        linestyle="none")
            # A PBT exploit restarts the curve from the donor's checkpoint: mark where each
            # restarted segment begins (or, with no restart in the data, the exploit's iteration).
            marks = [(xs[0], ys[0]) for xs, ys in segments[1:]] if len(segments) > 1 else \
                [(it, c.y[c.x.index(it)]) for it in c.exploits if it in c.x]
            for mx, my in marks:
                ax.plot([mx], [my], marker="o", markerfacecolor="none", color="black",
                        markersize=6, linestyle="none")
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color="#e15759", marker="x", linestyle="none",
                          label="stopped early")]
        if any(c.exploits for c in self.curves):
            handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="none",
                                  linestyle="none", label="PBT exploit"))
        if best is not None:
            handles.append(Line2D([], [], color="grey", linewidth=2.8, label="best trial"))
        ax.legend(handles=handles, loc="best", fontsize=8)
        ax.set_xlabel("training_iteration")
        ax.set_ylabel(self.metric)
        ax.set_title(f"{self.title}: {self.summary()}", fontsize=10)
        ax.grid(alpha=0.3)
        return fig

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", facecolor="white")
        return buffer.getvalue()

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(f"TunePlot({self.metric}): {self.summary()}")

    def save(self, filename: str) -> str:
        with open(filename, "wb") as f:
            f.write(self._repr_png_())
        return filename


def _check_figsize(figsize) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in figsize)
    except (TypeError, ValueError):
        raise ValueError(f"figsize={figsize!r}: give (width, height) in inches, e.g. "
                         "figsize=(6, 3)") from None
    if not (0 < width <= 40 and 0 < height <= 40):
        raise ValueError(f"figsize={figsize!r}: width and height must be between 0 and 40 inches")
    return width, height


def plot_results(grid, metric: str | None = None, mode: str | None = None,
                 title: str | None = None, figsize: tuple[float, float] | None = None) -> TunePlot:
    """A TunePlot of ``grid`` (shows itself as a PNG in a notebook), ``figsize`` inches at 100 dpi
    (default 7.5 × 4)."""
    metric = metric or getattr(grid, "_metric", None)
    if not metric:
        raise ValueError("plot needs a metric: plot(metric='loss') or TuneConfig(metric=...)")
    curves = curves_of(grid, metric)
    if not curves:
        raise ValueError(f"No trial reported {metric!r}, so there is nothing to draw")
    name = os.path.basename(str(getattr(grid, "experiment_path", "") or "")) or "Tune"
    return TunePlot(curves, metric, mode or getattr(grid, "_mode", None), title or name, figsize)


class _DiskResult:
    def __init__(self, path: str, rows: list[dict], error: bool):
        self.path, self._rows, self.error = path, rows, (RuntimeError("failed") if error else None)

    @property
    def metrics_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self._rows)


class ExperimentOnDisk:
    """An experiment directory (miniray's or Ray's) read back as a grid of results to draw."""

    def __init__(self, path: str):
        from miniray.tune.storage import read_results

        path = os.path.abspath(os.path.expanduser(path))
        self.experiment_path = path
        self.results = []
        for name in sorted(os.listdir(path)):
            trial = os.path.join(path, name)
            if os.path.isfile(os.path.join(trial, "result.json")):
                self.results.append(_DiskResult(trial, read_results(trial),
                                                os.path.exists(os.path.join(trial, "error.txt"))))
        if not self.results:
            raise ValueError(f"{path!r} holds no trial directories with a result.json: give the "
                             "experiment directory (storage_path/name)")

    def __iter__(self):
        return iter(self.results)

    def __len__(self):
        return len(self.results)
