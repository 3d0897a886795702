"""The one waiting mechanism for get and wait (store/objects.py: Watch), on a real store over a
real shared-memory arena, with no node and no processes: when a watch is set, what ``on_set``
sees, and that a closed store never lets a waiter wait for ever."""
import os
import threading

import pytest

from miniray.events import EventLog
from miniray.store.arena import Arena
from miniray.store.objects import ObjectStore
from miniray.store.serialization import error_desc


@pytest.fixture
def store(tmp_path):
    arena = Arena.create(f"miniray_test_watch_{os.getpid()}", 1 << 20)
    yield ObjectStore(arena, str(tmp_path), "n1", EventLog())
    arena.close()
    arena.unlink()


def inline(value=b"x"):
    return ("inline", value, [])


def test_a_get_watch_is_set_once_every_object_is_ready(store):
    w = store.watch({"a", "b"})
    store.seal("a", inline())
    assert not w.is_set() and w.remaining == {"b"}
    store.seal("b", inline())
    assert w.is_set() and not w.aborted and store.watchers == {}


def test_a_get_watch_is_set_at_the_first_failure(store):
    w = store.watch({"a", "b"})
    store.seal("a", error_desc(ValueError("boom")), failed=True)
    assert w.is_set() and w.remaining == {"b"}


def test_a_wait_watch_is_set_when_k_of_n_are_ready_and_counts_a_failure_as_ready(store):
    w = store.watch({"a", "b", "c"}, slack=1, fail_fast=False)      # wait(num_returns=2)
    store.seal("a", error_desc(ValueError("boom")), failed=True)
    assert not w.is_set()
    store.seal("c", inline())
    assert w.is_set() and w.remaining == {"b"}


def test_a_watch_on_ready_objects_is_set_at_once_and_on_set_runs_once(store):
    store.add_refs([("a", 1)], "driver")      # held, so it stays once sealed
    store.seal("a", inline())
    seen = []
    w = store.watch({"a"}, on_set=seen.append)
    assert w.is_set() and seen == [w]
    w.set()
    assert seen == [w]


def test_closing_sets_every_watch_as_aborted_now_and_later(store):
    w = store.watch({"never"})
    woke = []
    t = threading.Thread(target=lambda: woke.append(w.wait()))   # blocks without a timeout
    t.start()
    store.abort_watches()
    t.join(5)
    assert woke == [True] and w.aborted
    later = store.watch({"also-never"})
    assert later.is_set() and later.aborted


def test_an_answer_watch_is_set_by_its_owner(store):
    w = store.watch_answer()
    assert not w.is_set()
    w.set()
    assert w.is_set() and not w.aborted
    store.unwatch(w.remaining, w)
    assert store.watchers == {}
