"""Drawing a TimelineData as a Gantt chart PNG: one row per worker and actor, bars per task.

    TimelineData ──► render_png() ──► PNG bytes

Bars are coloured by function, failed ones hatched with a red edge, running ones dotted; bars on
the critical path get a black outline.  Each row has a pale band behind it so idle gaps show as
band without bars, and its busy share printed at the right.  The caption under the chart states
utilisation and the critical path.  Bars are drawn with one ``broken_barh`` per row and function,
so ten thousand tasks draw as fast as ten.
"""
from __future__ import annotations

import textwrap
from collections import defaultdict

from miniray_magics.figures import STATE_COLOURS, colour_cycle, new_figure, png_bytes
from miniray_magics.timeline import TimelineData

MAX_LEGEND = 12


def render_png(data: TimelineData, title: str = "timeline") -> bytes:
    from matplotlib.patches import Patch

    caption = "\n".join(textwrap.wrap(data.caption(), 105))
    rows = data.rows or ["(no workers)"]
    height = 1.7 + 0.5 * len(rows) + 0.2 * caption.count("\n")
    fig = new_figure(11, height)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(bar.name for bar in sorted(data.bars, key=lambda b: b.start)))
    colours = colour_cycle(names)
    y_of = {row: len(rows) - 1 - i for i, row in enumerate(rows)}
    span = data.span or 1.0

    for row, y in y_of.items():
        ax.axhspan(y - 0.4, y + 0.4, color="#f1f1f1", zorder=0)
    thin = span * 0.01
    groups = defaultdict(list)
    for bar in data.bars:  # bars too thin to see get a minimum width and no white edge
        groups[(bar.row, bar.name, bar.state, bar.duration < thin)].append(
            (bar.start - data.t0, max(bar.duration, span * 0.003)))
    for (row, name, state, is_thin), spans in groups.items():
        if state == "FAILED":
            style = dict(hatch="////", edgecolor=STATE_COLOURS["FAILED"], linewidth=1.2)
        elif state == "RUNNING":
            style = dict(hatch="..", edgecolor="#333333", linewidth=0.6)
        elif state == "CANCELLED":
            style = dict(hatch="xx", edgecolor=STATE_COLOURS["CANCELLED"], linewidth=0.8)
        else:
            style = dict(edgecolor="none" if is_thin else "white", linewidth=0 if is_thin else 0.5)
        ax.broken_barh(spans, (y_of[row] - 0.32, 0.64), facecolors=colours[name], zorder=2,
                       **style)
    for bar in data.critical:
        ax.broken_barh([(bar.start - data.t0, bar.duration)], (y_of[bar.row] - 0.32, 0.64),
                       facecolors="none", edgecolor="black", linewidth=1.6, zorder=3)
    _label_bars(ax, fig, data, y_of, span)

    ax.set_yticks(list(y_of.values()), list(y_of.keys()))
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(0, span * 1.08)
    ax.set_xlabel("seconds since the first task started")
    for row, y in y_of.items():
        share = data.row_busy(row) / span if data.span else 0.0
        ax.text(span * 1.01, y, f"{share:.0%}", va="center", fontsize=10, color="#555555")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=11)
    handles = [Patch(facecolor=colours[n], label=n) for n in names[:MAX_LEGEND]]
    if len(names) > MAX_LEGEND:
        handles.append(Patch(facecolor="white", label=f"… {len(names) - MAX_LEGEND} more"))
    states = {bar.state for bar in data.bars}
    if "FAILED" in states:
        handles.append(Patch(facecolor="white", hatch="////", edgecolor=STATE_COLOURS["FAILED"],
                             label="failed"))
    if "RUNNING" in states:
        handles.append(Patch(facecolor="white", hatch="..", edgecolor="#333333", label="running"))
    if data.critical:
        handles.append(Patch(facecolor="none", edgecolor="black", linewidth=1.6,
                             label="critical path"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.04, 1.0), frameon=False,
                  fontsize=10)
    ax.tick_params(labelsize=10)
    fig.supxlabel(caption, fontsize=10, x=0.01, ha="left", color="#333333")
    return png_bytes(fig)


def _label_bars(ax, fig, data: TimelineData, y_of: dict, span: float) -> None:
    """Write each bar's label inside it when there are few bars and the label fits."""
    if len(data.bars) > 60:
        return
    inches_per_second = 8.5 / (span * 1.08)
    for bar in data.bars:  # 10 pt: readable from the back of a room once projected
        if bar.duration * inches_per_second > 0.085 * len(bar.label) + 0.1:
            ax.text(bar.start - data.t0 + bar.duration / 2, y_of[bar.row], bar.label,
                    ha="center", va="center", fontsize=10, color="white", zorder=4,
                    clip_on=True, fontweight="bold")
