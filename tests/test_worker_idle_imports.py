"""An idle worker imports numpy when the driver has it (issue 14's cold path: the first task that
unpickles an array no longer pays numpy's import), and only then: a driver without numpy, or one
that sets MINIRAY_PRELOAD="", leaves its workers light.  Real drivers in subprocesses, so that
``sys.modules`` is theirs, not pytest's."""
from __future__ import annotations

import pytest

from helpers import driver_script, start_driver

pytestmark = pytest.mark.timeout(90)

PROBE = """\
    import os, sys, time
    {numpy}import miniray as ray

    @ray.remote
    def loaded():
        import sys
        return "numpy" in sys.modules

    first = ray.get(loaded.remote())     # a call right after start runs before any idle import
    deadline = time.monotonic() + float(os.environ.get("PROBE_FOR", "15"))
    while True:                          # idle, and a CPU free (the suite may keep them busy)
        time.sleep(1.0)
        idle = ray.get(loaded.remote())
        if idle or time.monotonic() > deadline:
            break
    print("FIRST", first, "IDLE", idle)
"""


def _run(tmp_path, body, env=None):
    proc = start_driver(driver_script(tmp_path, body), env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def test_idle_worker_imports_numpy_the_driver_has(tmp_path):
    out = _run(tmp_path, PROBE.format(numpy="import numpy; "))
    assert "IDLE True" in out, out


def test_no_idle_import_without_numpy_in_the_driver_or_when_turned_off(tmp_path):
    assert "FIRST False IDLE False" in _run(tmp_path, PROBE.format(numpy=""), env={"PROBE_FOR": "2"})
    assert "IDLE False" in _run(tmp_path, PROBE.format(numpy="import numpy; "),
                                env={"MINIRAY_PRELOAD": "", "PROBE_FOR": "2"})


def test_idle_import_of_a_missing_module_is_harmless(tmp_path):
    out = _run(tmp_path, PROBE.format(numpy=""), env={"MINIRAY_PRELOAD": "no_such_module_here,numpy"})
    assert "IDLE True" in out, out
