"""Unit tests of ``store.objects.ObjectStore`` with no worker processes: a real arena in /dev/shm
(removed after each test), a real event log, values serialized as the runtime does.

What is checked: alloc and seal (inline and shared memory), the reference kinds that keep an object
alive (refs, pins, uses, captured), spilling to disk under pressure and restoring on read, reclaim
(the driver's unreported drops) before a full store gives up, and the callbacks the node connects.
"""
from __future__ import annotations

import os
import pickle
import uuid

import numpy as np
import pytest

from miniray.events import EventLog
from miniray.exceptions import ObjectStoreFullError
from miniray.store.arena import Arena
from miniray.store.objects import READY, SPILLED, ObjectStore
from miniray.store.serialization import deserialize, serialize

INLINE_MAX = 100 * 1024
MIB = 2**20


@pytest.fixture
def make_store(tmp_path):
    arenas = []

    def make(capacity=8 * MIB):
        arena = Arena.create(f"miniray_{os.getpid()}_{uuid.uuid4().hex[:8]}", capacity)
        arenas.append(arena)
        store = ObjectStore(arena, str(tmp_path / "spill"), "node-a", EventLog())
        calls = {"ready": [], "freed": [], "handles_gone": [], "remote": []}
        store.connect(on_ready=calls["ready"].append, on_freed=calls["freed"].append,
                      on_handles_gone=calls["handles_gone"].append,
                      free_remote=lambda node, block: calls["remote"].append((node, block)))
        return store, calls

    yield make
    for arena in arenas:
        arena.unlink()
        arena.close()
    assert not [a for a in arenas if os.path.exists(a.path)]


def put(store, oid, value, holder="driver"):
    """As the driver's put: the ref first (``add_ref_soon``), then the value."""
    store.add_ref_soon(oid, holder)
    store.put_serialized(oid, serialize(value), INLINE_MAX, call_site="test", pid=os.getpid())


def read(store, oid, holder="driver"):
    desc = store.read_for([oid], holder)[oid]
    return desc, deserialize(desc, store.arena) if desc[0] == "shm" else deserialize(desc)


def test_a_small_value_is_inline_and_a_large_one_lives_in_the_arena(make_store):
    store, calls = make_store()
    put(store, "a00", {"x": 1})
    put(store, "b00", np.arange(100_000, dtype=np.int64))      # 800 kB: over the inline limit
    assert store.entries["a00"].desc[0] == "inline" and store.entries["a00"].state == READY
    e = store.entries["b00"]
    assert e.desc[0] == "shm" and e.state == READY and store.arena.used >= 800_000
    assert calls["ready"] == ["a00", "b00"]
    assert read(store, "a00")[1] == {"x": 1}
    desc, arr = read(store, "b00")
    assert arr[-1] == 99_999 and store.entries["b00"].pins == {"driver": 1}   # a zero-copy view pins it
    kinds = [ev["kind"] for ev in store.emit.__self__.since(0)]
    assert kinds.count("put") == 2


def test_an_object_is_freed_when_its_last_ref_pin_and_use_go(make_store):
    store, calls = make_store()
    put(store, "b00", np.ones(50_000))
    used = store.arena.used
    read(store, "b00")                                 # pinned by a view
    store.use(["b00"], +1)                             # an argument of a pending task
    store.add_refs([("b00", -1)], "driver")            # the ref goes: still pinned and used
    assert store.entries["b00"].state == READY
    store.pin("b00", "driver", -1)                     # the view goes: still used
    assert "b00" in store.entries
    store.use(["b00"], -1)                             # the task took it: nothing keeps it now
    assert "b00" not in store.entries and calls["freed"] == ["b00"]
    assert used > 0 and store.arena.used == 0          # its block is given back


def test_an_object_captured_inside_another_lives_as_long_as_its_container(make_store):
    store, calls = make_store()
    put(store, "in00", "inner")
    store.add_ref_soon("box00", "driver")
    store.seal("box00", ("inline", pickle.dumps(None), []), ("in00",))   # its value holds a ref to in00
    store.add_refs([("in00", -1)], "driver")
    assert store.entries["in00"].captured == 1 and "in00" in store.entries
    store.add_refs([("box00", -1)], "driver")
    assert "box00" not in store.entries and "in00" not in store.entries
    assert calls["freed"] == ["box00", "in00"]


