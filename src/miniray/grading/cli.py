"""``miniray grade NOTEBOOK``: run the graded tests against one notebook and print a score table.

    miniray grade 01_tasks.ipynb
        └─► pytest.main([test_01_tasks.py, --submission 01_tasks.ipynb])   (in this process, quiet)
                └─► plugin ─► sandbox child per notebook ─► Outcome per test
        ◄── ResultCollector gathers (task, test, outcome) ──► report.score_lines ──► stdout

Exit status: 0 when every graded test passes, 1 when any fails, 2 when the notebook or its tests
cannot be found or pytest itself cannot run them.  ``--pytest-output`` shows pytest's own report too.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

from miniray.grading.report import Outcome, score_lines, task_of_test


class ResultCollector:
    """A pytest plugin object that keeps each graded test's outcome, in order."""

    def __init__(self):
        self.results: list[tuple[str, str, Outcome]] = []
        self.problems: list[str] = []

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        name = report.nodeid.split("::")[-1].split("[")[0]
        if "grading" in props and report.when == "call":
            d = props["grading"]
            self.results.append((d["task"], name, Outcome(d["status"], d["message"], d["task"])))
        elif report.failed and report.when in ("setup", "teardown"):
            self.problems.append(f"{name}: the grader could not {report.when} this test: "
                                 f"{_last_line(report.longreprtext)}")
            self.results.append((task_of_test(name) or "-", name,
                                 Outcome("error", "the grader itself failed here; ask your teacher")))
        elif report.skipped and report.when == "setup" and "grading" not in props:
            self.results.append((task_of_test(name) or "-", name,
                                 Outcome("skipped", _last_line(report.longreprtext))))

    def pytest_collectreport(self, report):
        if report.failed:
            self.problems.append(f"the graded tests could not be loaded: {_last_line(report.longreprtext)}")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def grade(notebook: str, tests: str | None = None, timeout: float = 20.0,
          show_pytest: bool = False, out=None) -> int:
    """Grade one notebook; print the table to ``out`` (stdout); return the exit status."""
    import pytest

    from miniray.grading.plugin import tests_for

    out = out or sys.stdout
    path = Path(notebook)
    if not path.exists():
        print(f"miniray grade: no such notebook: {notebook}", file=out)
        return 2
    try:
        test_file = Path(tests) if tests and Path(tests).is_file() else tests_for(str(path), tests)
    except (FileNotFoundError, ValueError) as err:
        print(f"miniray grade: {err}", file=out)
        return 2
    collector = ResultCollector()
    args = [str(test_file), "--submission", str(path), "--task-timeout", str(timeout),
            "-p", "miniray.grading.plugin", "-p", "no:cacheprovider", "-q"]
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        code = pytest.main(args, plugins=[collector])
    if show_pytest:
        print(captured.getvalue(), file=out)
    print(f"Grading {path.name} with {test_file.name}\n", file=out)
    if collector.problems or (code not in (0, 1) and not collector.results):
        for problem in collector.problems or [f"pytest could not run the tests (exit code {int(code)})"]:
            print(problem, file=out)
        return 2
    lines, ok = score_lines(collector.results, _hints(test_file))
    print("\n".join(lines), file=out)
    return 0 if ok else 1


def _hints(test_file: Path) -> dict[str, str]:
    """The test module's ``HINTS`` dict, read without importing it (it may import the runtime)."""
    import ast

    tree = ast.parse(test_file.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "HINTS" for t in node.targets):
            try:
                return dict(ast.literal_eval(node.value))
            except ValueError:
                return {}
    return {}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="miniray grade", description="Grade an exercise notebook.")
    parser.add_argument("notebook", help="the exercise notebook to grade (.ipynb)")
    parser.add_argument("--tests", help="the graded test file or its folder (default: found by exercise name)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per graded test (default 20)")
    parser.add_argument("--pytest-output", action="store_true", help="also show pytest's own report")
    parser.add_argument("--engine", choices=("miniray", "ray"), default=None,
                        help="run the notebook on miniray (default) or on real Ray "
                             "(also: MINIRAY_ENGINE=ray)")
    args = parser.parse_args(argv)
    if args.engine:
        os.environ["MINIRAY_ENGINE"] = args.engine     # the sandbox reads it
    try:
        return grade(args.notebook, args.tests, args.timeout, args.pytest_output)
    except BrokenPipeError:          # `miniray grade nb | head`: the reader left early
        sys.stdout = open(os.devnull, "w")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
