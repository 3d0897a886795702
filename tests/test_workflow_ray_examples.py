"""Ray's documented DAG API ("Lazy Computation Graphs with the Ray DAG API") and Workflows examples
(Ray 2.47: getting started, workflow management, events, dynamic workflows with continuations) run
unchanged with ray aliased to miniray, in a real driver process that starts its own runtime, keeps its
workflows in ``ray.init(storage=...)`` under tmp_path, and exits on its own."""
from __future__ import annotations

import os

import pytest
from helpers import run_as_ray

EXAMPLES = r'''
import sys, os, time
import ray
from ray import workflow
from ray.dag import InputNode, MultiOutputNode
tmp = sys.argv[1]
ray.init(storage=os.path.join(tmp, "wf"))
# --- DAG API: functions
@ray.remote
def add_one(value, inc=1):
    return value + inc
n1 = add_one.bind(1, inc=2)
n2 = add_one.bind(n1, inc=3)
n3 = add_one.bind(n2, inc=n1)
print("DAGF", ray.get(n1.execute()), ray.get(n2.execute()), ray.get(n3.execute()))
# --- DAG API: actors
@ray.remote
class Counter:
    def __init__(self, start):
        self.total = start
    def inc(self, x):
        self.total += x
    def get(self):
        return self.total
c = Counter.bind(10)
print("DAGA", ray.get(c.get.bind().execute()))
c2 = Counter.remote(5)
c2.inc.remote(2)
print("DAGH", ray.get(c2.get.bind().execute()))
# --- InputNode, indexing and attributes, MultiOutputNode
@ray.remote
def twice(x):
    return 2 * x
@ray.remote
def combine(a, b):
    return a + b
with InputNode() as inp:
    dag = combine.bind(twice.bind(inp[0]), inp[1])
print("INPUT", ray.get(dag.execute(3, 4)), ray.get(dag.execute(10, 1)))
with InputNode() as inp:
    dag = combine.bind(inp.x, inp.y)
print("INKW", ray.get(dag.execute(x=1, y=5)))
with InputNode() as inp:
    dag = MultiOutputNode([twice.bind(inp), add_one.bind(inp)])
print("MULTI", ray.get(dag.execute(7)))
# --- Workflows getting started
@ray.remote
def read_data(num: int):
    return [i for i in range(num)]
@ray.remote
def preprocessing(data):
    return [d ** 2 for d in data]
@ray.remote
def aggregate(data):
    return sum(data)
data = read_data.bind(10)
preprocessed = preprocessing.bind(data)
output = aggregate.bind(preprocessed)
print("RUN", workflow.run(output, workflow_id="my_workflow"))
print("ASYNC", ray.get(workflow.run_async(output, workflow_id="my_async")))
print("STATUS", workflow.get_status("my_workflow") == workflow.SUCCESSFUL, workflow.get_status("my_workflow"))
print("OUTPUT", workflow.get_output("my_workflow"), ray.get(workflow.get_output_async("my_workflow")))
# task options: task_id, metadata, catch_exceptions, retries
@ray.remote
def faulty():
    raise ValueError("oops")
@ray.remote
def handle(pair):
    result, err = pair
    return "caught " + type(err).__name__ if err else result
node = handle.bind(faulty.options(**workflow.options(catch_exceptions=True)).bind())
print("CATCH", workflow.run(node))
@ray.remote
def named(x):
    return x * 100
node = named.options(**workflow.options(task_id="the_step", metadata={"owner": "me"})).bind(3)
workflow.run(node, workflow_id="with_ids", metadata={"team": "docs"})
print("TASKOUT", workflow.get_output("with_ids", task_id="the_step"))
meta = workflow.get_metadata("with_ids")
tmeta = workflow.get_metadata("with_ids", task_id="the_step")
print("META", meta["status"], meta["user_metadata"], tmeta["user_metadata"], "start_time" in meta["stats"])
# --- management: list_all, failed + resume, cancel, delete
flag = os.path.join(tmp, "flag")
@ray.remote
def flaky():
    if not os.path.exists(flag):
        raise RuntimeError("not yet")
    return "ok"
try:
    workflow.run(flaky.bind(), workflow_id="flaky")
except Exception as e:
    print("FAIL", type(e).__name__, workflow.get_status("flaky"))
open(flag, "w").close()
print("RESUME", workflow.resume("flaky"), workflow.get_status("flaky"))
print("LIST", ",".join(sorted(w for w, s in workflow.list_all())))
print("LISTOK", ",".join(sorted(w for w, s in workflow.list_all({workflow.SUCCESSFUL}))))
@ray.remote
def slow():
    time.sleep(30)
ref = workflow.run_async(slow.bind(), workflow_id="to_cancel")
time.sleep(1.0)
workflow.cancel("to_cancel")
print("CANCEL", workflow.get_status("to_cancel"))
workflow.delete("to_cancel")
print("DELETE", "to_cancel" in [w for w, _ in workflow.list_all()])
# --- events
t0 = time.time()
@ray.remote
def after(event):
    return "woke"
print("SLEEP", workflow.run(after.bind(workflow.sleep(0.5))), time.time() - t0 >= 0.5)
from ray.workflow.event_listener import TimerListener
print("TIMER", workflow.run(after.bind(workflow.wait_for_event(TimerListener, time.time() + 0.3))))
import asyncio
class FileListener(workflow.EventListener):
    async def poll_for_event(self, path):
        while not os.path.exists(path):
            await asyncio.sleep(0.05)
        with open(path) as f:
            return f.read()
    async def event_checkpointed(self, event):
        pass
evpath = os.path.join(tmp, "event.txt")
@ray.remote
def got(ev):
    return "got " + ev
ref = workflow.run_async(got.bind(workflow.wait_for_event(FileListener, evpath)), workflow_id="evt")
time.sleep(0.5)
with open(evpath, "w") as f:
    f.write("payload")
print("EVENT", ray.get(ref))
# --- dynamic workflows: continuation
@ray.remote
def plus(a, b):
    return a + b
@ray.remote
def fib(n):
    if n <= 1:
        return n
    return workflow.continuation(plus.bind(fib.bind(n - 1), fib.bind(n - 2)))
print("FIB", workflow.run(fib.bind(10), workflow_id="fib"), ray.get(fib.bind(6).execute()))
@ray.remote
def factorial(n, acc=1):
    if n == 1:
        return acc
    return workflow.continuation(factorial.bind(n - 1, acc * n))
print("FACT", workflow.run(factorial.bind(6)))
'''

