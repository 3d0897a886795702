"""miniray.workflow in one driver: saved steps, statuses, metadata, failures, options, continuations,
events, cancel/delete, limits, and a step's own worker SIGKILLed.

Every step appends a line to a file, so "finished steps never run again" is checked by counting lines.
Crashes of the driver itself are in test_workflow_crash.py.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

import miniray as ray
from miniray import workflow
from miniray.workflow import WorkflowStatus as S

from helpers import wait_until

pytestmark = pytest.mark.timeout(120, method="signal")


@pytest.fixture
def wf(rt, tmp_path):
    workflow.init(storage=str(tmp_path / "store"))
    yield workflow
    from miniray.workflow import api
    api._config.update(storage=None, max_running=-1, max_pending=-1)


def lines(path) -> list:
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


@ray.remote
def step(log, name, *inputs):
    with open(log, "a") as f:
        f.write(name + "\n")
    return sum(inputs) + 1


@ray.remote
def fail_unless(marker, log, x):
    with open(log, "a") as f:
        f.write("fail_unless\n")
    if not os.path.exists(marker):
        raise KeyError(f"no marker {marker}")
    return x * 10


@ray.remote
def kill_unless(marker, x):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 100


def diamond(log):
    a = step.bind(log, "a")
    b = step.bind(log, "b", a)
    c = step.bind(log, "c", a)
    return step.bind(log, "d", b, c)


def test_run_saves_each_step_and_a_second_run_reads_them_back(wf, tmp_path):
    log = str(tmp_path / "log")
    dag = diamond(log)
    assert ray.get(dag.execute()) == 5                      # plain DAG: oracle, nothing saved
    assert wf.run(dag, workflow_id="dia") == 5
    assert sorted(lines(log)) == ["a", "a", "b", "b", "c", "c", "d", "d"]
    assert wf.get_status("dia") == S.SUCCESSFUL == "SUCCESSFUL"
    assert wf.resume("dia") == 5 and wf.run(dag, workflow_id="dia") == 5
    assert len(lines(log)) == 8                              # nothing ran again
    assert wf.get_output("dia") == 5 and wf.get_output("dia", task_id="step_1") == 2
    root = tmp_path / "store" / "dia"
    assert sorted(os.listdir(root / "tasks")) == sorted(f"step{s}.{e}" for s in ("", "_1", "_2", "_3")
                                                        for e in ("json", "pkl"))
    meta = json.loads((root / "workflow.json").read_text())
    assert meta["status"] == "SUCCESSFUL" and meta["output_task_id"] == "step_3"
    assert (root / "tasks" / "step.pkl").exists()
    assert ("dia", S.SUCCESSFUL) in wf.list_all() and wf.list_all("FAILED") == []
    assert wf.list_all({S.SUCCESSFUL}) == [("dia", S.SUCCESSFUL)]


def test_metadata_of_workflow_and_task(wf, tmp_path):
    dag = step.options(**wf.options(task_id="only", metadata={"owner": "ana"})).bind(str(tmp_path / "l"), "x")
    wf.run(dag, workflow_id="meta", metadata={"week": 48})
    m = wf.get_metadata("meta")
    assert m["status"] == "SUCCESSFUL" and m["user_metadata"] == {"week": 48}
    assert m["stats"]["start_time"] <= m["stats"]["end_time"]
    t = wf.get_metadata("meta", task_id="only")
    assert t["task_id"] == "only" and t["user_metadata"] == {"owner": "ana"} and t["status"] == "SUCCESSFUL"
    with pytest.raises(wf.WorkflowNotFoundError, match=r"no task 'nope'.*\['only'\]"):
        wf.get_metadata("meta", task_id="nope")


def test_failed_step_records_traceback_reraises_its_type_and_resumes(wf, tmp_path):
    log, marker = str(tmp_path / "log"), str(tmp_path / "fixed")
    dag = step.bind(log, "after", fail_unless.bind(marker, log, step.bind(log, "before")))
    with pytest.raises(KeyError, match="no marker"):
        wf.run(dag, workflow_id="flaky")
    assert wf.get_status("flaky") == S.FAILED
    meta = wf.get_metadata("flaky", "fail_unless")
    assert meta["status"] == "FAILED" and "KeyError" in meta["traceback"] and "fail_unless" in meta["traceback"]
    with pytest.raises(KeyError):                            # from storage: the user's own type
        wf.get_output("flaky")
    open(marker, "w").close()
    assert wf.resume("flaky") == 11
    assert lines(log) == ["before", "fail_unless", "fail_unless", "after"]   # "before" ran once


def test_errors_that_teach(wf, tmp_path):
    @ray.remote
    def make_lock():
        import threading
        return threading.Lock()
    with pytest.raises(TypeError, match=r"step 'make_lock'.*cannot be pickled.*checkpoint=False"):
        wf.run(make_lock.bind(), workflow_id="unpicklable")
    wf.run(step.bind(str(tmp_path / "l"), "x"), workflow_id="known-one")
    with pytest.raises(wf.WorkflowNotFoundError, match=r"No workflow 'nope'.*'known-one'"):
        wf.resume("nope")
    with pytest.raises(wf.WorkflowNotFoundError, match="no saved output for task 'zzz'"):
        wf.get_output("known-one", task_id="zzz")
    with pytest.raises(TypeError, match=r"bound DAG.*\.bind\(\)"):
        wf.run(step.remote(str(tmp_path / "l"), "x"))
    with pytest.raises(ValueError, match="unknown option"):
        wf.options(num_cpus=2)
    with pytest.raises(ValueError, match="used twice"):
        opts = wf.options(task_id="same")
        wf.run(step.options(**opts).bind("l", "a", step.options(**opts).bind("l", "b")))


def test_catch_exceptions_retries_and_checkpoint_false(wf, tmp_path):
    log, marker = str(tmp_path / "log"), str(tmp_path / "m")

    @ray.remote
    def divide(x):
        return 1 / x
    out = wf.run(divide.options(**wf.options(catch_exceptions=True)).bind(0), workflow_id="caught")
    assert out[0] is None and isinstance(out[1], ZeroDivisionError)

    @ray.remote
    def third_time_lucky(path):
        with open(path, "a") as f:
            f.write("try\n")
        if len(lines(path)) < 3:
            raise ConnectionError("flaky network")
        return "ok"
    opts = wf.options(max_retries=2, retry_exceptions=[ConnectionError])
    assert wf.run(third_time_lucky.options(**opts).bind(log), workflow_id="retried") == "ok"
    assert lines(log) == ["try"] * 3

    cheap = step.options(**wf.options(checkpoint=False)).bind(str(marker), "cheap")
    dag = fail_unless.bind(marker + ".ok", str(tmp_path / "log2"), cheap)
    with pytest.raises(KeyError):
        wf.run(dag, workflow_id="nockpt")
    assert not (tmp_path / "store" / "nockpt" / "tasks" / "step.pkl").exists()
    open(marker + ".ok", "w").close()
    assert wf.resume("nockpt") == 10
    assert lines(marker) == ["cheap", "cheap"]              # not saved, so it ran again when needed


@ray.remote
def countdown(log, n, acc):
    with open(log, "a") as f:
        f.write(f"n{n}\n")
    if n == 0:
        return acc
    return workflow.continuation(countdown.bind(log, n - 1, acc + [n]))


def test_continuation_runs_a_loop_durably(wf, tmp_path):
    log = str(tmp_path / "log")
    assert wf.run(countdown.bind(log, 4, []), workflow_id="loop") == [4, 3, 2, 1]
    assert lines(log) == ["n4", "n3", "n2", "n1", "n0"]
    tasks = sorted(n for n in os.listdir(tmp_path / "store" / "loop" / "tasks") if n.endswith(".json"))
    assert tasks == ["countdown.json", "countdown_1.json", "countdown_2.json", "countdown_3.json",
                     "countdown_4.json"]
    assert (tmp_path / "store" / "loop" / "tasks" / "countdown.continuation.pkl").exists()
    assert wf.get_output("loop", task_id="countdown_2") == [4, 3, 2, 1]
    assert wf.resume("loop") == [4, 3, 2, 1] and len(lines(log)) == 5
    assert workflow.continuation(step.bind(log, "outside")) == 1    # outside a workflow: just runs


@ray.remote
def after(log, name, x):
    with open(log, "a") as f:
        f.write(name + "\n")
    return x if isinstance(x, int) else len(x)


def test_steps_after_a_continuation_get_its_result_not_a_placeholder(wf, tmp_path):
    # the consumers are submitted at once, with the continuation's placeholder as input: they must
    # neither run on it nor pass it on, but run once, on the continuation's final value
    log = str(tmp_path / "log")
    dag = after.bind(log, "b", after.bind(log, "a", countdown.bind(log, 3, [])))
    assert ray.get(after.bind(log, "x", [1, 2]).execute()) == 2
    assert wf.run(dag, workflow_id="after-loop") == 3
    assert lines(log) == ["x", "n3", "n2", "n1", "n0", "a", "b"]


class FileListener(workflow.EventListener):
    """The event: a file appears; its text is the event."""

    async def poll_for_event(self, path):
        import asyncio
        while not os.path.exists(path):
            await asyncio.sleep(0.02)
        with open(path) as f:
            return f.read()

    async def event_checkpointed(self, event):
        with open(event, "a") as f:
            f.write("acked\n")


def test_wait_for_event_and_sleep(wf, tmp_path):
    trigger, ack = str(tmp_path / "trigger"), str(tmp_path / "ack")
    ref = wf.run_async(step.bind(str(tmp_path / "log"), "after_event",
                                 wf.wait_for_event(FileListener, trigger).options()), workflow_id="ev")
    time.sleep(0.3)
    assert wf.get_status("ev") == S.RUNNING
    with pytest.raises(TypeError, match="EventListener subclass"):
        wf.wait_for_event(int)
    with open(trigger, "w") as f:
        f.write(ack)
    with pytest.raises(TypeError):      # the event is a path string: step adds 1 to it
        ray.get(ref)
    assert lines(ack) == ["acked"]
    assert wf.get_output("ev", task_id="poll_for_event") == ack
    t0 = time.time()
    assert wf.run(wf.sleep(0.4), workflow_id="nap") >= t0 + 0.4 - 0.05
    assert time.time() - t0 >= 0.35


def test_run_async_get_output_async_cancel_delete(wf, tmp_path):
    ref = wf.run_async(diamond(str(tmp_path / "log")), workflow_id="bg")
    assert ray.get(ref) == 5 and ray.get(wf.get_output_async("bg")) == 5
    assert ray.get(wf.get_output_async("bg", task_id="step")) == 1

    @ray.remote
    def slow(path):
        open(path, "w").close()
        time.sleep(60)
    started = str(tmp_path / "started")
    ref = wf.run_async(slow.bind(started), workflow_id="slow")
    assert wait_until(lambda: os.path.exists(started), timeout=20)
    assert wf.get_status("slow") == S.RUNNING
    with pytest.raises(wf.WorkflowRunningError, match="cancel it first"):
        wf.delete("slow")
    wf.cancel("slow")
    assert wf.get_status("slow") == S.CANCELED
    with pytest.raises(wf.WorkflowCancellationError):
        ray.get(ref)
    with pytest.raises(wf.WorkflowCancellationError):
        wf.get_output("slow")
    with pytest.raises(wf.WorkflowNotResumableError, match="canceled"):
        wf.resume("slow")
    wf.delete("slow")
    assert "slow" not in dict(wf.list_all())
    assert not (tmp_path / "store" / "slow").exists()


def test_max_running_workflows_queues_the_rest(wf, tmp_path):
    wf.init(max_running_workflows=1, max_pending_workflows=1)
    gate = str(tmp_path / "gate")

    @ray.remote
    def wait_gate(path, tag):
        while not os.path.exists(path):
            time.sleep(0.02)
        return tag
    first = wf.run_async(wait_gate.bind(gate, 1), workflow_id="first")
    assert wait_until(lambda: wf.get_status("first") == S.RUNNING, timeout=20)
    second = wf.run_async(wait_gate.bind(gate, 2), workflow_id="second")
    time.sleep(0.3)
    assert wf.get_status("second") == S.PENDING
    with pytest.raises(wf.WorkflowError, match="max_pending_workflows=1"):
        wf.run_async(wait_gate.bind(gate, 3), workflow_id="third")
    open(gate, "w").close()
    assert ray.get([first, second]) == [1, 2]


def test_a_step_that_kills_its_own_worker_is_retried_or_resumed(wf, tmp_path):
    marker = str(tmp_path / "died-once")
    assert wf.run(kill_unless.bind(marker, 1), workflow_id="crashy") == 101     # retried as a task
    marker2 = str(tmp_path / "died-twice")
    no_retry = kill_unless.options(**wf.options(max_retries=0))
    with pytest.raises(ray.exceptions.RayError):
        wf.run(no_retry.bind(marker2, step.bind(str(tmp_path / "log"), "first")), workflow_id="crashy2")
    assert wf.get_status("crashy2") == S.RESUMABLE          # a system failure, not the step's error
    assert wf.resume("crashy2") == 101
    assert lines(tmp_path / "log") == ["first"]


def test_resume_all_picks_resumable_and_optionally_failed(wf, tmp_path):
    marker = str(tmp_path / "m")
    with pytest.raises(KeyError):
        wf.run(fail_unless.bind(marker, str(tmp_path / "log"), 1), workflow_id="failed-one")
    with pytest.raises(ray.exceptions.RayError):
        wf.run(kill_unless.options(**wf.options(max_retries=0)).bind(str(tmp_path / "k"), 1),
               workflow_id="resumable-one")
    open(marker, "w").close()
    resumed = wf.resume_all()
    assert [w for w, _ in resumed] == ["resumable-one"] and ray.get(resumed[0][1]) == 101
    resumed = dict(wf.resume_all(include_failed=True))
    assert list(resumed) == ["failed-one"] and ray.get(resumed["failed-one"]) == 10
    assert {s for _, s in wf.list_all()} == {S.SUCCESSFUL}


@ray.remote
def slow_step(log, name):
    time.sleep(0.5)
    with open(log, "a") as f:
        f.write(name + "\n")
    return 1


def test_steps_running_when_another_fails_finish_and_are_not_run_again(wf, tmp_path):
    """A failure does not throw away the work of steps already running beside it: they finish and
    are saved, so the resume runs only the failed step."""
    log, marker = str(tmp_path / "log"), str(tmp_path / "marker")
    dag = step.bind(log, "total", slow_step.bind(log, "slow"), fail_unless.bind(marker, log, 1))
    with pytest.raises(KeyError):
        wf.run(dag, workflow_id="beside")
    assert lines(log).count("slow") == 1            # it finished although its sibling failed
    open(marker, "w").close()
    assert wf.resume("beside") == 1 + 10 + 1
    assert lines(log).count("slow") == 1            # saved, so not run again
    assert lines(log).count("fail_unless") == 2
