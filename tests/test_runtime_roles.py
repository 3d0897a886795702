"""Each process's role is fixed when its runtime is built (issue #22): the way it reaches objects
(access.py) is one object chosen at construction, and the hot-path methods are bound then.

Real processes: the local driver, a task's worker, an actor's worker, a driver joined over TCP.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import miniray
from miniray.api import current_runtime

ROOT = Path(__file__).resolve().parents[1]


def role():
    rt = current_runtime()
    return {"access": type(rt.access).__name__, "holder": rt.holder, "driving": rt.node is not None,
            "submit": rt.submit.__func__.__name__, "add_ref": rt.add_local_ref.__func__.__name__,
            "events": type(rt.events).__name__}


@miniray.remote
def task_role():
    return role()


@miniray.remote
class Probe:
    def role(self):
        return role()


def test_each_process_has_the_object_access_of_its_role(rt):
    driver = role()
    assert driver == {"access": "InStore", "holder": "driver", "driving": True, "submit": "submit",
                      "add_ref": "_add_ref_in_store", "events": "EventLog"}
    worker = rt.get(task_role.remote())
    assert worker["access"] == "HeadArena" and worker["holder"].startswith("w") and not worker["driving"]
    assert worker["submit"] == "_submit_from_call" and worker["add_ref"] == "_add_ref_pending"
    assert worker["events"] == "RemoteEventLog"
    assert rt.get(Probe.remote().role.remote())["access"] == "HeadArena"


def test_a_worker_reads_the_nodes_event_log_and_puts_through_its_access(rt):
    @miniray.remote
    def logged_and_put():
        big = miniray.put(np.arange(200_000))                 # over the inline limit: the arena
        kinds = {e["kind"] for e in miniray.events.events()}
        return "submitted" in kinds, int(miniray.get(big)[-1])

    assert rt.get(logged_and_put.remote()) == (True, 199_999)


def test_the_event_log_before_init_is_empty_and_starts_nothing():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "magics")]))
    code = ("import json, miniray, miniray.events as ev; ev.emit('note', x=1); "
            "print(json.dumps([ev.events(), ev.cursor(), miniray.is_initialized()]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[], 0, False]
