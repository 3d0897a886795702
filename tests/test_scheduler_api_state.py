"""The pure transitions behind recursive cancel and GPU worker choice, driven by hand (STYLE 3)."""
from miniray.scheduler import state as S
from miniray.transport.messages import TaskSpec


def spec(tid, parent=None, gpus=0):
    res = {"CPU": 1.0, **({"GPU": float(gpus)} if gpus else {})}
    return TaskSpec(tid, "f", "task", "f", ("inline", b"", []), (), (), (tid + "00",), 1, res,
                    options={"parent": parent} if parent else {})


def test_descendants_follow_parent_links_and_skip_other_trees():
    st = S.new_state({"CPU": 4.0})
    for tid, parent in (("p", None), ("c1", "p"), ("c2", "p"), ("g1", "c1"), ("other", None), ("o1", "other")):
        S.submit(st, spec(tid, parent), set())
    assert sorted(S.descendants(st, "p")) == ["c1", "c2", "g1"]
    assert S.descendants(st, "c2") == [] and S.descendants(st, "gone") == []


def test_a_gpu_call_skips_a_worker_that_ran_cpu_calls():
    st = S.new_state({"CPU": 2.0, "GPU": 1.0})
    st.workers["w1"] = S.Slot(state="idle")
    S.submit(st, spec("cpu"), set())
    assert S.assign(st) == [("cpu", "w1")] and st.workers["w1"].ran_cpu_only
    S.task_done(st, "cpu")
    S.submit(st, spec("gpu", gpus=1), set())
    assert S.assign(st) == [], "the only idle worker ran a CPU call"
    st.workers["w2"] = S.Slot(state="idle")
    assert S.assign(st) == [("gpu", "w2")] and st.workers["w2"].gpus == [0]
    assert not S.usable(st.workers["w1"], {"GPU": 1.0}) and S.usable(st.workers["w1"], {"CPU": 1.0})
