"""What a student sees when a call into miniray fails (issue 20 items 6 and 9): their own lines.

Real drivers in subprocesses (plain Python, its real ``sys.excepthook``, a real SIGINT) and a real
IPython kernel through nbclient.  The scripts live in a folder named ``miniray``, as a ``git clone``
names it, so "no runtime frames" is checked against the package's own path.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from helpers import SRC, read_line_starting, runtime_frames

ANSI = re.compile(r"\x1b\[[0-9;]*m")
FAIL = """\
import miniray as ray
ray.init(num_cpus=1)

@ray.remote
def divide(a, b):
    return a / b

ray.get(divide.remote(1, 0))
"""


def _script(tmp_path, body: str, name: str) -> str:
    folder = tmp_path / "miniray"          # the default clone name: a user path with "miniray/"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("MINIRAY_FULL_TRACEBACKS", None)
    return {**env, **extra}


def test_runtime_frames_tells_a_clone_named_miniray_from_the_package():
    import miniray

    package = os.path.dirname(os.path.abspath(miniray.__file__))
    text = (f'  File "/home/ann/miniray/tests/test_tasks.py", line 3, in f\n'
            f'  File "{package}/runtime.py", line 337, in value_of\n')
    assert runtime_frames(text) == [f'  File "{package}/runtime.py", line 337, in value_of']


def test_plain_python_shows_the_users_lines_and_no_runtime_frames(tmp_path):
    path = _script(tmp_path, FAIL, "fail.py")
    run = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=60,
                         env=_env())
    assert run.returncode == 1
    err = run.stderr
    assert not runtime_frames(err) and "pickle.loads" not in err, err
    assert f'File "{path}", line 8, in <module>' in err, "the driver line"
    assert f'File "{path}", line 6, in divide' in err and "return a / b" in err, "the remote line"
    assert err.rstrip().endswith("ZeroDivisionError: division by zero")

    full = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=60,
                          env=_env(MINIRAY_FULL_TRACEBACKS="1"))
    assert "raise pickle.loads(desc[1])" in full.stderr and runtime_frames(full.stderr)


def test_a_bad_argument_error_shows_the_users_line(tmp_path):
    path = _script(tmp_path, "import miniray as ray\nray.init(num_cpus=1)\nray.get(42)\n", "bad.py")
    run = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=60,
                         env=_env())
    assert not runtime_frames(run.stderr), run.stderr
    assert f'File "{path}", line 3, in <module>' in run.stderr and "ray.get(42)" in run.stderr
    assert "Error: get() expects an ObjectRef" in run.stderr and "FULL_TRACEBACKS" not in run.stderr


def test_an_unexpected_error_inside_miniray_says_how_to_see_its_frames():
    import miniray
    from miniray import tracebacks

    inside = os.path.join(os.path.dirname(miniray.__file__), "pretend_internal.py")
    namespace = {}
    exec(compile("def broken():\n    return {}['key']\n", inside, "exec"), namespace)
    try:
        namespace["broken"]()
    except KeyError as caught:
        err = caught
        tb, exception_only = tracebacks._trimmed(err, err.__traceback__)
    assert not exception_only and tb.tb_next is None, "only this test's own frame is left"
    assert tb.tb_frame.f_code.co_filename == __file__
    assert err.__notes__ == ["(frames inside miniray are hidden; set MINIRAY_FULL_TRACEBACKS=1 "
                             "to see them)"]


def test_ctrl_c_during_get_prints_one_line(tmp_path):
    path = _script(tmp_path, """\
        import time, miniray as ray
        ray.init(num_cpus=1)

        @ray.remote
        def slow():
            time.sleep(60)

        print("waiting", flush=True)
        ray.get([slow.remote(), slow.remote()])
        """, "slow.py")
    proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    try:
        read_line_starting(proc, "waiting")
        time.sleep(1.0)                        # let it reach get()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert err.strip().splitlines() == [
        "KeyboardInterrupt: miniray.get() of 2 object(s) was interrupted (Ctrl-C). The tasks keep "
        "running and their ObjectRefs stay valid: get them again, or miniray.cancel() them."], err


@pytest.mark.notebook
def test_ipython_kernel_shows_the_users_cell_and_no_runtime_frames(tmp_path):
    cells = [new_code_cell("import miniray as ray\nray.init(num_cpus=1)\n\n@ray.remote\n"
                           "def divide(a, b):\n    return a / b"),
             new_code_cell("x = 1\nray.get(divide.remote(x, 0))"),
             new_code_cell("ray.get(42)"),
             new_code_cell("from miniray import tracebacks\n"
                           "def wait():\n    raise tracebacks.interrupted('miniray.get() of 3 object(s)')\n"
                           "exec(compile('wait()', tracebacks.__file__, 'exec'))"),
             new_code_cell("def mine():\n    return {}['key']\nmine()"),
             new_code_cell("ray.shutdown()")]
    for cell in cells[1:5]:
        cell.metadata["tags"] = ["raises-exception"]
    nb = new_notebook(cells=cells)
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    (error,) = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    text = ANSI.sub("", "\n".join(error.traceback))
    assert "ZeroDivisionError" in error.ename and not runtime_frames(text), text
    assert "pickle.loads" not in text and "skipping hidden" not in text
    assert "ray.get(divide.remote(x, 0))" in text and "return a / b" in text
    assert "Cell In[1], line 6, in divide" in text and "ipykernel_" not in text, "cells by name"
    (error,) = [o for o in nb.cells[2].outputs if o.output_type == "error"]
    text = ANSI.sub("", "\n".join(error.traceback))
    assert error.ename == "ValueError" and not runtime_frames(text), text
    assert "ray.get(42)" in text
    (error,) = [o for o in nb.cells[3].outputs if o.output_type == "error"]   # Ctrl-C in a get
    lines = [ln for ln in ANSI.sub("", "\n".join(error.traceback)).splitlines() if ln.strip()]
    assert lines == ["KeyboardInterrupt: miniray.get() of 3 object(s) was interrupted (Ctrl-C). The "
                     "tasks keep running and their ObjectRefs stay valid: get them again, or "
                     "miniray.cancel() them."], lines
    (error,) = [o for o in nb.cells[4].outputs if o.output_type == "error"]   # the user's own bug
    text = ANSI.sub("", "\n".join(error.traceback))
    assert "KeyError" in text and "return {}['key']" in text and "FULL_TRACEBACKS" not in text
