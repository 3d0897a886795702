"""The DAG API: ``.bind()`` builds a lazy graph, ``.execute()`` runs it as real tasks and actors.

Oracle: the same computation in plain Python.
"""
from __future__ import annotations

import pickle

import pytest

import miniray as ray
from miniray.dag import ClassMethodNode, ClassNode, FunctionNode, InputAttributeNode, InputNode, MultiOutputNode

pytestmark = pytest.mark.timeout(60, method="signal")


@ray.remote
def add(a, b):
    return a + b


@ray.remote
def total(*parts, scale=1):
    return sum(parts) * scale


@ray.remote
class Counter:
    def __init__(self, start):
        self.n = start

    def incr(self, by):
        self.n += by
        return self.n


def test_bind_builds_nodes_and_runs_nothing_until_execute(rt):
    from miniray import events
    before = events.cursor()
    dag = total.bind(add.bind(1, 2), add.bind(3, 4), scale=10)
    assert isinstance(dag, FunctionNode) and len(dag.children()) == 2
    assert not [e for e in events.events(before) if e["kind"] == "submitted"]
    ref = dag.execute()
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == ((1 + 2) + (3 + 4)) * 10
    names = [e["name"] for e in events.events(before) if e["kind"] == "submitted"]
    assert sorted(names) == ["add", "add", "total"]


def test_a_node_used_twice_runs_once_per_execute(rt):
    from miniray import events
    shared = add.bind(1, 1)
    dag = total.bind(shared, shared, add.bind(shared, 5))
    before = events.cursor()
    assert ray.get(dag.execute()) == 2 + 2 + 7
    assert ray.get(dag.execute()) == 11          # and a DAG runs again, as often as asked
    subs = [e["name"] for e in events.events(before) if e["kind"] == "submitted"]
    assert subs.count("add") == 4 and subs.count("total") == 2


def test_input_node_index_attribute_keyword_and_context_manager(rt):
    with InputNode() as inp:
        dag = total.bind(inp[0], inp[1], inp.k, inp["k"])
    assert isinstance(inp[0], InputAttributeNode)
    assert ray.get(dag.execute(1, 2, k=10)) == 1 + 2 + 10 + 10
    single = add.bind(InputNode(), 1)                        # one input: the node is that value
    assert ray.get(single.execute(41)) == 42

    class Point:
        x, y = 3, 4
    inp2 = InputNode()
    assert ray.get(add.bind(inp2.x, inp2.y).execute(Point())) == 7
    assert ray.get(add.bind(inp2[0], inp2[1]).execute([5, 6])) == 11
    with pytest.raises(IndexError, match="only 2 positional"):
        total.bind(inp[5]).execute(1, 2)
    with pytest.raises(KeyError, match="no keyword 'k'"):
        total.bind(inp.k).execute(1, 2)
    with pytest.raises(TypeError, match=r"got one argument \(int 7\).*Pass several arguments"):
        total.bind(inp[0]).execute(7)


def test_multi_output_node_returns_a_list_of_refs(rt):
    with InputNode() as inp:
        a = add.bind(inp, 1)
        b = add.bind(a, 1)
        dag = MultiOutputNode([a, b, add.bind(b, b)])
    refs = dag.execute(10)
    assert isinstance(refs, list) and all(isinstance(r, ray.ObjectRef) for r in refs)
    assert ray.get(refs) == [11, 12, 24]
    with pytest.raises(TypeError, match="list of bound nodes"):
        MultiOutputNode([1, 2])


def test_nodes_inside_lists_and_dicts_arrive_as_refs(rt):
    @ray.remote
    def shape(xs, d):       # as in Ray: nested results arrive as ObjectRefs, top-level ones as values
        assert all(isinstance(x, ray.ObjectRef) for x in xs)
        return sum(ray.get(xs)) + ray.get(d["k"])
    assert ray.get(shape.bind([add.bind(1, 1), add.bind(2, 2)], {"k": add.bind(3, 3)}).execute()) == 12


def test_options_on_bound_nodes_and_before_bind(rt):
    from miniray import events
    before = events.cursor()
    node = add.bind(1, 2)
    renamed = node.options(name="renamed_add", num_cpus=1)
    assert renamed is not node and node.get_options() == {}
    assert ray.get(renamed.execute()) == 3
    assert ray.get(add.options(name="early").bind(2, 2).execute()) == 4
    names = [e["name"] for e in events.events(before) if e["kind"] == "submitted"]
    assert names == ["renamed_add", "early"]


def test_actor_class_node_and_method_nodes(rt):
    counter = Counter.bind(10)
    assert isinstance(counter, ClassNode)
    first = counter.incr.bind(1)
    dag = counter.incr.bind(first)              # the same actor: 10+1 = 11, then 11+11 = 22
    assert isinstance(dag, ClassMethodNode)
    assert ray.get(dag.execute()) == 22
    handle = Counter.bind(0).execute()           # a ClassNode executes to an actor handle
    assert ray.get(handle.incr.remote(5)) == 5
    live = Counter.remote(100)                   # a live actor's method binds too
    assert ray.get(live.incr.bind(add.bind(1, 1)).execute()) == 102
    with pytest.raises(AttributeError, match="has no method 'nope'"):
        Counter.bind(0).nope


def test_a_dag_pickles_with_plain_pickle_even_with_local_functions(rt):
    @ray.remote
    def local_double(x):          # a local function: plain pickle alone cannot pickle it
        return 2 * x
    with InputNode() as inp:
        dag = MultiOutputNode([local_double.bind(inp), add.bind(local_double.bind(inp), 1)])
    back = pickle.loads(pickle.dumps(dag))
    assert ray.get(back.execute(5)) == [10, 11]


def test_a_long_chain_needs_no_recursion(rt):
    node = 0
    for _ in range(1500):
        node = add.bind(node, 1)
    assert ray.get(node.execute()) == 1500
    assert len(pickle.loads(pickle.dumps(add.bind(1, 1))).children()) == 0
