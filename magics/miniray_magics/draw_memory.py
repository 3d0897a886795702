"""Drawing a MemoryReport: store use against capacity per node, then the largest entries.

    MemoryReport ──► render_png() ──► PNG bytes

Top panel: one bar per node, shared-memory use in percent of the node's capacity (the grey
outline; a tiny use still shows as a sliver), spilled bytes hatched beyond it.  Bottom panel: the largest entries as horizontal bars split into
inline, shared and spilled bytes, labelled with call site and reference type.
"""
from __future__ import annotations

from miniray_magics.figures import LOCATION_COLOURS, fmt_bytes, new_figure, png_bytes, shorten
from miniray_magics.memory import LOCATIONS, MemoryReport

MIB = 1024 * 1024


def _style(location: str) -> dict:
    """Spilled bytes are hatched outlines; bytes in memory are solid."""
    if location == "spilled":
        return dict(facecolor="white", hatch="////", edgecolor=LOCATION_COLOURS["spilled"])
    return dict(facecolor=LOCATION_COLOURS[location], edgecolor="white")


def _bar_label(report: MemoryReport, entry) -> str:
    if report.by == "object":
        site = next(iter(entry.call_sites)) if len(entry.call_sites) == 1 else "several sites"
        return f"{entry.label} {shorten(site, 30)} · {entry.reference_text}"
    if report.by == "node":
        return f"node {entry.label} · {entry.count} objects"
    return f"{shorten(entry.label, 34)} · {entry.count} object{'s' * (entry.count != 1)}"


def render_png(report: MemoryReport) -> bytes:
    from matplotlib.patches import Patch

    shown = report.entries[: report.top]
    nodes = report.nodes or [{"node_id": "?", "capacity": report.capacity, "used": report.used,
                              "spilled": report.spilled}]
    fig = new_figure(10, 1.9 + 0.32 * len(nodes) + 0.36 * max(1, len(shown))
                     + 0.16 * len(report.reference_legend()))
    top, bottom = fig.subplots(2, 1, height_ratios=[0.5 + len(nodes), 1.2 * max(1, len(shown))])

    for i, node in enumerate(nodes):  # in percent of capacity, so a small use still shows
        capacity = node.get("capacity") or 0
        used, spilled = node.get("used") or 0, node.get("spilled") or 0
        share = 100.0 * used / capacity if capacity else 0.0
        top.barh(i, 100, color="white", edgecolor="#999999", height=0.6)
        top.barh(i, max(share, 0.6 if used else 0.0), color=LOCATION_COLOURS["shared_memory"],
                 height=0.6)
        if spilled:
            top.barh(i, 100.0 * spilled / capacity if capacity else 5.0, left=100, height=0.6,
                     **_style("spilled"))
        text = f"{fmt_bytes(used)} of {fmt_bytes(capacity)} ({share:.1f}%)"
        if spilled:
            text += f", {fmt_bytes(spilled)} spilled"
        top.text(101 + (100.0 * spilled / capacity if capacity and spilled else 0), i, text,
                 va="center", fontsize=8)
    top.set_yticks(range(len(nodes)), [f"node {str(n.get('node_id'))[:8]}" for n in nodes])
    top.invert_yaxis()
    top.set_xlim(0, 160)
    top.set_xticks([0, 25, 50, 75, 100])
    top.set_xlabel("% of the node's object store capacity")
    top.set_title(report.headline(), fontsize=10)

    left = [0.0] * len(shown)
    largest = max((e.size for e in shown), default=0) / MIB
    unit, scale = ("MiB", MIB) if largest >= 1 else ("KiB", 1024) if largest * 1024 >= 1 else ("bytes", 1)
    sliver = max((e.size for e in shown), default=0) / scale * 0.006  # a 5-byte object still shows
    for location in LOCATIONS:
        rows = [(i, max(entry.parts[location] / scale, sliver)) for i, entry in enumerate(shown)
                if entry.parts.get(location)]
        if rows:
            bottom.barh([i for i, _ in rows], [size for _, size in rows],
                        left=[left[i] for i, _ in rows], height=0.6, **_style(location))
            for i, size in rows:
                left[i] += size
    for i, entry in enumerate(shown):
        bottom.text(left[i], i, f" {fmt_bytes(entry.size)}", va="center", fontsize=8)
    bottom.set_yticks(range(len(shown)), [_bar_label(report, e) for e in shown], fontsize=8)
    bottom.invert_yaxis()
    bottom.set_xlim(0, max(left, default=0) * 1.2 or 1)
    bottom.set_xlabel(unit)
    more = len(report.entries) - len(shown)
    grouping = {"object": "objects", "node": "nodes", "callsite": "call sites"}[report.by]
    bottom.set_title(f"largest {grouping}" + (f" ({more} more not shown)" if more > 0 else "")
                     if shown else "no live objects", fontsize=10)
    handles = [Patch(label=loc.replace("_", " "), **_style(loc)) for loc in LOCATIONS]
    bottom.legend(handles=handles, loc="lower right", fontsize=8, frameon=False)
    legend = report.reference_legend()
    if legend:
        fig.supxlabel("\n".join(f"{t}: {m}" for t, m in legend.items()), fontsize=8, x=0.01,
                      ha="left", color="#333333")
    for ax in (top, bottom):
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return png_bytes(fig)
