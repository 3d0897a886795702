"""Workflows across real crashes: the driver is a subprocess, SIGKILLed while a step runs (first,
middle, last step); a second driver resumes.  Each step appends its name to a log, so the lines say
exactly what ran: finished steps once, the step that was cut off twice, nothing else.

Also: two drivers at once (one wins, the other is told who runs it), and the ``miniray workflow``
command line on a crashed workflow.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from helpers import SRC, driver_script, read_line_starting, wait_until

pytestmark = pytest.mark.timeout(120, method="signal")

DRIVER = """
import os, sys, time
import miniray as ray
from miniray import workflow

log, store, slow, mode = sys.argv[1:5]
workflow.init(storage=store)

@ray.remote
def step(name, *inputs):
    with open(log, "a") as f:
        f.write(name + "\\n")
    if name == slow and not os.path.exists(log + ".go"):
        time.sleep(120)                       # the driver is killed while this step runs
    return sum(inputs) + 1

s0 = step.bind("s0")
s1 = step.bind("s1", s0)
s2 = step.bind("s2", s1, s0)
s3 = step.bind("s3", s2)
dag = step.bind("s4", s3, s1)
print("PID", os.getpid(), flush=True)
out = workflow.run(dag, workflow_id="crash") if mode == "run" else workflow.resume("crash")
print("RESULT", out, flush=True)
"""
# s0=1, s1=2, s2=4, s3=5, s4=8
EXPECTED = 8


def lines(path) -> list:
    with open(path) as f:
        return f.read().split()


def run_driver(script, log, store, slow, mode):
    return subprocess.Popen([sys.executable, script, log, store, slow, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _env(**extra):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


def kill_during(tmp_path, slow, when=None):
    """Start the driver, SIGKILL it once step ``slow`` is running (or once ``when()`` is true);
    return (script, log, store)."""
    script = driver_script(tmp_path, DRIVER)
    log, store = str(tmp_path / "log"), str(tmp_path / "store")
    when = when or (lambda: os.path.exists(log) and slow in lines(log))
    proc = run_driver(script, log, store, slow, "run")
    try:
        read_line_starting(proc, "PID ")
        assert wait_until(when, timeout=30, interval=0.002), proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return script, log, store


@pytest.mark.parametrize("slow", ["s0", "s2", "s4"])
def test_sigkill_of_the_driver_then_resume_runs_only_unfinished_steps(tmp_path, slow):
    from miniray import workflow
    from miniray.workflow import api
    script, log, store = kill_during(tmp_path, slow)
    before = lines(log)
    workflow.init(storage=store)
    try:
        assert workflow.get_status("crash") == workflow.RESUMABLE
    finally:
        api._config["storage"] = None
    open(log + ".go", "w").close()
    proc = run_driver(script, log, store, slow, "resume")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"RESULT {EXPECTED}" in out
    after = lines(log)
    assert after[:len(before)] == before
    for name in ("s0", "s1", "s2", "s3", "s4"):
        assert after.count(name) == (2 if name == slow else 1), (name, after)
    saved = sorted(n for n in os.listdir(os.path.join(store, "crash", "tasks")) if n.endswith(".pkl"))
    assert saved == ["step.pkl", "step_1.pkl", "step_2.pkl", "step_3.pkl", "step_4.pkl"]


def test_sigkill_just_after_a_step_saved_its_output(tmp_path):
    saved = os.path.join(str(tmp_path), "store", "crash", "tasks", "step_2.pkl")
    script, log, store = kill_during(tmp_path, "s3", when=lambda: os.path.exists(saved))
    open(log + ".go", "w").close()
    proc = run_driver(script, log, store, "s3", "resume")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and f"RESULT {EXPECTED}" in out, err
    after = lines(log)
    assert [after.count(n) for n in ("s0", "s1", "s2", "s4")] == [1, 1, 1, 1], after
    assert after.count("s3") in (1, 2), after        # it may have started before the kill


def test_two_drivers_one_wins_and_a_dead_owners_lock_is_taken_over(tmp_path):
    from miniray import workflow
    from miniray.workflow import api
    script = driver_script(tmp_path, DRIVER)
    log, store = str(tmp_path / "log"), str(tmp_path / "store")
    first = run_driver(script, log, store, "s1", "run")
    try:
        pid = read_line_starting(first, "PID ")
        assert wait_until(lambda: os.path.exists(log) and "s1" in lines(log), timeout=30)
        second = run_driver(script, log, store, "s1", "resume")
        _, err = second.communicate(timeout=60)
        assert second.returncode != 0
        assert f"already running in another driver (pid {pid})" in err
        workflow.init(storage=store)
        try:
            with pytest.raises(workflow.WorkflowRunningError, match=f"pid {pid}"):
                workflow.resume("crash")
            assert workflow.get_status("crash") == workflow.RUNNING
        finally:
            api._config["storage"] = None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    open(log + ".go", "w").close()
    third = run_driver(script, log, store, "s1", "resume")
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0 and f"RESULT {EXPECTED}" in out, err


def cli(store, *args):
    proc = subprocess.run([sys.executable, "-m", "miniray.cli", "workflow", *args], capture_output=True,
                          text=True, env=_env(MINIRAY_WORKFLOW_STORAGE=store), timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_command_line_list_status_resume_output_cancel_delete(tmp_path):
    script, log, store = kill_during(tmp_path, "s3")
    code, out, _ = cli(store, "list")
    assert code == 0 and "crash" in out and "RESUMABLE" in out
    code, out, _ = cli(store, "status", "crash")
    assert code == 0 and out.startswith("RESUMABLE") and '"num_steps": 5' in out
    code, out, err = cli(store, "output", "crash")
    assert code == 1 and "workflow.resume('crash')" in err
    open(log + ".go", "w").close()
    code, out, err = cli(store, "resume", "crash")
    assert code == 0 and out.strip().endswith(str(EXPECTED)), err
    code, out, _ = cli(store, "output", "crash", "--task-id", "step_2")
    assert code == 0 and out.strip() == "4"
    code, out, _ = cli(store, "list", "--status", "successful")
    assert "crash" in out and "SUCCESSFUL" in out
    code, _, err = cli(store, "status", "nope")
    assert code == 1 and "Known workflows: 'crash'" in err
    code, out, _ = cli(store, "cancel", "crash")          # a finished workflow stays SUCCESSFUL
    assert code == 0 and "SUCCESSFUL" in out
    code, out, _ = cli(store, "delete", "crash")
    assert code == 0 and not os.path.exists(os.path.join(store, "crash"))
    assert lines(log).count("s3") == 2 and lines(log).count("s4") == 1
