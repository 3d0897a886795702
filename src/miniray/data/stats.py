"""``ds.stats()``: rows, bytes, tasks, wall and CPU time per operator of the last execution.

The executor owns one ``OpStats`` per physical operator and feeds it each block's ``BlockMeta``
(measured inside the task that made the block); ``DatasetStats.to_string`` renders the report.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class BlockMeta:
    """What a task reports about the block it made (small; travels inline)."""
    num_rows: int
    size_bytes: int
    schema: object = None
    wall_s: float = 0.0
    cpu_s: float = 0.0


@dataclass
class OpStats:
    name: str
    tasks: int = 0
    blocks: int = 0
    rows: int = 0
    bytes: int = 0
    task_wall_s: float = 0.0
    cpu_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    actors: int = 0

    def add(self, meta: BlockMeta, tasks: int = 1) -> None:
        self.tasks += tasks
        self.blocks += 1
        self.rows += meta.num_rows
        self.bytes += meta.size_bytes
        self.task_wall_s += meta.wall_s
        self.cpu_s += meta.cpu_s

    def finish(self) -> None:
        if self.finished is None:
            self.finished = time.perf_counter()

    @property
    def wall_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.started


class DatasetStats:
    def __init__(self):
        self.ops: list[OpStats] = []
        self.started = time.perf_counter()
        self.finished: float | None = None

    def op(self, name: str) -> OpStats:
        s = OpStats(name)
        self.ops.append(s)
        return s

    def to_string(self) -> str:
        if not self.ops:
            return ""
        lines = []
        for i, s in enumerate(self.ops):
            extra = f", {s.actors} actors" if s.actors else ""
            lines.append(f"Operator {i} {s.name}: {s.tasks} tasks{extra}, {s.blocks} blocks, "
                         f"{s.rows:,} rows, {s.bytes / 2**20:,.2f} MiB out")
            lines.append(f"* wall time {s.wall_s:.3f} s (operator), {s.task_wall_s:.3f} s summed over "
                         f"tasks; CPU time {s.cpu_s:.3f} s")
        total = (self.finished or time.perf_counter()) - self.started
        lines.append(f"Dataset total wall time {total:.3f} s")
        return "\n".join(lines)
