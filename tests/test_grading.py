"""The exercise grader: student copies from solution markers, ``miniray grade``, ``pytest --submission``.

Two kinds of check.  A small plain-Python exercise built in ``tmp_path`` tests the machinery itself
(stubs, messages, time limits) without the runtime.  Then every real exercise is graded twice: its
solution must pass every task, its generated blank copy must fail every task with "Task N.M" advice
and no traceback.  Grading runs in child processes, exactly as a student would run it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miniray.grading import generate
from miniray.grading.checks import calls_in_loops
from miniray.grading.generate import MarkerError, strip_solutions

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "notebooks" / "exercises"
SOLUTIONS = sorted((EXERCISES / "solutions").glob("*.ipynb"))
NAMES = [p.stem for p in SOLUTIONS]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def grade(notebook: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``miniray grade NOTEBOOK ...`` through the package's console entry point."""
    return run("-m", "miniray.cli", "grade", str(notebook), *extra, timeout=timeout)


def notebook(*cells: tuple[str, str]) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": kind, "metadata": {}, "source": src, **(
            {"outputs": [], "execution_count": None} if kind == "code" else {})} for kind, src in cells]}


# -- the generator ------------------------------------------------------------------------------

def test_stub_keeps_indentation_and_names_the_heading_task():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\nf(1)"
    assert strip_solutions(src, "2.3") == 'def f(x):\n    raise NotImplementedError("Task 2.3")\n\nf(1)'


def test_marker_can_name_its_own_task_and_several_regions_are_stubbed():
    src = ("x = 1\n### BEGIN SOLUTION Task 4.1\ny = 2\n### END SOLUTION\n"
           "class A:\n    def m(self):\n        ### BEGIN SOLUTION\n        pass\n        ### END SOLUTION\n")
    out = strip_solutions(src, "4.2")
    assert 'raise NotImplementedError("Task 4.1")\n' in out.splitlines(keepends=True)
    assert '        raise NotImplementedError("Task 4.2")\n' in out.splitlines(keepends=True)
    assert "y = 2" not in out and "pass" not in out


@pytest.mark.parametrize("src", ["### BEGIN SOLUTION\nx = 1\n",
                                 "x = 1\n### END SOLUTION\n",
                                 "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n"])
def test_unbalanced_markers_are_refused(src):
    with pytest.raises(MarkerError):
        strip_solutions(src, "1.1")


def test_student_notebook_clears_outputs_and_records_the_exercise():
    nb = notebook(("markdown", "## Task 7.1: add one"), ("code", "def f(x):\n    ### BEGIN SOLUTION\n"
                                                                 "    return x + 1\n    ### END SOLUTION"))
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    nb["cells"][1]["execution_count"] = 3
    student = generate.student_notebook(nb, "07_demo")
    code = student["cells"][1]
    assert "".join(code["source"]) == 'def f(x):\n    raise NotImplementedError("Task 7.1")'
    assert code["outputs"] == [] and code["execution_count"] is None
    assert student["metadata"]["miniray"]["exercise"] == "07_demo"
    assert nb["cells"][1]["execution_count"] == 3, "the solution notebook itself must not change"


def test_committed_student_copies_match_the_generator():
    assert len(SOLUTIONS) >= 4, "one solution notebook per lesson 1-4"
    stale = generate.stale(EXERCISES)
    assert not stale, f"regenerate with `python -m miniray.grading.generate`: {stale}"


def test_every_exercise_has_graded_tests_and_task_headings():
    for sol in SOLUTIONS:
        assert (EXERCISES / "tests" / f"test_{sol.stem}.py").exists()
        text = "".join("".join(c["source"]) for c in json.loads(sol.read_text())["cells"])
        assert text.count("### BEGIN SOLUTION") >= 3 and "Task " in text


def test_get_in_a_loop_is_found_unless_the_loop_waits():
    assert calls_in_loops("for r in refs:\n    t += ray.get(r)", "get") == [2]
    assert calls_in_loops("out = [ray.get(r) for r in refs]", "get") == [1]
    assert calls_in_loops("out = ray.get([f.remote(x) for x in xs])", "get") == []
    ok = "while refs:\n    done, refs = ray.wait(refs)\n    t += ray.get(done[0])"
    assert calls_in_loops(ok, "get", unless="wait") == []


