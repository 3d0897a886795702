"""The actor table (scheduler/actors.py) driven by hand: call ordering, restarts, max_restarts,
kill and names.  No processes: the table talks to the node only through its interface
(scheduler/interface.py: NodeSide), so a small fake node records what the table asks of it."""
import pickle

import pytest

from miniray import exceptions as exc
from miniray.scheduler import state as S
from miniray.scheduler.actors import ALIVE, DEAD, RESTARTING, ActorTable
from miniray.transport.messages import Result, TaskSpec


class Entry:
    def __init__(self, state, desc=None):
        self.state, self.desc = state, desc


class FakeStore:
    """The two things the table reads of the store: is an object ready, and its row."""

    def __init__(self):
        self.entries = {}

    def ready(self, oid):
        return oid in self.entries


class FakeConn:
    def __init__(self, holder):
        self.holder, self.remote, self.sent = holder, False, []

    def deliver(self, items):
        self.sent.extend(items)

    def deliver_exec(self, item):
        self.sent.append(item)


class FakeNode:
    """NodeSide, recording: what was submitted, failed, finished and killed."""

    def __init__(self):
        self.node_id, self.node_ip = "n1", "127.0.0.1"
        self.state = S.new_state({"CPU": 4.0}, "n1")
        self.store, self.conns, self.drivers = FakeStore(), {}, {}
        self.submitted, self.failed, self.finished, self.killed = [], {}, [], []

    def submit(self, spec, ts):
        self.submitted.append(spec.task_id)
        S.submit(self.state, spec, set())

    def fail(self, spec, err, worker=""):
        self.failed[spec.task_id] = err

    def finish(self, spec, result, worker="", seal=True):
        self.finished.append(spec.task_id)

    def kill_worker(self, wid):
        self.killed.append(wid)

    def descs_for(self, wc, oids):
        return {o: ("inline", b"", []) for o in oids}

    def worker_died(self, wc): ...
    def placement_changed(self): ...
    def adopt(self, sock, channel): ...
    def wake(self): ...
    def emit(self, kind, **fields): ...

    def add_worker(self, wid):
        self.state.workers[wid] = S.Slot(node="n1", state="busy")
        self.conns[wid] = FakeConn(wid)
        return self.conns[wid]


def creation(aid="A1", **options):
    options.setdefault("handle", f"handle-{aid}")
    return TaskSpec(aid + "init", "Counter.__init__", "actor_creation", "Counter", ("inline", b"", []),
                    (), (), (aid + "init00",), 1, {"CPU": 1.0}, actor_id=aid, options=options)


def call(tid, aid="A1", deps=(), owner="driver"):
    return TaskSpec(tid, "Counter.incr", "actor_method", "incr", ("inline", b"", []), tuple(deps), (),
                    (tid + "00",), 1, {}, actor_id=aid, owner=owner)


OK = Result([], 0.0, 0.0)


def alive(node, table, wid="w1", **options):
    """An actor created and bound to worker ``wid``."""
    spec = creation(**options)
    table.create(spec, 0.0)
    wc = node.add_worker(wid)
    table.created(spec, OK, wc)
    return table.actors[spec.actor_id], wc


def sent_ids(wc):
    return [item[1].task_id for item in wc.sent if item[0] == "exec"]


def test_calls_before_the_constructor_ends_wait_and_then_go_in_submission_order():
    node = FakeNode()
    table = ActorTable(node)
    spec = creation()
    assert table.create(spec, 0.0) == "handle-A1"
    assert node.submitted == ["A1init"]
    for t in ("c1", "c2", "c3"):
        table.enqueue(call(t))
    wc = node.add_worker("w1")
    assert sent_ids(wc) == []                  # PENDING: nothing is sent
    table.created(spec, OK, wc)
    assert table.actors["A1"].state == ALIVE and table.actors["A1"].worker == "w1"
    assert sent_ids(wc) == ["c1", "c2", "c3"]
    assert node.state.workers["w1"].actor_id == "A1"


def test_a_call_waiting_for_an_argument_holds_back_its_callers_later_calls_only():
    node = FakeNode()
    table = ActorTable(node)
    actor, wc = alive(node, table)
    table.enqueue(call("a1", deps=["x"], owner="w7"))   # waits for x
    table.enqueue(call("a2", owner="w7"))               # same caller: held behind a1
    table.enqueue(call("b1", owner="w8"))               # another caller: goes on
    assert sent_ids(wc) == ["b1"]
    assert [s.task_id for s in actor.queue] == ["a1", "a2"]
    node.store.entries["x"] = Entry("READY")
    table.object_ready("x")
    assert sent_ids(wc) == ["b1", "a1", "a2"]


def test_a_call_whose_argument_failed_fails_without_running():
    node = FakeNode()
    table = ActorTable(node)
    _, wc = alive(node, table)
    node.store.entries["bad"] = Entry("FAILED", ("error", pickle.dumps(ValueError("boom"))))
    table.enqueue(call("c1", deps=["bad"]))
    assert sent_ids(wc) == [] and isinstance(node.failed["c1"], ValueError)


def test_done_finishes_the_call():
    node = FakeNode()
    table = ActorTable(node)
    actor, wc = alive(node, table)
    table.enqueue(call("c1"))
    table.done("c1", OK, wc)
    assert node.finished == ["c1"] and actor.inflight == {} and "c1" not in table.calls


