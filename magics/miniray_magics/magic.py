"""The IPython magics: parse arguments, gather events, return a rich object.

    %%taskgraph ─► run the cell ─► events since the cell began ─► graph_of ─► TaskGraph (PNG)
    %timeline   ─► events (all, --last S, --cell) ─► timeline_of ─► Timeline (PNG / text)
    %memory     ─► list_objects + memory_summary ─► memory_report ─► MemoryReport (HTML / PNG / text)
    %dashboard  ─► Dashboard thread + ipywidgets panel (text snapshot without a kernel)

Runs in the shell's main thread, except the dashboard's poller.  State owned: the event cursor at
the start of the last 20 cells (a ``pre_run_cell`` hook records it, for ``--cell``) and the one
running dashboard.  Bad input raises ``UsageError`` naming the option at fault.
"""
from __future__ import annotations

import ast
import sys
import time
from collections import deque

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from miniray_magics.ray_source import NOTE_NO_EDGES, EngineSource
from miniray_magics.source import RuntimeSource


def _check_save(path: str | None, allowed: tuple[str, ...]) -> None:
    if path is not None and not path.lower().endswith(allowed):
        raise UsageError(f"--save {path!r}: the file name must end in {' or '.join(allowed)}")


def _is_dag(value) -> bool:
    """A bound DAG (miniray.dag or ray.dag) that has not run."""
    return type(value).__module__.split(".")[0] in ("miniray", "ray") and hasattr(value, "get_stable_uuid") \
        and hasattr(value, "execute")