EXPECTED = {
    "DAGF": "3 6 9", "DAGA": "10", "DAGH": "7", "INPUT": "10 21", "INKW": "6", "MULTI": "[14, 8]",
    "RUN": "285", "ASYNC": "285", "STATUS": "True SUCCESSFUL", "OUTPUT": "285 285",
    "CATCH": "caught ValueError", "TASKOUT": "300",
    "META": "SUCCESSFUL {'team': 'docs'} {'owner': 'me'} True",
    "FAIL": "RayTaskError(RuntimeError) FAILED", "RESUME": "ok SUCCESSFUL",
    "CANCEL": "CANCELED", "DELETE": "False", "SLEEP": "woke True", "TIMER": "woke",
    "EVENT": "got payload", "FIB": "55 8", "FACT": "720",
}


def test_ray_docs_dag_and_workflow_examples_run_unchanged(tmp_path):
    lines = run_as_ray(tmp_path, "miniray.dag, miniray.workflow, miniray.workflow.event_listener",
                       EXAMPLES, str(tmp_path))
    assert {k: lines.get(k) for k in EXPECTED} == EXPECTED
    listed = set(lines["LIST"].split(","))
    assert {"flaky", "my_async", "my_workflow", "with_ids"} <= listed and "to_cancel" not in listed
    assert listed == set(lines["LISTOK"].split(","))      # all had succeeded by then
    # ray.init(storage=...) is where the workflows were kept
    stored = set(os.listdir(tmp_path / "wf"))
    assert {"my_workflow", "with_ids", "fib", "evt"} <= stored and "to_cancel" not in stored


def test_init_storage_takes_a_directory():
    import miniray
    with pytest.raises(TypeError, match="storage=42.*directory"):
        miniray.init(storage=42)
