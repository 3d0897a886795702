"""The child process that holds a submission: it runs the notebook once, then runs tests on request.

    grader (runner.Sandbox) ──{"op": "test", file, name, kwargs, timeout}──► this process
                            ◄──{"status", "message", "task"}────────────────┘
                                                                │ exec'd once, cell by cell
                                                                ▼
                                            namespace of a fresh ``__main__`` module

Runs as ``python -m miniray.grading.sandbox FD NOTEBOOK CELL_TIMEOUT [RAY_START_S]`` with a pipe on FD.  Its stdout
and stderr (and so the student's prints and the runtime workers' output) go to a log file, never to
the grader's terminal.  Every cell and every test runs under a SIGALRM deadline; a test that runs out
of time is reported and then this process shuts its runtime down and exits, so the next test starts
from a fresh copy of the notebook.  State owned: the ``Submission`` (namespace, cell errors).

On real Ray (``MINIRAY_ENGINE=ray``) a cell that runs while Ray is not yet up gets ``RAY_START_S``
more time (Ray's start alone takes 6-20 s on a loaded laptop).  Stopping Ray after a deadline, or at
exit, is ``ray.shutdown()`` and then ending every process this one started that is still alive: a
deadline that rang inside ``ray.init()`` leaves a half-started node (GCS, raylet, dashboard, workers)
that ``ray.shutdown()`` does not know about.
"""
from __future__ import annotations

import importlib.util
import linecache
import os
import signal
import sys
import types
from multiprocessing.connection import Connection

from miniray import engines
from miniray.grading import notebook
from miniray.grading.report import Outcome, describe, task_of_test
from miniray.util import ray_events


class Deadline(BaseException):
    """Raised by SIGALRM when a cell or a test runs out of time."""


class NotDefined(AssertionError):
    """A test asked the submission for a name that the notebook never defined."""

    def __init__(self, message: str, not_done_task: str | None = None):
        super().__init__(message)
        self.not_done_task = not_done_task


class Submission:
    """The executed notebook, as tests see it: ``nb.count_words``, ``nb["Counter"]``, ``nb.source(...)``."""

    def __init__(self, path: str, cell_timeout: float, ray_start_s: float = 0.0):
        self._path = path
        self._module = types.ModuleType("__main__")
        self._module.__dict__["display"] = print
        self._errors: dict[int, tuple[str | None, BaseException]] = {}   # cell index -> (task, error)
        self._defines: dict[str, int] = {}                                # name -> cell index
        self._task: str | None = None                                     # task of the running test
        self.engine = engines.engine_name()          # $MINIRAY_ENGINE: miniray, or ray
        self._ray_start_s = ray_start_s
        sys.modules["__main__"] = self._module
        for cell in notebook.cells(notebook.read_notebook(path)):
            if cell.kind == "code":
                self._run_cell(cell, cell_timeout)

    def _run_cell(self, cell: notebook.Cell, timeout: float) -> None:
        code = notebook.python_source(cell.source)
        if code is None:
            return
        if self.engine == "ray":                     # the one-line move, made for the student
            if engines.ONLY_TAG in cell.tags:
                return
            code = engines.to_ray(code)
            if not ray_events.ray_running():         # this cell may be the one that starts Ray
                timeout += self._ray_start_s
        under = f", under Task {cell.task}" if cell.task else ""
        filename = f"<cell {cell.index + 1}{under}>"   # what a student reads: position from the top
        linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
        for name in notebook.defined_names(code):
            self._defines[name] = cell.index
        try:
            with deadline(timeout):
                exec(compile(code, filename, "exec"), self._module.__dict__)
        except (Exception, Deadline) as err:  # noqa: BLE001 - every cell error is recorded, none stops us
            self._errors[cell.index] = (cell.task, err)
            if isinstance(err, Deadline):
                # Tasks of that cell may hold every worker forever; the next cell's first
                # .remote() auto-starts a fresh runtime instead.
                _shutdown_runtime()

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str):
        try:
            return self._module.__dict__[name]
        except KeyError:
            why = self._why_missing(name)
            raise (why if isinstance(why, NotDefined) else NotDefined(why)) from None

    def __contains__(self, name: str) -> bool:
        return name in self._module.__dict__

    def _why_missing(self, name: str) -> str:
        cell = self._defines.get(name)
        if cell is None:   # a stub cell defines nothing: blame an error under the test's own task
            cell = next((i for i, (task, _) in self._errors.items() if task and task == self._task), None)
        if cell is not None and cell in self._errors:
            task, err = self._errors[cell]
            outcome = describe(err)
            if outcome.status == "not_done":
                return NotDefined(outcome.message, outcome.task)
            return f"`{name}` was never defined because the cell that defines it stopped. {outcome.message}"
        return (f"The notebook does not define `{name}`. Keep the names used in the exercise "
                f"and run every cell from the top.")

    def source(self, name: str) -> str:
        """The source text of a function or class the notebook defines."""
        import inspect

        obj = self[name]
        obj = getattr(obj, "__wrapped__", None) or getattr(obj, "_function", None) or obj
        return inspect.getsource(obj)

    @property
    def cell_errors(self) -> dict[int, tuple[str | None, BaseException]]:
        return dict(self._errors)


