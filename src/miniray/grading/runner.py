"""The grader's side of a sandbox: start the child, send it tests, enforce time limits, clean up.

    pytest (plugin) ──Sandbox.run_test──► child: python -m miniray.grading.sandbox
          ▲                                 │  runs the notebook once, then one test per request
          └──────── Outcome ◄───────────────┘  (a multiprocessing Connection on a socketpair)

Who runs where: ``Sandbox`` lives in the grading process (pytest, or ``miniray grade`` which runs
pytest in-process).  The child runs in its own session so the whole tree it starts (runtime workers
included) can be ended together.  A child that times out, crashes or hangs is replaced by a fresh one
for the next test, so one infinite loop costs one task and nothing more.

State owned: the current child ``Popen`` and its connection; nothing survives :meth:`Sandbox.close`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Pipe

from miniray.grading.report import Outcome

GRACE_S = 5.0          # how long a child gets to report, shut its runtime down and exit
RAY_START_S = 60.0     # extra time on real Ray for a cell that starts it (6-20 s on a loaded laptop)


class Sandbox:
    """One submission notebook, graded in a child process that is restarted after a failure."""

    def __init__(self, notebook: str, test_timeout: float = 20.0, load_timeout: float = 60.0,
                 cell_timeout: float | None = None, ray_start_s: float = RAY_START_S):
        from miniray import engines

        self.notebook = os.path.abspath(notebook)
        self.engine = engines.engine_name()          # $MINIRAY_ENGINE, read once
        self.test_timeout = test_timeout
        self.cell_timeout = cell_timeout or test_timeout
        # On Ray, a cell that runs before Ray is up gets ray_start_s more (the child adds it), and
        # so does the whole load.
        self.ray_start_s = ray_start_s if self.engine == "ray" else 0.0
        self.load_timeout = load_timeout + self.ray_start_s
        self._proc: subprocess.Popen | None = None
        self._conn = None
        self._log = tempfile.NamedTemporaryFile(prefix="miniray-grading-", suffix=".log", delete=False)
        self._log.close()
        self._ray_env = None
        if self.engine == "ray":            # one temp dir of its own for Ray (engines.py says why)
            self._ray_env = engines.fresh_ray_env()
            self._env = self._ray_env.__enter__()

    # -- the child's life ---------------------------------------------------------------------
    def _start(self) -> Outcome | None:
        """Start a child and wait for the notebook to load; an Outcome when that failed."""
        parent, child = Pipe()
        env = dict(self._env if self._ray_env else os.environ,
                   MINIRAY_GRADING_LOG=self._log.name, PYTHONUNBUFFERED="1")
        env.setdefault("MPLBACKEND", "Agg")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "miniray.grading.sandbox", str(child.fileno()), self.notebook,
             str(self.cell_timeout), str(self.ray_start_s)],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, cwd=os.path.dirname(self.notebook), env=env)
        child.close()
        self._conn = parent
        reply = self._receive(self.load_timeout)
        if reply is None or reply.get("op") != "loaded":
            self._stop(kill=True)
            return Outcome("error", f"The notebook did not finish running within {self.load_timeout:g} s "
                                    "(or it crashed Python). Run it top to bottom in a fresh kernel to see why.")
        return None

    def _receive(self, timeout: float):
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def _stop(self, kill: bool = False) -> None:
        """End the child and every process it started; safe to call twice."""
        proc, self._proc = self._proc, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is None:
            return
        if not kill:
            try:
                proc.wait(GRACE_S)      # it shuts its runtime down when the pipe closes
            except subprocess.TimeoutExpired:
                kill = True
        _end_tree(proc, interrupt_first=kill)

    def close(self) -> None:
        self._stop()
        if self._ray_env is not None:
            self._ray_env, env = None, self._ray_env
            env.__exit__(None, None, None)
        try:
            os.unlink(self._log.name)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- tests --------------------------------------------------------------------------------
    def run_test(self, test_file: str, name: str, kwargs: dict | None = None,
                 timeout: float | None = None) -> Outcome:
        timeout = timeout or self.test_timeout
        if self._proc is None or self._proc.poll() is not None:
            self._stop()
            failed = self._start()
            if failed:
                return failed
        try:
            self._conn.send({"op": "test", "file": os.path.abspath(test_file), "name": name,
                             "kwargs": kwargs or {}, "timeout": timeout})
        except (OSError, EOFError):
            self._stop(kill=True)
            return Outcome("error", "The notebook's Python process died before this test could run.")
        reply = self._receive(timeout + GRACE_S)
        if reply is None:
            alive = self._proc.poll() is None
            self._stop(kill=True)
            if alive:
                return Outcome("timeout", f"Your code did not finish within {timeout:g} s and could not be "
                                          "interrupted. Look for a loop that never ends.")
            return Outcome("error", "Your code crashed the Python process (for example with os._exit "
                                    "or by running out of memory).")
        outcome = Outcome(**reply)
        if outcome.status == "timeout":
            self._stop()
        return outcome


def _end_tree(proc: subprocess.Popen, interrupt_first: bool) -> None:
    """SIGINT the child (it shuts its runtime down), then SIGTERM and SIGKILL what is left of the tree."""
    try:
        import psutil

        tree = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - already gone, or psutil missing
        tree = []
    steps = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL] if interrupt_first else [signal.SIGKILL]
    for sig in steps:
        if proc.poll() is not None and not _alive(tree):
            break
        targets = [proc.pid] if sig == signal.SIGINT else [proc.pid] + [t.pid for t in tree[1:]]
        for p in targets:
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (GRACE_S if sig != signal.SIGKILL else 2.0)
        while time.monotonic() < deadline and (proc.poll() is None or _alive(tree)):
            time.sleep(0.05)
    try:
        proc.wait(1)
    except subprocess.TimeoutExpired:
        pass


def _alive(tree) -> bool:
    alive = []
    for p in tree[1:]:
        try:
            if p.is_running() and p.status() != "zombie":
                alive.append(p)
        except Exception:  # noqa: BLE001
            pass
    return bool(alive)
