"""``cluster_utils.Cluster.add_node`` as Ray's test code uses it: the node it returns has the
``node_id`` that ``nodes()`` and NodeAffinitySchedulingStrategy use, and Ray's other common
keyword arguments are accepted.  A real head and node, on loopback."""
from __future__ import annotations

import pytest

import miniray
from miniray.cluster_utils import Cluster
from miniray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(120, method="signal")


@miniray.remote(num_cpus=0)
def node_and_env():
    import os
    return miniray.get_runtime_context().get_node_id(), os.environ.get("NODE_FLAVOUR")


def test_add_node_returns_a_node_with_its_node_id():
    with pytest.raises(TypeError, match="unexpected"):
        Cluster(initialize_head=False).add_node(num_cpus=1, no_such_option=1)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "dashboard_port": None})
    try:
        node = cluster.add_node(num_cpus=1, labels={"zone": "a"}, memory=2**30,
                                env_vars={"NODE_FLAVOUR": "spicy"})
        cluster.connect()
        cluster.wait_for_nodes()
        ids = {n["NodeID"] for n in miniray.nodes() if n["Alive"]}
        assert cluster.head.node_id in ids and node.node_id in ids and node.node_id != cluster.head.node_id
        pin = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        assert miniray.get(node_and_env.options(scheduling_strategy=pin).remote(), timeout=60) == \
            (node.node_id, "spicy")
    finally:
        cluster.shutdown()