def test_a_restart_resubmits_the_constructor_and_retries_calls_under_max_task_retries():
    node = FakeNode()
    table = ActorTable(node)
    actor, wc = alive(node, table, max_restarts=1, max_task_retries=1)
    table.enqueue(call("c1"))
    table.enqueue(call("c2"))
    actor.inflight["c2"].attempt = 1            # already retried once: max_task_retries is used up
    table.enqueue(call("c3"))
    table.worker_lost("A1", "w1", pid=123)
    assert actor.state == RESTARTING and actor.restarts_left == 0 and actor.worker is None
    assert [s.task_id for s in actor.queue] == ["c1", "c3"]       # retried, in order
    assert isinstance(node.failed["c2"], exc.RayActorError)
    assert "A1init" in node.state.specs and actor.spec.attempt == 1
    wc2 = node.add_worker("w2")
    table.created(actor.spec, OK, wc2)
    assert actor.state == ALIVE and sent_ids(wc2) == ["c1", "c3"]


def test_max_restarts_used_up_the_actor_dies_and_its_calls_fail():
    node = FakeNode()
    table = ActorTable(node)
    actor, wc = alive(node, table, max_restarts=0)
    table.enqueue(call("c1"))
    table.worker_lost("A1", "w1", pid=123)
    assert actor.state == DEAD and "max_restarts=0" in actor.cause
    assert isinstance(node.failed["c1"], exc.ActorDiedError)
    table.enqueue(call("c2"))                    # a later call fails at once, quoting the cause
    assert "max_restarts=0" in str(node.failed["c2"])


def test_restarts_without_limit():
    node = FakeNode()
    table = ActorTable(node)
    actor, _ = alive(node, table, max_restarts=-1)
    for i in range(5):
        table.worker_lost("A1", f"w{i + 1}", pid=i)
        assert actor.state == RESTARTING and actor.restarts_left == -1
        table.created(actor.spec, OK, node.add_worker(f"w{i + 2}"))


def test_kill_ends_the_actor_for_good_even_with_restarts_left():
    node = FakeNode()
    table = ActorTable(node)
    actor, _ = alive(node, table, max_restarts=3, name="c")
    table.enqueue(call("c1"))
    table.kill("A1")
    assert actor.state == DEAD and node.killed == ["w1"]
    assert isinstance(node.failed["c1"], exc.ActorDiedError) and "miniray.kill" in actor.cause
    assert table.lookup("c", None) is None      # its name is free again
    table.worker_lost("A1", "w1", pid=1)         # the death that follows restarts nothing
    assert actor.state == DEAD and "A1init" not in node.state.specs


def test_kill_with_no_restart_false_restarts_it():
    node = FakeNode()
    table = ActorTable(node)
    actor, _ = alive(node, table, max_restarts=1)
    table.kill("A1", no_restart=False)
    assert actor.state == ALIVE and node.killed == ["w1"]     # until its worker's death arrives
    table.worker_lost("A1", "w1", pid=1)
    assert actor.state == RESTARTING


def test_killing_an_actor_whose_constructor_runs_kills_that_worker():
    node = FakeNode()
    table = ActorTable(node)
    spec = creation()
    table.create(spec, 0.0)
    node.state.placed[spec.task_id] = "w5"
    table.kill("A1")
    assert node.killed == ["w5"] and table.actors["A1"].state == DEAD


def test_a_constructor_that_raised_kills_the_actor_with_its_error():
    node = FakeNode()
    table = ActorTable(node)
    spec = creation()
    table.create(spec, 0.0)
    wc = node.add_worker("w1")
    err = ("error", pickle.dumps(ValueError("bad init")))
    table.created(spec, Result([(spec.returns[0], err, ())], 0.0, 0.0, error="RayTaskError"), wc)
    actor = table.actors["A1"]
    assert actor.state == DEAD and "bad init" in actor.cause and node.killed == ["w1"]


def test_names_are_unique_per_namespace_and_get_if_exists_returns_the_first():
    node = FakeNode()
    table = ActorTable(node)
    table.create(creation("A1", name="c"), 0.0)
    with pytest.raises(ValueError, match="already exists"):
        table.create(creation("A2", name="c"), 0.0)
    assert table.create(creation("A3", name="c", get_if_exists=True), 0.0) == "handle-A1"
    assert table.create(creation("A4", name="c", namespace="other"), 0.0) == "handle-A4"
    assert table.named(None) == ["c"]
    assert table.named(None, all_namespaces=True) == [{"name": "c", "namespace": "default"},
                                                      {"name": "c", "namespace": "other"}]


def test_an_actor_dies_with_its_owner_unless_detached():
    node = FakeNode()
    table = ActorTable(node)
    table.create(creation("A1", name="a"), 0.0)
    table.actors["A1"].spec.owner = "w9"
    table.create(creation("A2", lifetime="detached"), 0.0)
    table.actors["A2"].spec.owner = "w9"
    table.owner_gone("w9")
    assert table.actors["A1"].state == DEAD and "owner" in table.actors["A1"].cause
    assert table.actors["A2"].state != DEAD
