"""The pytest plugin behind ``pytest --submission NOTEBOOK`` and ``miniray grade NOTEBOOK``.

    pytest ──collects──► notebooks/exercises/tests/test_NN_topic.py   (tests take the ``nb`` fixture)
       │                         │
       │   pytest_pyfunc_call ───┴──► Sandbox(NOTEBOOK).run_test(file, name)  (child process)
       ▼                                             │
    pass / fail with a plain message ◄── Outcome ◄───┘

A graded test is an ordinary function ``def test_task_1_2_what(nb): ...``.  It never runs in the pytest
process: this plugin sends it to the sandbox, where ``nb`` is the executed notebook, and turns the
outcome back into a pass or a one-paragraph failure (``pytrace=False``, so no traceback).

Which tests: a test module grades the exercise named by its ``EXERCISE`` global or its file name
(``test_01_tasks.py`` grades ``01_tasks``); items of other exercises are deselected.  With
``--submission`` and no paths, pytest collects just that exercise's test file.  Without
``--submission`` the graded tests are skipped.

Registered by ``notebooks/exercises/tests/conftest.py`` (or by ``-p miniray.grading.plugin``, or a
``pytest11`` entry point); every hook here is inert unless a test asks for ``nb``.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from miniray.grading.generate import EXERCISES
from miniray.grading.notebook import exercise_name, read_notebook
from miniray.grading.report import task_of_test

_SANDBOX = pytest.StashKey()


def pytest_addoption(parser):
    group = parser.getgroup("miniray grading")
    group.addoption("--submission", metavar="NOTEBOOK", default=None,
                    help="grade this exercise notebook with the graded tests that match it")
    group.addoption("--task-timeout", type=float, default=20.0, metavar="S",
                    help="seconds each graded test may run before it fails (default 20)")
    group.addoption("--exercise-tests", metavar="DIR", default=None,
                    help="folder holding test_NN_topic.py (default: found next to the notebook)")


def submission_exercise(path: str) -> str:
    return exercise_name(read_notebook(path), path)


def tests_for(notebook: str, tests_dir: str | None = None) -> Path:
    """The graded test file for a notebook: test_<exercise>.py in the first folder that has it."""
    exercise = submission_exercise(notebook)
    here = Path(notebook).resolve().parent
    dirs = [Path(tests_dir)] if tests_dir else [here / "tests", here.parent / "tests", EXERCISES / "tests"]
    for d in dirs:
        candidate = d / f"test_{exercise}.py"
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no graded tests named test_{exercise}.py in {', '.join(map(str, dirs))}")


def module_exercise(module) -> str:
    name = getattr(module, "EXERCISE", None)
    return name or re.sub(r"^test_", "", Path(module.__file__).stem)


def pytest_configure(config):
    config.addinivalue_line("markers", "grading: a graded exercise test (runs in the submission's sandbox)")
    notebook = config.getoption("submission", None)
    if notebook and config.args_source != pytest.Config.ArgsSource.ARGS:
        if not Path(notebook).exists():
            raise pytest.UsageError(f"--submission: no such notebook: {notebook}")
        config.args[:] = [str(tests_for(notebook, config.getoption("exercise_tests")))]


def pytest_collection_modifyitems(config, items):
    notebook = config.getoption("submission", None)
    if not notebook:
        return
    wanted = submission_exercise(notebook)
    keep, drop = [], []
    for item in items:
        graded = "nb" in getattr(item, "fixturenames", ())
        (drop if graded and module_exercise(item.module) != wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def _miniray_sandbox(request):
    from miniray.grading.runner import Sandbox

    notebook = request.config.getoption("submission", None)
    if not notebook:
        pytest.skip("graded exercise tests need --submission NOTEBOOK")
    sandbox = Sandbox(notebook, test_timeout=request.config.getoption("task_timeout"))
    request.config.stash[_SANDBOX] = sandbox
    yield sandbox
    sandbox.close()


@pytest.fixture
def nb(_miniray_sandbox):
    """The submission notebook.  In the sandbox a test receives the notebook's namespace instead."""
    return _miniray_sandbox


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    from miniray.grading.runner import Sandbox

    sandbox = pyfuncitem.funcargs.get("nb")
    if not isinstance(sandbox, Sandbox):      # someone else's fixture named nb: not ours to run
        return None
    kwargs = {k: pyfuncitem.funcargs[k] for k in pyfuncitem._fixtureinfo.argnames if k != "nb"}
    outcome = sandbox.run_test(str(pyfuncitem.path), pyfuncitem.originalname, kwargs)
    task = task_of_test(pyfuncitem.originalname)
    outcome.task = outcome.task if outcome.status == "not_done" else task
    pyfuncitem.user_properties.append(("grading", {**outcome.as_dict(), "task": task or "-"}))
    if outcome.status == "passed":
        return True
    if outcome.status == "skipped":
        pytest.skip(outcome.message)
    pytest.fail(outcome.message, pytrace=False)
