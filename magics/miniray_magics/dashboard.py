"""The live dashboard: task counts, a worker strip and a store gauge, refreshed from a thread.

    miniray.events.events(seq) ─► DashboardState.apply() ─► DashboardPanel (ipywidgets VBox)
    memory_summary() ─────────────► DashboardState.store     └─► text snapshot (terminals, nbconvert)
                 ▲
                 └── Dashboard thread "miniray-dashboard": polls every ``interval`` seconds

Who runs where: the magic creates a :class:`Dashboard` in the kernel's main thread and returns at
once; the daemon thread reads new events, folds them into the state and sets widget values (ipywidgets
sends the changes to the browser).  The thread only reads the runtime through the ``source`` object
(:mod:`miniray_magics.source`); it stops on ``stop()``, or by itself once the runtime shuts down.

State owned: one :class:`DashboardState`, written only by the thread after ``start()``.
"""
from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field

from miniray_magics.figures import fmt_bytes, natural_key, short_actor_id

BUCKETS = ("pending", "running", "finished", "failed")
BAR_STYLE = {"pending": "info", "running": "warning", "finished": "success", "failed": "danger"}


@dataclass
class DashboardState:
    """Counts folded from events: each task's state and what each worker is running."""

    tasks: dict[str, str] = field(default_factory=dict)        # task id -> bucket
    running_on: dict[str, str] = field(default_factory=dict)   # task id -> worker label
    workers: set[str] = field(default_factory=set)
    store_used: int = 0
    store_capacity: int | None = 0   # None: the store could not be read
    store_spilled: int = 0
    stopped: str | None = None

    def apply(self, events) -> None:
        for event in events:
            kind = event["kind"]
            if kind == "submitted":
                self.tasks.setdefault(event["task_id"], "pending")
            elif kind == "started":
                worker = (f"actor {short_actor_id(event['actor_id'])}" if event.get("actor_id")
                          else str(event.get("worker_id")))
                self.tasks[event["task_id"]] = "running"
                self.running_on[event["task_id"]] = worker
                self.workers.add(worker)
            elif kind == "finished":
                ok = event.get("state", "FINISHED") == "FINISHED"
                self.tasks[event["task_id"]] = "finished" if ok else "failed"
                self.running_on.pop(event["task_id"], None)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(BUCKETS, 0)
        for bucket in self.tasks.values():
            counts[bucket] += 1
        return counts

    def busy_workers(self) -> set[str]:
        return set(self.running_on.values())

    def store_text(self) -> str:
        if self.store_capacity is None:
            return "store: unavailable"
        return (f"store: {fmt_bytes(self.store_used)} of {fmt_bytes(self.store_capacity)}, "
                f"{fmt_bytes(self.store_spilled)} spilled")

    def text(self) -> str:
        counts = self.counts()
        busy = self.busy_workers()
        lines = [f"miniray: {len(self.tasks)} tasks · " +
                 " · ".join(f"{counts[b]} {b}" for b in BUCKETS)]
        strip = " ".join(f"[{w}: {'busy' if w in busy else 'idle'}]"
                         for w in sorted(self.workers, key=natural_key))
        lines.append(f"workers: {strip or '(none yet)'}")
        lines.append(self.store_text())
        if self.stopped:
            lines.append(self.stopped)
        return "\n".join(lines)