def test_messages_name_the_task_and_never_hold_a_traceback():
    from miniray.exceptions import RayTaskError
    from miniray.grading.report import describe, score_lines

    stub = describe(NotImplementedError("Task 1.2"))
    assert stub.status == "not_done" and stub.task == "1.2" and "Task 1.2 is not done yet" in stub.message
    remote = RayTaskError("f", 'Traceback (most recent call last):\n  File "<cell 3>", line 2, in f\n'
                                "ZeroDivisionError: division by zero\n", ZeroDivisionError("division by zero"))
    out = describe(remote.as_instanceof_cause())
    assert out.status == "error" and out.message == "Your code raised ZeroDivisionError: division by zero (cell 3, line 2)"
    assert describe(AssertionError("square(2) should be 4")).message == "square(2) should be 4"
    lines, ok = score_lines([("1.1", "t1", stub), ("1.1", "t2", describe(AssertionError("x")))], {"1.1": "Try."})
    text = "\n".join(lines)
    assert not ok and "0/2" in text and "Hint: Try." in text and "Traceback" not in text


def test_score_table_columns_line_up_under_their_headers():
    from miniray.grading.report import Outcome, describe, score_lines

    passed = Outcome(status="passed", message="")
    lines, _ = score_lines([("1.1", "a", passed)] * 12 + [("1.2", "b", describe(AssertionError("x")))],
                           {})
    header = lines[0]
    passed_end, status_at = header.index("Passed") + len("Passed"), header.index("Status")
    for row, count, status in ((lines[2], "12/12", "ok"), (lines[3], "0/1", "FAILED")):
        assert row[:passed_end].endswith(count), (header, row)     # right-aligned under "Passed"
        assert row[status_at:].startswith(status), (header, row)    # left-aligned under "Status"



def test_skipped_tests_count_neither_for_nor_against_and_say_why():
    """On real Ray a check only miniray can make skips: the table says n/a and why, never FAILED."""
    from miniray.grading.report import Outcome, score_lines

    passed, skip = Outcome("passed", ""), Outcome("skipped", "miniray only: no util.empty on Ray")
    lines, ok = score_lines([("3.1", "a", passed), ("3.1", "b", skip), ("3.2", "c", skip)], {})
    text = "\n".join(lines)
    assert ok, text
    assert lines[2].split() == ["Task", "3.1", "1/1", "ok"] and lines[3].split() == ["Task", "3.2", "0/0", "n/a"]
    assert "Score: 1/1 tests passed (2 skipped: not graded here), 1/1 tasks complete." in text
    assert "Task 3.2, c: miniray only: no util.empty on Ray" in text.partition("Not graded here:")[2]
    assert not score_lines([("3.2", "c", skip)], {})[1]        # nothing graded is not a pass

# -- the grader on a plain-Python exercise ------------------------------------------------------

PLAIN_TESTS = '''
HINTS = {"9.1": "Add one to x.", "9.2": "Return the list doubled."}

def test_task_9_1_adds_one(nb):
    assert nb.add_one(1) == 2, "add_one(1) should return 2"

def test_task_9_2_doubles(nb):
    assert nb.double([1, 2]) == [2, 4], "double([1, 2]) should return [2, 4]"

def test_task_9_3_constant(nb):
    assert nb.ANSWER == 42, "ANSWER should be 42"
'''


