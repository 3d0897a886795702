"""Fixtures shared by the whole suite.

The autouse ``no_leftovers`` fixture is the suite's promise that nothing is left behind: after each
test module, no process started by this pytest process survives and ``/dev/shm`` holds no segment of
ours that was not there before.  Runtimes started inside a module must be shut down by its end.
"""
from __future__ import annotations

import faulthandler
import os
import time

import psutil
import pytest

SHM_PREFIX = "miniray"
faulthandler.enable()


def _our_shm() -> set[str]:
    """Our segments: those of this process's runtimes, and any whose owning driver is dead (a driver
    in a subprocess that was killed).  Live runtimes of other processes on the machine are not ours."""
    try:
        names = [n for n in os.listdir("/dev/shm") if n.startswith(SHM_PREFIX)]
    except FileNotFoundError:
        return set()
    mine = set()
    for n in names:
        parts = n.split("_")
        pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
        if pid is None or pid == os.getpid() or not psutil.pid_exists(pid):
            mine.add(n)
    return mine


def _children() -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process().children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return []


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; fail the test with its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


@pytest.fixture(autouse=True, scope="module")
def no_leftovers():
    shm_before = _our_shm()
    yield
    import miniray

    if miniray.is_initialized():
        miniray.shutdown()
    left = wait_until(lambda: not _children(), timeout=10)
    procs = _children()
    for p in procs:
        p.kill()
    assert left, f"processes left behind: {[(p.pid, p.cmdline()[:4]) for p in procs]}"
    leaked = wait_until(lambda: not (_our_shm() - shm_before), timeout=10)
    assert leaked, f"/dev/shm segments left behind: {sorted(_our_shm() - shm_before)}"


@pytest.fixture
def rt():
    """A two-CPU runtime shared by the tests of a module: started on first use (and again after a
    test that needed its own); ``module_runtime_shutdown`` stops it when the module ends."""
    import miniray

    if not miniray.is_initialized():
        miniray.init(num_cpus=2)
    return miniray


@pytest.fixture(autouse=True, scope="module")
def module_runtime_shutdown(no_leftovers):
    """Shut down whatever runtime a module's tests shared, before ``no_leftovers`` looks."""
    yield
    import miniray

    miniray.shutdown()


@pytest.fixture
def ray_start():
    """A fresh two-CPU runtime for one test, shut down afterwards whatever the test did."""
    import miniray

    miniray.init(num_cpus=2)
    try:
        yield miniray
    finally:
        miniray.shutdown()


@pytest.fixture(scope="module")
def shared_runtime():
    """One two-CPU runtime for a whole module of tests that do not break it."""
    import miniray

    miniray.init(num_cpus=2)
    try:
        yield miniray
    finally:
        miniray.shutdown()


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: needs a real Slurm (started by .ci/run or the fixture)")
    config.addinivalue_line("markers", "notebook: runs real Jupyter kernels")
    config.addinivalue_line("markers", "ray: needs real Ray (run by .ci/run in its own venv)")


from slurm_fixtures import fake_miniray, slurm_cluster  # noqa: E402,F401  (real Slurm for the launcher tests)
