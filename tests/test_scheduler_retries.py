"""Retries as transitions of the scheduler state (scheduler/state.py), driven by hand with plain
dicts: what becomes of a call that failed, or whose worker died, and of an actor's calls when it
restarts.  No threads, no processes (STYLE 3)."""
from miniray.scheduler import state as S
from miniray.transport.messages import TaskSpec


def spec(tid, deps=(), type="task", max_retries=3, attempt=0):
    return TaskSpec(tid, "f", type, "f", ("inline", b"", []), tuple(deps), (), (tid + "00",), 1,
                    {"CPU": 1.0}, max_retries=max_retries, attempt=attempt)


def placed(st, *specs):
    """Submit ``specs`` to a one-worker state and place them all on "w1"."""
    st.workers["w1"] = S.Slot(state="idle")
    st.durations["f"] = 0.0001          # fast: several queue on the one worker
    for sp in specs:
        S.submit(st, sp, set())
    assert {w for _, w in S.assign(st)} == {"w1"}
    return st


def test_a_failed_call_with_retries_left_is_submitted_again_waiting_for_unready_args():
    st = placed(S.new_state({"CPU": 1.0}), spec("t1"))
    again = spec("t1", deps=["a", "b"])
    st.specs["t1"] = again
    ready = {"a"}
    assert S.retry(st, again, ready.__contains__) is True
    assert again.attempt == 1
    assert st.placed == {} and st.waiting == {"t1": {"b"}} and st.specs["t1"] is again
    assert st.workers["w1"].state == "idle" and st.available == {"CPU": 1.0}


def test_a_failed_call_with_no_retries_left_is_not_retried_and_state_is_untouched():
    st = placed(S.new_state({"CPU": 1.0}), spec("t1", max_retries=2, attempt=2))
    sp = st.specs["t1"]
    assert S.retry(st, sp, lambda oid: True) is False
    assert sp.attempt == 2 and st.placed == {"t1": "w1"} and st.workers["w1"].state == "busy"


def test_max_retries_zero_never_retries():
    st = placed(S.new_state({"CPU": 1.0}), spec("t1", max_retries=0))
    assert S.retry(st, st.specs["t1"], lambda oid: True) is False


def test_calls_lost_with_a_worker_are_retried_failed_cancelled_or_given_to_the_actor_table():
    st = placed(S.new_state({"CPU": 1.0}), spec("run"), spec("used", max_retries=1, attempt=1),
                spec("cancel"))
    lost = S.worker_gone(st, "w1")
    assert lost == ["run", "used", "cancel"]
    st.specs["A"] = spec("A", type="actor_creation")    # an actor's constructor, lost the same way
    out = S.after_worker_lost(st, lost + ["A"], cancelled={"cancel"})
    assert [(o, sp.task_id) for o, sp in out] == [("retried", "run"), ("failed", "used"),
                                                  ("cancelled", "cancel"), ("creation_lost", "A")]
    assert st.specs["run"].attempt == 1 and list(st.ready) == ["run"]
    assert set(st.specs) == {"run"}            # the others are forgotten
    assert st.available == {"CPU": 1.0} and "w1" not in st.workers


def test_retried_lost_calls_keep_their_order_at_the_head_of_the_queue():
    st = placed(S.new_state({"CPU": 1.0}), spec("t1"), spec("t2"))
    S.submit(st, spec("later"), set())         # no worker left for it: it waits
    lost = S.worker_gone(st, "w1")
    S.after_worker_lost(st, lost, cancelled=set())
    assert S.queued(st) == ["t1", "t2", "later"]


def test_a_call_the_node_no_longer_owns_is_skipped():
    st = placed(S.new_state({"CPU": 1.0}), spec("t1"))
    lost = S.worker_gone(st, "w1")
    st.specs.clear()
    assert S.after_worker_lost(st, lost, cancelled=set()) == []


def test_actor_restarts_count_down_and_minus_one_means_forever():
    assert S.actor_restarts_left(2) == 1
    assert S.actor_restarts_left(1) == 0
    assert S.actor_restarts_left(0) is None
    assert S.actor_restarts_left(-1) == -1


def test_an_actors_calls_in_flight_are_retried_under_max_task_retries():
    fresh, tried = spec("c1"), spec("c2", attempt=1)
    again, failed = S.actor_calls_after_restart([fresh, tried], max_task_retries=1)
    assert again == [fresh] and failed == [tried] and fresh.attempt == 1
    again, failed = S.actor_calls_after_restart([spec("c3", attempt=50)], max_task_retries=-1)
    assert len(again) == 1 and failed == []
    again, failed = S.actor_calls_after_restart([spec("c4")], max_task_retries=0)
    assert again == [] and len(failed) == 1


def test_an_actors_constructor_blocked_in_get_keeps_the_cpu_it_asked_for():
    """#14 item 10: a task blocked in get lends its CPU out; an actor's constructor keeps what it
    asked for explicitly (its lifetime resources), and lends out only the implicit placement CPU."""
    st = placed(S.new_state({"CPU": 1.0}), spec("A", type="actor_creation"))
    st.specs["A"].options["explicit"] = ("CPU",)          # num_cpus=1 given
    S.worker_blocked(st, "w1")
    assert st.available == {"CPU": 0.0} and st.workers["w1"].state == "busy"
    S.worker_gone(st, "w1")                   # killed meanwhile: the CPU comes back
    assert st.available == {"CPU": 1.0}
    for kind in ("actor_creation", "task"):   # implicit CPU, or a task: lent out while blocked
        st = placed(S.new_state({"CPU": 1.0}), spec("t1", type=kind))
        S.worker_blocked(st, "w1")
        assert st.available == {"CPU": 1.0} and st.workers["w1"].state == "blocked"


def test_a_call_blocked_in_two_gets_takes_its_cpu_back_only_when_both_are_answered():
    """#14: a call whose own thread waits in get beside it: its CPU stays lent out until the last
    of its gets is answered."""
    st = placed(S.new_state({"CPU": 1.0}), spec("t1"))
    S.worker_blocked(st, "w1")
    S.worker_blocked(st, "w1")                # the call's second thread waits too
    assert st.available == {"CPU": 1.0}
    S.worker_unblocked(st, "w1")
    assert st.available == {"CPU": 1.0} and st.workers["w1"].state == "blocked"
    S.worker_unblocked(st, "w1")
    assert st.available == {"CPU": 0.0} and st.workers["w1"].state == "busy"