class DashboardPanel:
    """The ipywidgets view of a DashboardState; ``text/plain`` carries the text snapshot."""

    def __init__(self):
        import ipywidgets as w

        self.title = w.HTML("<b>miniray dashboard</b>")
        self.bars, self.numbers = {}, {}
        rows = []
        for bucket in BUCKETS:
            self.bars[bucket] = w.IntProgress(value=0, min=0, max=1, bar_style=BAR_STYLE[bucket],
                                              layout=w.Layout(width="320px"))
            self.numbers[bucket] = w.Label("0")
            rows.append(w.HBox([w.Label(bucket, layout=w.Layout(width="70px")),
                                self.bars[bucket], self.numbers[bucket]]))
        self.workers = w.HTML("")
        self.store = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="320px"))
        self.store_text = w.Label("")
        self.widget = w.VBox([self.title, *rows, self.workers,
                              w.HBox([w.Label("store", layout=w.Layout(width="70px")),
                                      self.store, self.store_text])])
        self.last_text = ""

    def show(self, state: DashboardState) -> None:
        counts = state.counts()
        total = max(1, len(state.tasks))
        for bucket in BUCKETS:
            self.bars[bucket].max = total
            self.bars[bucket].value = counts[bucket]
            self.numbers[bucket].value = f"{counts[bucket]} / {len(state.tasks)}"
        busy = state.busy_workers()
        chips = "".join(
            f'<span title="{html.escape(w)}" style="display:inline-block;margin:1px;padding:1px 6px;'
            f'border-radius:3px;color:white;background:{"#f28e2b" if w in busy else "#999999"}">'
            f"{html.escape(w)}</span>" for w in sorted(state.workers, key=natural_key))
        self.workers.value = f"workers (orange = busy): {chips or '<i>none yet</i>'}"
        self.store.max = float(max(1, state.store_capacity or 0))
        self.store.value = float(min(state.store_used, self.store.max))
        self.store_text.value = state.store_text().removeprefix("store: ")
        status = f" · <i>{html.escape(state.stopped)}</i>" if state.stopped else ""
        self.title.value = f"<b>miniray dashboard</b> · {len(state.tasks)} tasks{status}"
        self.last_text = state.text()

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self.last_text
        return bundle


class Dashboard:
    """Polls the runtime's events from a daemon thread and shows them in a panel."""

    def __init__(self, source, panel: DashboardPanel | None = None, interval: float = 0.25):
        self.source = source
        self.panel = panel
        self.interval = interval
        self.state = DashboardState()
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="miniray-dashboard", daemon=True)
        self.handle = None  # the DisplayHandle of the panel's output, once shown

    def start(self) -> "Dashboard":
        self.refresh()
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def finish(self, note: str) -> None:
        """Stop, take a last look, and leave ``note`` in the panel and its text snapshot."""
        self.stop()
        if self.source.initialized():
            self.refresh()
        self.state.stopped = note
        self._draw()
        if self.handle is not None and self.panel is not None:
            self.handle.update(self.panel)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def run(self) -> None:
        # Main loop: refresh until asked to stop or the runtime goes away.
        while not self._stop.wait(self.interval):
            if not self.refresh():
                return

    def refresh(self) -> bool:
        """Fold new events into the state and redraw; False once the runtime is gone."""
        try:
            if not self.source.initialized():
                self.state.stopped = "runtime shut down; dashboard stopped"
                self._draw()
                return False
            cursor = self.source.cursor()
            if cursor < self._seq:  # a new runtime: its log starts again at 0
                self.state, self._seq = DashboardState(), 0
            new = self.source.events(self._seq)
            self._seq += len(new)
            self.state.apply(new)
            self._read_store()
        except Exception as exc:  # the runtime shut down under us: stop quietly
            if self.source.initialized():
                self.state.stopped = f"dashboard stopped: {type(exc).__name__}: {exc}"
            else:
                self.state.stopped = "runtime shut down; dashboard stopped"
            self._draw()
            return False
        self._draw()
        return True

    def _read_store(self) -> None:
        try:
            summary = self.source.memory_summary()
        except Exception:  # the store listing is missing or busy: keep counting tasks
            self.state.store_capacity = None
            return
        self.state.store_used = int(summary.get("used") or 0)
        self.state.store_capacity = int(summary.get("capacity") or 0)
        self.state.store_spilled = int(summary.get("spilled") or 0)

    def _draw(self) -> None:
        if self.panel is not None:
            self.panel.show(self.state)


class DashboardText:
    """A one-off text snapshot, for shells where widgets cannot render."""

    def __init__(self, state: DashboardState, note: str = ""):
        self.state = state
        self.note = note

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.state.text() + (f"\n{self.note}" if self.note else ""))