@magics_class
class MinirayMagics(Magics):
    """Pictures of what miniray did: task graphs, timelines, memory, a live dashboard."""

    def __init__(self, shell=None, source: RuntimeSource | None = None):
        super().__init__(shell)
        self.source = source or EngineSource()    # miniray's log, or Ray's state when Ray runs
        self.cell_starts: deque[int] = deque(maxlen=20)
        self.live = None
        if shell is not None:
            shell.events.register("pre_run_cell", self._cell_starting)

    def close(self) -> None:
        if self.live is not None:
            self.live.finish("stopped: the extension was unloaded")
            self.live = None
        try:
            self.shell.events.unregister("pre_run_cell", self._cell_starting)
        except ValueError:
            pass

    def _cell_starting(self, info=None) -> None:
        # Cheap, and never starts a runtime: only look if miniray is imported and running.
        initialized = ("miniray" in sys.modules or "ray" in sys.modules) and self.source.initialized()
        self.cell_starts.append(self.source.cursor() if initialized else 0)

    def _cell_events(self) -> list[dict]:
        """Events since the start of the latest cell that submitted anything (this one, if it
        has): a cell's events run on after it ends, as its tasks finish."""
        now = self.source.cursor()
        starts = [s if s <= now else 0 for s in self.cell_starts] or [0]
        since = self.source.events(starts[0])
        for k in range(len(starts) - 1, -1, -1):
            end = starts[k + 1] if k + 1 < len(starts) else now
            if any(e["kind"] in ("submitted", "put") and starts[k] <= e["seq"] < end
                   for e in since):
                return [e for e in since if e["seq"] >= starts[k]]
        return []

    # ------------------------------------------------------------------ %%taskgraph
    @magic_arguments()
    @argument("--max-nodes", type=int, default=150, metavar="N",
              help="above N nodes, calls of one function merge into one node with a count "
                   "(default 150)")
    @argument("--save", metavar="FILE", help="also write the picture to FILE (.png)")
    @argument("--layout", choices=("lr", "tb"), default="lr",
              help="lr: dependencies flow left to right (default); tb: top to bottom")
    @argument("--color", choices=("state", "worker"), default="state",
              help="colour nodes by state (default) or by the worker that ran them")
    @line_cell_magic
    def taskgraph(self, line: str, cell: str | None = None):
        """Run the cell, then draw the graph of the tasks it submitted.

        Nodes are tasks, actor method calls and ``miniray.put`` objects, labelled like
        ``my_function #1``; arrows are ObjectRef dependencies.  Each actor's calls sit in their
        own lane.  The cell runs as usual: its output and errors are kept.  The returned
        TaskGraph is a networkx DiGraph that shows itself as a PNG.  Used as a line magic,
        ``%taskgraph`` draws what the latest cell that submitted work submitted.  A cell whose
        last expression is a DAG built with ``.bind()`` draws that DAG before it runs; a resumed
        workflow's steps read back from storage show as "restored".  A cell that runs a
        ``miniray.data`` pipeline draws one node per operator (``ReadCSV->Map(f) ×8``, each step
        of a sort or shuffle its own node), its block tasks collapsed.

        Example::

            %%taskgraph --layout tb
            refs = [my_function.remote(i) for i in range(4)]
            miniray.get(refs)
        """
        args = parse_argstring(self.taskgraph, line)
        if args.max_nodes < 1:
            raise UsageError(f"--max-nodes must be a positive number of nodes, got {args.max_nodes}")
        _check_save(args.save, (".png",))
        if cell is None:
            self.source.require("taskgraph")
            return self._graph(self._cell_events(), args)
        before = self.source.cursor() if self.source.initialized() else 0
        try:
            value = self._run(cell)
        except BaseException:
            if self.source.initialized():
                display(self._graph(self._settled(before), args))
            raise
        if _is_dag(value):                 # a DAG built with .bind(): draw it before it runs
            from miniray_magics.graph import graph_of_dag
            return self._finish(graph_of_dag(value), args)
        if not self.source.initialized():
            raise UsageError("%%taskgraph: the cell submitted nothing because miniray is not "
                             "initialized: call miniray.init() first")
        if value is not None and not cell.rstrip().endswith(";"):
            display(value)
        return self._graph(self._settled(before), args)

    def _run(self, cell: str):
        """Execute the cell in the user's namespace; return its last expression's value."""
        source = self.shell.transform_cell(cell)
        filename = self.shell.compile.cache(source, self.shell.execution_count, raw_code=cell)
        tree = self.shell.compile.ast_parse(source, filename=filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        namespace = (self.shell.user_global_ns, self.shell.user_ns)
        exec(self.shell.compile(tree, filename, "exec"), *namespace)
        if last is not None:
            return eval(self.shell.compile(last, filename, "eval"), *namespace)
        return None

    def _settled(self, since: int, quiet: float = 0.05, limit: float = 0.5) -> list[dict]:
        """Events since ``since``, once the log has been quiet for ``quiet`` seconds (results
        reach the log from the node's thread a moment after ``get`` returns).  On Ray, whose task
        events arrive about once a second, until the cell's tasks have all been seen to end."""
        if hasattr(self.source, "wait_for") and getattr(self.source, "engine", "") == "ray":
            self.source.wait_for(since)
            return self.source.events(since)
        deadline = time.monotonic() + limit
        count = self.source.cursor()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            latest = self.source.cursor()
            if latest == count:
                break
            count = latest
        return self.source.events(since)

    def _graph(self, events, args):
        from miniray_magics.graph import graph_of

        return self._finish(graph_of(events, max_nodes=args.max_nodes), args)

    def _finish(self, graph, args):
        if graph.number_of_nodes() > args.max_nodes and not graph.graph.get("collapsed"):
            from miniray_magics.graph import collapse
            graph = collapse(graph, args.max_nodes)
        graph.graph.update(layout=args.layout, color=args.color)
        if getattr(self.source, "engine", "miniray") == "ray":
            graph.graph["note"] = NOTE_NO_EDGES
        if args.save:
            from miniray_magics.figures import save_png

            save_png(graph._repr_png_(), args.save)
        return graph

    # ------------------------------------------------------------------ %timeline
    @magic_arguments()
    @argument("--last", type=float, metavar="SECONDS",
              help="only the last SECONDS seconds (bars are clipped to the window)")
    @argument("--cell", action="store_true",
              help="only the tasks of the latest cell that submitted any (this one, if it has)")
    @argument("--save", metavar="FILE",
              help="also write FILE: .json is a Chrome trace for Perfetto, .png the picture")
    @line_magic
    def timeline(self, line: str):
        """Gantt chart of the tasks that ran: one row per worker and per actor.

        Bars are coloured by function; gaps are idle time.  The caption states utilisation
        (busy time over CPUs × span) and the critical path (the longest chain of dependent
        tasks).  Without options it covers everything since ``miniray.init()``.
        """
        args = parse_argstring(self.timeline, line)
        if args.last is not None and args.cell:
            raise UsageError("%timeline: use either --last SECONDS or --cell, not both")
        if args.last is not None and args.last <= 0:
            raise UsageError(f"--last must be a positive number of seconds, got {args.last}")
        _check_save(args.save, (".json", ".png"))
        self.source.require("timeline")
        from miniray_magics.timeline import Timeline, timeline_of

        slots = self.source.num_cpus()
        if args.cell:
            data, title = timeline_of(self._cell_events(), slots=slots), "%timeline --cell"
        elif args.last is not None:
            now = time.time()
            data = timeline_of(self.source.events(0), slots=slots, now=now,
                               window=(now - args.last, now))
            title = f"%timeline --last {args.last:g}"
        else:
            data = timeline_of(self.source.events(0), slots=slots, now=time.time())
            title = "%timeline (since init())"
        chart = Timeline(data, title)
        if args.save:
            chart.save(args.save)
        return chart

    # ------------------------------------------------------------------ %memory
    @magic_arguments()
    @argument("--by", choices=("object", "node", "callsite"), default="object",
              help="one bar per object (default), per node, or per call site")
    @argument("--top", type=int, default=12, metavar="N", help="bars to draw (default 12)")
    @argument("--save", metavar="FILE",
              help="also write FILE: .png the picture, .html picture and table, .txt the table")
    @line_magic
    def memory(self, line: str):
        """Object store use against capacity per node, and the largest objects.

        Bars are labelled with the call site that made the object and the reference type that
        keeps it alive; inline, shared-memory and spilled bytes are told apart.  A table follows
        (HTML in a notebook, text in a terminal).
        """
        args = parse_argstring(self.memory, line)
        if args.top < 1:
            raise UsageError(f"--top must be a positive number of bars, got {args.top}")
        _check_save(args.save, (".png", ".html", ".htm", ".txt"))
        self.source.require("memory")
        from miniray_magics.memory import memory_report

        report = memory_report(self.source.list_objects(), self.source.memory_summary(),
                               by=args.by, name_site=self._readable_site)
        report.top = args.top
        if args.save:
            report.save(args.save)
        return report

    def _readable_site(self, site: str) -> str:
        """``/tmp/ipykernel_1/123.py:2`` → ``In[5]:2`` for call sites in this shell's cells."""
        filename, _, line = site.rpartition(":")
        try:
            named = self.shell.compile.format_code_name(filename)
        except Exception:  # an older or different compiler: keep the site as it is
            named = None
        return f"{named[1]}:{line}" if named else site

    # ------------------------------------------------------------------ %dashboard
    @magic_arguments()
    @argument("--stop", action="store_true", help="stop the running dashboard")
    @argument("--interval", type=float, default=0.25, metavar="SECONDS",
              help="seconds between refreshes (default 0.25)")
    @line_magic
    def dashboard(self, line: str):
        """A live panel of task counts, busy workers and object store use.

        It refreshes from a background thread while later cells run, and stops with
        ``%dashboard --stop`` or when miniray shuts down.  Without a Jupyter kernel that renders
        ipywidgets (a terminal, say) it shows a text snapshot instead.
        """
        args = parse_argstring(self.dashboard, line)
        if args.interval <= 0:
            raise UsageError(f"--interval must be a positive number of seconds, "
                             f"got {args.interval}")
        from miniray_magics.dashboard import Dashboard, DashboardPanel, DashboardText

        if args.stop:
            if self.live is not None:
                self.live.finish("stopped by %dashboard --stop")
                self.live = None
            return None
        self.source.require("dashboard")
        if self.live is not None:
            self.live.stop()
        if not self._widgets_render():
            snapshot = Dashboard(self.source)
            snapshot.refresh()
            self.live = None
            return DashboardText(snapshot.state, "(a text snapshot: the live panel needs a Jupyter"
                                                 " kernel with ipywidgets)")
        self.live = Dashboard(self.source, DashboardPanel(), interval=args.interval)
        self.live.handle = display(self.live.panel, display_id=True)
        self.live.start()
        return None

    def _widgets_render(self) -> bool:
        if getattr(self.shell, "kernel", None) is None:
            return False
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            return False
        return True
