"""The scheduler's pure transitions, driven by hand: no threads, no processes (STYLE 3)."""
from miniray.scheduler import state as S
from miniray.transport.messages import TaskSpec


def spec(tid, fn="f", deps=(), cpus=1.0, type="task", **kw):
    return TaskSpec(tid, fn, type, fn, ("inline", b"", []), tuple(deps), (), (tid + "00",), 1,
                    {"CPU": cpus} if cpus else {}, **kw)


def two_idle_workers():
    st = S.new_state({"CPU": 2.0})
    for w in ("w1", "w2"):
        st.workers[w] = S.Slot(state="idle")
    return st


def test_ready_task_goes_to_an_idle_worker_and_holds_a_cpu():
    st = two_idle_workers()
    S.submit(st, spec("t1"), set())
    placed = S.assign(st)
    assert len(placed) == 1 and placed[0][0] == "t1"
    wid = placed[0][1]
    assert st.available == {"CPU": 1.0}
    assert st.workers[wid].state == "busy" and st.workers[wid].queue == ["t1"]
    assert S.task_done(st, "t1", 0.5) == wid
    assert st.available == {"CPU": 2.0} and st.workers[wid].state == "idle"
    assert st.durations == {"f": 0.5}


def test_a_task_waits_for_its_dependencies():
    st = two_idle_workers()
    S.submit(st, spec("t2", deps=["a", "b"]), {"a", "b"})
    assert S.assign(st) == [] and st.waiting == {"t2": {"a", "b"}}
    assert S.object_ready(st, "a") == []
    assert S.object_ready(st, "b") == ["t2"]
    assert st.waiting == {} and list(st.ready) == ["t2"]


def test_no_worker_and_no_resources_leaves_the_queue_in_order():
    st = two_idle_workers()
    for t in ("t1", "t2", "t3", "t4"):
        S.submit(st, spec(t, fn="slow"), set())
    assert [t for t, _ in S.assign(st)] == ["t1", "t2"]
    assert S.queued(st) == ["t3", "t4"] and st.available == {"CPU": 0.0}


def test_fast_functions_are_prefetched_onto_busy_workers():
    st = two_idle_workers()
    st.durations["tiny"] = 0.0001
    for i in range(6):
        S.submit(st, spec(f"t{i}", fn="tiny"), set())
    placed = S.assign(st)
    assert len(placed) == 6 and not S.queued(st)
    assert sorted(len(s.queue) for s in st.workers.values()) == [3, 3]
    assert st.available == {"CPU": 0.0}          # one CPU per worker slot, not per queued call


def test_prefetch_depth_follows_how_long_the_function_takes():
    """Tiny calls queue deep (a frame carries many), slower ones only a few milliseconds' worth."""
    for took, per_worker in ((0.00001, S.PREFETCH), (0.001, int(S.QUEUED_S / 0.001)), (0.0019, 2)):
        st = two_idle_workers()
        st.durations["fn"] = took
        for i in range(3 * S.PREFETCH):
            S.submit(st, spec(f"t{i}", fn="fn"), set())
        S.assign(st)
        assert [len(s.queue) for s in st.workers.values()] == [per_worker, per_worker], took
        assert len(S.queued(st)) == 3 * S.PREFETCH - 2 * per_worker
    st = two_idle_workers()
    st.durations["fn"] = S.FAST * 2                 # not fast: one call per worker, the rest wait
    for i in range(4):
        S.submit(st, spec(f"t{i}", fn="fn"), set())
    assert len(S.assign(st)) == 2 and len(S.queued(st)) == 2


def test_a_task_too_big_for_the_node_is_not_placed():
    st = two_idle_workers()
    S.submit(st, spec("big", cpus=4.0), set())
    assert S.assign(st) == [] and S.queued(st) == ["big"]
    assert not S.feasible(st.total, {"CPU": 4.0})


def test_blocked_worker_releases_its_cpu_and_gets_it_back():
    st = two_idle_workers()
    S.submit(st, spec("t1"), set())
    [(_, wid)] = S.assign(st)
    S.worker_blocked(st, wid)
    assert st.available == {"CPU": 2.0} and st.workers[wid].state == "blocked"
    S.worker_unblocked(st, wid)
    assert st.available == {"CPU": 1.0} and st.workers[wid].state == "busy"


def test_hand_back_requeues_calls_at_the_front_in_order():
    st = two_idle_workers()
    st.durations["tiny"] = 0.0001
    for i in range(4):
        S.submit(st, spec(f"t{i}", fn="tiny"), set())
    S.assign(st)
    wid, slot = next((w, s) for w, s in st.workers.items() if len(s.queue) > 1)
    back = slot.queue[1:]
    S.hand_back(st, wid, back)
    assert S.queued(st) == back and slot.queue == slot.queue[:1]
    assert all(t not in st.placed for t in back)