def test_alloc_spills_the_least_recently_read_object_and_a_read_restores_it(make_store):
    store, calls = make_store(capacity=2 * MIB + MIB // 2)
    put(store, "old00", np.full(MIB // 8, 1.0))       # 1 MiB each: half a MiB is left
    put(store, "new00", np.full(MIB // 8, 2.0))
    read(store, "new00")
    store.pin("new00", "driver", -1)
    off = store.alloc(MIB)                            # room only where the older one was
    assert store.entries["old00"].state == SPILLED and store.entries["new00"].state == READY
    assert os.path.exists(store.spill_file("old00")) and store.spilled_bytes > 0
    store.arena.free(off)
    path = store.spill_file("old00")
    desc, arr = read(store, "old00")                  # restored into the arena on read
    assert store.entries["old00"].state == READY and desc[0] == "shm" and arr.sum() == MIB // 8
    assert not os.path.exists(path) and store.spilled_bytes == 0
    kinds = [ev["kind"] for ev in store.emit.__self__.since(0)]
    assert "spilled" in kinds and "restored" in kinds


def test_a_pinned_object_is_never_spilled_and_a_full_store_says_what_to_do(make_store):
    store, _ = make_store(capacity=2 * MIB)
    put(store, "a00", np.ones(MIB // 8))
    read(store, "a00")                                # pinned: it cannot go to disk
    with pytest.raises(ObjectStoreFullError, match="object_store_memory"):
        store.alloc(int(1.5 * MIB))
    with pytest.raises(ObjectStoreFullError, match="cannot fit"):
        store.alloc(3 * MIB)
    assert store.entries["a00"].state == READY


def test_a_full_store_asks_reclaim_for_the_drivers_unreported_drops_before_it_fails(make_store):
    store, _ = make_store(capacity=2 * MIB)
    put(store, "a00", np.ones(MIB // 8))
    read(store, "a00")
    asked = []

    def reclaim():                                    # as Runtime.reclaim: hand over a dropped view
        asked.append(1)
        if len(asked) > 1:
            return False
        store.pin("a00", "driver", -1)
        store.add_refs([("a00", -1)], "driver")
        return True
    store.reclaim = reclaim
    off = store.alloc(int(1.5 * MIB))
    assert asked == [1] and "a00" not in store.entries
    store.arena.free(off)


def test_a_duplicate_result_keeps_the_first_and_gives_the_block_back(make_store):
    store, _ = make_store()
    put(store, "a00", np.ones(50_000))
    used = store.arena.used
    ser = serialize(np.zeros(50_000))
    off = store.alloc(ser.shm_size)
    store.seal("a00", ser.write_shm(store.arena, off))   # a retried task's
    assert store.arena.used == used and read(store, "a00")[1][0] == 1.0


def test_the_last_actor_handle_gone_calls_on_handles_gone(make_store):
    store, calls = make_store()
    store.add_refs([("act1ah", 1)], "driver")
    store.add_refs([("act1ah", -1)], "driver")
    assert calls["handles_gone"] == ["act1"] and "act1ah" not in store.entries


def test_a_freed_object_reads_as_an_error_and_a_dead_holder_releases_all(make_store):
    store, calls = make_store()
    put(store, "a00", np.ones(50_000), holder="w1")
    read(store, "a00", holder="w1")
    store.drop_holder("w1")                            # the worker died: its refs and pins go
    assert "a00" not in store.entries and store.arena.used == 0
    desc = store.read_for(["a00"], "driver")["a00"]
    assert desc[0] == "error" and "was freed" in str(pickle.loads(desc[1]))


def test_another_nodes_copy_is_freed_there_with_the_object(make_store):
    store, calls = make_store()
    put(store, "a00", np.ones(50_000))
    store.add_copy("a00", "node-b", ("shm", 4096, 100, (400_000,)))
    store.add_refs([("a00", -1)], "driver")
    assert calls["remote"] == [("node-b", 4096)]
