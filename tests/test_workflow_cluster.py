"""A workflow on a real two-node cluster (loopback TCP): the node running a step is SIGKILLed, as a
crashed machine; the workflow is RESUMABLE and finishes on another node, finished steps not rerun."""
from __future__ import annotations

import os
import time

import pytest

import miniray
from miniray import workflow
from miniray.cluster_utils import Cluster

from helpers import wait_until

pytestmark = pytest.mark.timeout(120, method="signal")


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    yield c
    if miniray.is_initialized():
        miniray.shutdown()
    c.shutdown()


@miniray.remote
def step(log, name, *inputs):
    with open(log, "a") as f:
        f.write(name + "\n")
    if name == "far" and not os.path.exists(log + ".go"):
        time.sleep(60)
    return sum(inputs) + 1


def test_killing_the_node_of_a_running_step_leaves_it_resumable(cluster, tmp_path):
    from miniray.workflow import api
    victim = cluster.add_node(num_cpus=1, resources={"far": 1})
    cluster.connect()
    cluster.wait_for_nodes()
    workflow.init(storage=str(tmp_path / "store"))
    try:
        log = str(tmp_path / "log")
        far = step.options(resources={"far": 1}, **workflow.options(max_retries=0))
        dag = step.bind(log, "last", far.bind(log, "far", step.bind(log, "first")))
        ref = workflow.run_async(dag, workflow_id="on-a-cluster")
        deadline = time.monotonic() + 30
        while not (os.path.exists(log) and "far" in open(log).read()) and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.remove_node(victim)                      # SIGKILL: the step's machine is gone
        with pytest.raises(miniray.exceptions.RayError):
            miniray.get(ref, timeout=60)
        # the workflow's own driver task may have run on that node too: its processes take a moment to die
        assert wait_until(lambda: workflow.get_status("on-a-cluster") == workflow.RESUMABLE, timeout=15)
        cluster.add_node(num_cpus=1, resources={"far": 1})
        cluster.wait_for_nodes()
        open(log + ".go", "w").close()
        assert workflow.resume("on-a-cluster") == 3
        assert open(log).read().split() == ["first", "far", "far", "last"]
    finally:
        api._config["storage"] = None
        miniray.shutdown()