def test_dead_worker_returns_its_calls_and_resources():
    st = two_idle_workers()
    S.submit(st, spec("t1"), set())
    [(_, wid)] = S.assign(st)
    assert S.worker_gone(st, wid) == ["t1"]
    assert wid not in st.workers and st.available == {"CPU": 2.0} and st.placed == {}


def test_actor_holds_only_its_explicit_resources_for_life():
    st = two_idle_workers()
    creation = spec("c1", fn="Counter", cpus=0.0, type="actor_creation", options={"explicit": ()})
    S.submit(st, creation, set())
    [(_, wid)] = S.assign(st)
    assert st.available == {"CPU": 1.0}           # placement needs one CPU free ...
    S.task_done(st, "c1")
    S.bind_actor(st, wid, "a1", {})
    assert st.available == {"CPU": 2.0}           # ... but a default actor holds none while alive
    assert st.workers[wid].state == "actor" and st.workers[wid].actor_id == "a1"


def test_gpu_ids_are_handed_out_and_returned():
    st = S.new_state({"CPU": 2.0, "GPU": 2.0})
    st.workers["w1"] = S.Slot(state="idle")
    st.workers["w2"] = S.Slot(state="idle")
    S.submit(st, TaskSpec("g", "g", "task", "g", ("inline", b"", []), (), (), ("g00",), 1,
                          {"CPU": 1.0, "GPU": 1.0}), set())
    [(_, wid)] = S.assign(st)
    assert st.workers[wid].gpus == [0] and st.nodes[""]["gpus"] == [1]
    S.task_done(st, "g")
    assert sorted(st.nodes[""]["gpus"]) == [0, 1] and st.available["GPU"] == 2.0


def test_gpu_ids_belong_to_each_node():
    """Two nodes with one GPU each: each task sees id 0, of its own node (CUDA_VISIBLE_DEVICES=0)."""
    st = S.new_state({"CPU": 1.0, "GPU": 1.0}, "head")
    S.add_node(st, "b", {"CPU": 1.0, "GPU": 1.0})
    st.workers["w1"] = S.Slot(node="head", state="idle")
    st.workers["w2"] = S.Slot(node="b", state="idle")
    for t in ("g1", "g2"):
        S.submit(st, TaskSpec(t, t, "task", t, ("inline", b"", []), (), (), (t + "00",), 1,
                              {"CPU": 1.0, "GPU": 1.0}), set())
    placed = dict(S.assign(st))
    assert sorted(st.workers[w].node for w in placed.values()) == ["b", "head"]
    assert [st.workers[w].gpus for w in placed.values()] == [[0], [0]]
    assert st.nodes["head"]["gpus"] == [] and st.nodes["b"]["gpus"] == []
    S.worker_gone(st, placed["g2"])
    assert st.nodes[st.workers[placed["g1"]].node]["gpus"] == []      # only the dead worker's id returns


def test_forget_removes_a_waiting_task_everywhere():
    st = two_idle_workers()
    S.submit(st, spec("t1", deps=["x"]), {"x"})
    S.forget(st, "t1")
    assert st.waiting == {} and st.specs == {} and st.dependents == {"x": set()}


def test_calls_that_cannot_be_placed_park_by_kind_and_do_not_block_others():
    st = two_idle_workers()
    for i in range(50):
        S.submit(st, spec(f"big{i}", cpus=4.0), set())
    S.submit(st, spec("small"), set())
    assert [t for t, _ in S.assign(st)] == ["small"]        # not stuck behind 50 unplaceable calls
    assert list(st.ready) == [] and len(st.parked) == 1       # one kind parked, looked at once
    assert S.queued(st) == [f"big{i}" for i in range(50)]
    S.forget(st, "big3")
    assert "big3" not in S.queued(st)


def test_calls_queued_on_an_object_being_made_again_wait_for_it():
    st = two_idle_workers()
    S.submit(st, spec("big", deps=("x00",), cpus=4.0), set())     # ready, parked: nothing fits it
    S.submit(st, spec("later", deps=("x00", "y00")), set())       # ready, not looked at yet
    S.assign(st)                                                  # "later" runs; "big" parks
    S.submit(st, spec("next", deps=("x00",), cpus=4.0), set())
    S.wait_again(st, ["x00"])                                     # x00 is lost and re-made
    assert S.queued(st) == [] and st.waiting == {"big": {"x00"}, "next": {"x00"}}
    assert sorted(S.object_ready(st, "x00")) == ["big", "next"]
