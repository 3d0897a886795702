"""Tests for ``miniray.util.progress.track``, behind ``miniray.get(refs, progress=True)``.

A fake ``wait`` drives it without a runtime (the oracle is a plain list of ready times); one test
uses a real two-CPU runtime.  Outside a Jupyter kernel the bar is tqdm text on stderr, and nothing
may reach stdout.  The widget bar is checked in a real kernel by tests/test_magics.py.
"""
from __future__ import annotations

import time

from miniray.util.progress import track


class FakeWait:
    """``wait`` over refs that become ready at given monotonic times."""

    def __init__(self, ready_after: dict):
        start = time.monotonic()
        self.ready_at = {ref: start + delay for ref, delay in ready_after.items()}
        self.calls = []

    def __call__(self, refs, num_returns=1, timeout=None):
        assert len(set(refs)) == len(refs), "track must not pass a ref twice"
        self.calls.append((list(refs), num_returns, timeout))
        deadline = time.monotonic() + (timeout or 0)
        while True:
            now = time.monotonic()
            ready = [r for r in refs if self.ready_at[r] <= now]
            if len(ready) >= num_returns or now >= deadline:
                return ready, [r for r in refs if r not in ready]
            time.sleep(0.005)


def test_track_blocks_until_every_ref_is_ready_and_writes_only_stderr(capsys):
    wait = FakeWait({"a": 0.0, "b": 0.15, "c": 0.3})
    start = time.monotonic()
    track(["a", "b", "c", "a"], wait)
    assert time.monotonic() - start >= 0.3
    assert all(wait.ready_at[r] <= time.monotonic() for r in "abc")
    assert wait.calls[0][0] == ["a", "b", "c"], "duplicates are passed once"
    out, err = capsys.readouterr()
    assert out == ""
    assert "3/3" in err


def test_track_gives_up_after_its_timeout(capsys):
    wait = FakeWait({"a": 0.0, "b": 60.0})
    start = time.monotonic()
    track(["a", "b"], wait, timeout=0.2)
    assert 0.15 <= time.monotonic() - start < 2
    out, err = capsys.readouterr()
    assert out == "" and "1/2" in err


def test_get_with_progress_on_a_real_runtime(ray_start, capsys):
    miniray = ray_start

    @miniray.remote
    def slow(i):
        time.sleep(0.1)
        return i * i

    assert miniray.get([slow.remote(i) for i in range(6)], progress=True) == [
        i * i for i in range(6)]
    out, err = capsys.readouterr()
    assert out == "" and "6/6" in err