class deadline:
    """``with deadline(seconds):`` raises :class:`Deadline` in this (main) thread when time is up."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        def ring(signum, frame):
            raise Deadline(f"ran for more than {self.seconds:g} s")
        self._old = signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)
        return False


_MODULES: dict[str, types.ModuleType] = {}


def _test_module(path: str) -> types.ModuleType:
    if path not in _MODULES:
        name = "miniray_graded_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MODULES[path] = module
    return _MODULES[path]


def run_test(sub: Submission, request: dict) -> Outcome:
    """Call one test function with the submission as ``nb``; never raises."""
    sub._task = task_of_test(request["name"])
    try:
        func = getattr(_test_module(request["file"]), request["name"])
        with deadline(request["timeout"]):
            func(nb=sub, **request.get("kwargs", {}))
    except Deadline:
        return Outcome("timeout", f"Your code did not finish within {request['timeout']:g} s. "
                                  "Look for a loop that never ends or a get() that waits forever.")
    except BaseException as err:  # noqa: BLE001 - the outcome carries it
        outcome = describe(err, test_file=request["file"])
        setup = [(i, e) for i, (task, e) in sorted(sub.cell_errors.items()) if task is None]
        if outcome.status in ("error", "failed") and setup:
            i, e = setup[0]
            outcome.message += (f"\nFirst fix cell {i + 1} (before the tasks), which stopped: "
                                f"{describe(e).message}")
        return outcome
    return Outcome("passed", "")


def _shutdown_runtime() -> None:
    runtime = sys.modules.get("miniray")
    try:
        if runtime is not None and runtime.is_initialized():
            runtime.shutdown()
    except Exception:  # noqa: BLE001 - exiting anyway
        pass
    if "ray" in sys.modules:
        _shutdown_ray()


def _shutdown_ray(grace_s: float = 10.0) -> None:
    """``ray.shutdown()``, then end what is left of the processes this one started (Ray's)."""
    try:
        with deadline(grace_s):
            sys.modules["ray"].shutdown()
    except (Exception, Deadline):  # noqa: BLE001 - a half-started Ray: the processes go below
        pass
    try:
        import psutil
    except ImportError:            # ray[default] brings psutil; without it, shutdown() is all
        return
    left = psutil.Process().children(recursive=True)
    for proc in left:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(left, timeout=3)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=2)


def main(argv: list[str]) -> int:
    fd, path, cell_timeout = int(argv[0]), argv[1], float(argv[2])
    ray_start_s = float(argv[3]) if len(argv) > 3 else 0.0
    conn = Connection(fd)
    log = os.open(os.environ.get("MINIRAY_GRADING_LOG", os.devnull), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sub = Submission(path, cell_timeout, ray_start_s)
        conn.send({"op": "loaded"})
        # Main loop: one request at a time until the grader hangs up or a test times out.
        while True:
            try:
                request = conn.recv()
            except EOFError:
                break
            if request.get("op") != "test":
                break
            outcome = run_test(sub, request)
            conn.send(outcome.as_dict())
            if outcome.status == "timeout":
                break
    except KeyboardInterrupt:
        pass
    finally:
        _shutdown_runtime()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
