"""``DataContext``: the knobs of miniray.data, one object per process (``DataContext.get_current()``).

The driver's context travels with each dataset's plan (a copy is taken when the dataset is built), so
tasks and actors see the settings the dataset was made with.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

_lock = threading.Lock()
_current = None


@dataclass
class DataContext:
    """Settings read by the planner and the streaming executor.

    target_max_block_size:  bytes a created block aims not to exceed (readers and ``range`` split by it).
    target_min_rows_per_block: below this many rows a creator does not split data for parallelism
        (a task costs ~1 ms; many tiny blocks cost more than they save).
    max_bytes_in_flight:    backpressure budget, bytes of blocks produced but not yet consumed, over
        all operators of one execution; None: half the object store.
    max_tasks_in_flight_per_cpu: tasks an operator keeps queued per CPU of the cluster.
    enable_progress_bars:   one text bar per operator on stderr (a widget in Jupyter).
    execution_options.preserve_order: kept for Ray compatibility; miniray always keeps order.
    """
    target_max_block_size: int = 128 * 1024 * 1024
    target_min_rows_per_block: int = 100_000
    max_bytes_in_flight: int | None = None
    max_tasks_in_flight_per_cpu: int = 2
    enable_progress_bars: bool = True
    verbose_stats_logs: bool = False
    use_push_based_shuffle: bool = False
    execution_options: "ExecutionOptions" = field(default_factory=lambda: ExecutionOptions())

    @staticmethod
    def get_current() -> "DataContext":
        """The process's context (made on first use); change its attributes to tune execution."""
        global _current
        with _lock:
            if _current is None:
                _current = DataContext()
            return _current

    @staticmethod
    def _set_current(ctx: "DataContext") -> None:
        global _current
        with _lock:
            _current = ctx

    def copy(self) -> "DataContext":
        return copy.deepcopy(self)


@dataclass
class ExecutionOptions:
    preserve_order: bool = True
    verbose_progress: bool = False
    locality_with_output: bool = False


class ActorPoolStrategy:
    """Ray 2.x's ``compute=ActorPoolStrategy(size=n)`` or ``(min_size=, max_size=)``; the newer
    spelling is ``concurrency=n`` or ``(min, max)``."""

    def __init__(self, *, size=None, min_size=None, max_size=None, max_tasks_in_flight_per_actor=None):
        if size is not None:
            min_size = max_size = size
        self.min_size, self.max_size = min_size or 1, max_size

    def concurrency(self):
        return (self.min_size, self.max_size) if self.max_size else (self.min_size, None)


class TaskPoolStrategy:
    """``compute=TaskPoolStrategy()``: plain tasks (the default for functions)."""

    def __init__(self, size=None):
        self.size = size
