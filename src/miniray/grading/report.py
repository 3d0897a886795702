"""Outcomes of graded tests, and the plain words a student reads instead of a traceback.

    exception raised by a test ──describe──► Outcome(status, message, task)
                                                 │
    per-test outcomes ──score_table──► "Task 1.2   0/2  NOT DONE  ..." lines

Statuses: ``passed``, ``failed`` (a check did not hold), ``not_done`` (a stub still raises
``NotImplementedError("Task N.M")``), ``error`` (the student's code raised something else),
``timeout``, ``skipped``.  A message is at most a few lines and never a traceback; it ends with the
place in the notebook ("cell 5, line 3") when the error came from a notebook cell run in this process.
"""
from __future__ import annotations

import re
import traceback
from dataclasses import asdict, dataclass

from miniray.grading.notebook import TASK_ID

TEST_TASK = re.compile(r"^test_task_(\d+)_(\d+)")
CELL_FILE = re.compile(r"^<(cell \d+.*)>$")


@dataclass
class Outcome:
    status: str
    message: str
    task: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def task_of_test(name: str) -> str | None:
    """``test_task_1_2_results_in_order`` -> ``"1.2"``."""
    m = TEST_TASK.match(name)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def not_done_message(task: str) -> str:
    return (f'Task {task} is not done yet: replace raise NotImplementedError("Task {task}") '
            f"with your code, then run the cell.")


def _cause(err: BaseException) -> BaseException:
    """The user's own exception behind a runtime wrapper (``RayTaskError.cause``)."""
    seen = set()
    while getattr(err, "cause", None) is not None and id(err) not in seen:
        seen.add(id(err))
        err = err.cause
    return err


REMOTE_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def _where(err: BaseException) -> str:
    """Where in the notebook ``err`` was raised: the innermost frame that ran a notebook cell."""
    place = ""
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        m = CELL_FILE.match(frame.f_code.co_filename)
        if m:
            place = f" ({m.group(1)}, line {lineno})"
    remote = REMOTE_FRAME.findall(getattr(err, "traceback_str", "") or "")
    if remote:   # raised inside a task: only the worker's traceback text says where
        filename, lineno, func = remote[-1]
        m = CELL_FILE.match(filename)
        place = (f" ({m.group(1)}, line {lineno})" if m else
                 f" (in {func}, line {lineno} of its cell)" if filename.startswith("<") else f" (in {func})")
    return place


def _first_line(text: str) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _failed_check_line(err: BaseException, test_file: str | None) -> str:
    for frame, lineno in reversed(list(traceback.walk_tb(err.__traceback__))):
        if test_file and frame.f_code.co_filename == test_file:
            import linecache

            return f"a check failed in {frame.f_code.co_name}: {linecache.getline(test_file, lineno).strip()}"
    return "a check failed"


def describe(err: BaseException, test_file: str | None = None) -> Outcome:
    """Turn what a test raised into an Outcome with a message in plain words."""
    kind = type(err).__name__
    if kind in ("Failed", "XFailed"):          # pytest.fail(...) inside a test
        return Outcome("failed", str(getattr(err, "msg", err)))
    if kind == "Skipped":
        return Outcome("skipped", str(getattr(err, "msg", err)))
    cause = _cause(err)
    if isinstance(cause, NotImplementedError) or isinstance(err, NotImplementedError):
        m = TASK_ID.search(str(cause.args[0]) if cause.args else "") or TASK_ID.search(str(err))
        if m:
            return Outcome("not_done", not_done_message(m.group(1)), m.group(1))
    if getattr(err, "not_done_task", None):
        return Outcome("not_done", str(err), err.not_done_task)
    if isinstance(err, AssertionError):
        text = str(err).strip()
        return Outcome("failed", text if text else _failed_check_line(err, test_file))
    if isinstance(err, KeyboardInterrupt):
        return Outcome("timeout", "Interrupted.")
    if isinstance(cause, SyntaxError):
        m = CELL_FILE.match(cause.filename or "")
        place = f"{m.group(1)}, line {cause.lineno}" if m else f"line {cause.lineno}"
        return Outcome("error", f"Python cannot read your code ({place}): {cause.msg}. Fix it and run the cell.")
    detail = _first_line(str(cause)) if cause is not err else _first_line(str(err))
    name = type(cause).__name__
    where = _where(err) if getattr(err, "traceback_str", None) else (_where(cause) or _where(err))
    return Outcome("error", f"Your code raised {name}: {detail}{where}".rstrip(": "))


def score_lines(results: list[tuple[str, str, Outcome]], hints: dict[str, str]) -> tuple[list[str], bool]:
    """The score table: one line per task, then what to do for each task that is not passing.

    ``results`` holds (task, test name, outcome) in the order the tests ran.  A ``skipped`` test
    (one that does not apply here, e.g. a check only miniray can make, graded on real Ray) counts
    neither for nor against: a task's "Passed" is out of its tests that apply, a task whose tests
    all skipped reads ``n/a``, and the reasons are listed under "Not graded here".
    """
    tasks: dict[str, list[tuple[str, Outcome]]] = {}
    for task, name, outcome in results:
        tasks.setdefault(task, []).append((name, outcome))
    lines = [f"{'Task':<10}{'Passed':>8}  Status", f"{'-' * 10}{'-' * 8}  {'-' * 10}"]
    advice: list[str] = []
    skipped: list[str] = []
    for task, tests in tasks.items():
        applies = [(name, o) for name, o in tests if o.status != "skipped"]
        passed = sum(o.status == "passed" for _, o in applies)
        statuses = [o.status for _, o in applies if o.status != "passed"]
        status = ("n/a" if not applies else "ok" if not statuses else
                  "NOT DONE" if "not_done" in statuses else statuses[0].upper())
        label = f"Task {task}" if task != "-" else "other"
        lines.append(f"{label:<10}{f'{passed}/{len(applies)}':>8}  {status}")   # under the headers
        for name, o in tests:
            if o.status == "skipped":
                skipped.append(f"    {label}, {name}: {o.message}")
        if statuses:
            advice.append(f"{label}:")
            shown = set()
            for name, o in applies:
                if o.status == "passed" or o.message in shown:
                    continue
                shown.add(o.message)
                advice.extend("    " + ln for ln in o.message.splitlines())
            if task in hints:
                advice.append(f"    Hint: {hints[task]}")
    graded = [o for _, _, o in results if o.status != "skipped"]
    passed = sum(o.status == "passed" for o in graded)
    counted = [t for t in tasks.values() if any(o.status != "skipped" for _, o in t)]
    done = sum(all(o.status in ("passed", "skipped") for _, o in t) for t in counted)
    lines.append("")
    extra = f" ({len(results) - len(graded)} skipped: not graded here)" if len(graded) < len(results) else ""
    lines.append(f"Score: {passed}/{len(graded)} tests passed{extra}, {done}/{len(counted)} tasks complete.")
    if skipped:
        lines += ["", "Not graded here:"] + skipped
    if advice:
        lines += ["", "What to do next:"] + advice
    return lines, passed == len(graded) and len(graded) > 0