@pytest.fixture
def plain(tmp_path):
    """A three-task exercise: a solution, its generated blank, and a copy with an infinite loop."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_99_plain.py").write_text(PLAIN_TESTS)
    sol = notebook(("markdown", "# Plain\n## Task 9.1"),
                   ("code", "def add_one(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION"),
                   ("markdown", "## Task 9.2"),
                   ("code", "def double(xs):\n    ### BEGIN SOLUTION\n    return [2 * x for x in xs]\n"
                            "    ### END SOLUTION\nprint('loaded')"),
                   ("markdown", "## Task 9.3"),
                   ("code", "### BEGIN SOLUTION\nANSWER = 42\n### END SOLUTION"))
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "99_plain.ipynb").write_text(json.dumps(sol))
    path, text = generate.generate(tmp_path / "solutions" / "99_plain.ipynb")
    path.write_text(text)
    looping = json.loads(json.dumps(sol))
    looping["cells"][3]["source"] = "def double(xs):\n    while True:\n        pass"
    (tmp_path / "looping.ipynb").write_text(json.dumps(dict(looping, metadata={"miniray": {"exercise": "99_plain"}})))
    return tmp_path


def test_plain_solution_passes_and_blank_fails_with_advice(plain):
    ok = grade(plain / "solutions" / "99_plain.ipynb")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3/3 tests passed" in ok.stdout
    blank = grade(plain / "99_plain.ipynb")
    assert blank.returncode == 1, blank.stdout + blank.stderr
    for task in ("9.1", "9.2", "9.3"):
        assert f'raise NotImplementedError("Task {task}")' in blank.stdout
    assert "Hint: Add one to x." in blank.stdout
    assert "Traceback" not in blank.stdout + blank.stderr


def test_an_infinite_loop_fails_only_its_task_within_the_timeout(plain):
    start = time.monotonic()
    res = grade(plain / "looping.ipynb", "--timeout", "2")
    assert time.monotonic() - start < 30
    assert res.returncode == 1
    lines = {ln.split()[1]: ln for ln in res.stdout.splitlines() if re.match(r"Task 9\.\d ", ln)}
    assert "TIMEOUT" in lines["9.2"] and "ok" in lines["9.1"] and "ok" in lines["9.3"], res.stdout
    assert "did not finish within 2 s" in res.stdout


def test_missing_notebook_is_a_usage_error(tmp_path):
    res = grade(tmp_path / "nope.ipynb")
    assert res.returncode == 2 and "no such notebook" in res.stdout


def test_pytest_submission_option(plain):
    res = run("-m", "pytest", "-p", "miniray.grading.plugin", "--submission", str(plain / "99_plain.ipynb"),
              str(plain / "tests"), "-q", "-p", "no:cacheprovider")
    assert res.returncode == 1 and "3 failed" in res.stdout, res.stdout
    assert "Task 9.2 is not done yet" in res.stdout
    res = run("-m", "pytest", "-p", "miniray.grading.plugin", "--submission",
              str(plain / "solutions" / "99_plain.ipynb"), str(plain / "tests"), "-q", "-p", "no:cacheprovider")
    assert res.returncode == 0 and "3 passed" in res.stdout, res.stdout


# -- the real exercises -------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_solution_passes_every_task(name):
    res = grade(EXERCISES / "solutions" / f"{name}.ipynb")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stdout


@pytest.mark.parametrize("name", NAMES)
def test_blank_fails_every_task_with_advice(name):
    res = grade(EXERCISES / f"{name}.ipynb")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    rows = [ln for ln in res.stdout.splitlines() if re.match(r"Task \d+\.\d+ ", ln)]
    assert len(rows) >= 3 and all(" 0/" in row for row in rows), res.stdout
    for row in rows:
        task = row.split()[1]
        assert f"Task {task}" in res.stdout.split("What to do next:")[1], f"no advice for Task {task}"


def test_plain_pytest_submission_finds_the_exercise_tests():
    """From the repository root, with no test path: the plugin picks test_NN_topic.py itself."""
    res = run("-m", "pytest", "--submission", f"notebooks/exercises/{NAMES[0]}.ipynb", "-q")
    out = res.stdout + res.stderr
    assert res.returncode == 1 and "failed" in out and f"test_{NAMES[0]}.py" in out, out
    assert "is not done yet" in out and "Traceback" not in out


def test_an_infinite_loop_inside_a_task_fails_only_that_task(tmp_path):
    """The loop runs in a worker: the grader shuts that runtime down and the other tasks still pass."""
    nb = json.loads((EXERCISES / "solutions" / "01_tasks.ipynb").read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if "def square(x):" in src:
            cell["source"] = src.replace("    return x * x", "    while True:\n        pass")
    (tmp_path / "loops.ipynb").write_text(json.dumps(nb))
    start = time.monotonic()
    res = grade(tmp_path / "loops.ipynb", "--tests", str(EXERCISES / "tests"), "--timeout", "2")
    assert time.monotonic() - start < 60, "the grader waited far longer than its time limits"
    rows = {ln.split()[1]: ln for ln in res.stdout.splitlines() if re.match(r"Task 1\.\d ", ln)}
    assert res.returncode == 1 and "TIMEOUT" in rows["1.1"], res.stdout
    assert all("ok" in rows[t] for t in ("1.2", "1.3", "1.4")), res.stdout
