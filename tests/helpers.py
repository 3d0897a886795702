"""Small helpers shared by the runtime test modules (tasks, actors, store)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "src")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def alive(pid: int) -> bool:
    """True while ``pid`` is a running (not zombie) process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def shm_of(pid: int) -> list[str]:
    """The ``/dev/shm`` entries that belong to the miniray driver ``pid``."""
    try:
        return [n for n in os.listdir("/dev/shm") if n.startswith(f"miniray_{pid}_")]
    except FileNotFoundError:
        return []


def driver_script(tmp_path, body: str, name: str = "driver.py") -> str:
    """Write a driver script into ``tmp_path`` and return its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def start_driver(path: str, env: dict | None = None, **kw) -> subprocess.Popen:
    """Run a driver script with this checkout's miniray; ``env``: variables to add or override."""
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kw)


def read_line_starting(proc: subprocess.Popen, prefix: str, timeout: float = 30.0) -> str:
    """The first stdout line of ``proc`` that starts with ``prefix`` (fails with stderr on EOF)."""
    import select
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    proc.kill()
    raise AssertionError(f"driver never printed {prefix!r}; stderr:\n{proc.stderr.read()}")


# The seed deck's two examples as a job script that joins a running cluster, printing exactly
# "[0, 1, 4, 9]\n[2, 3, 4, 5]\n" (used by the cluster and Slurm tests).
SEED_JOB = textwrap.dedent("""\
    import miniray as ray

    ray.init(address="auto")

    @ray.remote()
    def my_function(x):
        return x * x

    futures = [my_function.remote(i) for i in range(4)]
    print(ray.get(futures))

    @ray.remote
    class Counter(object):
        def __init__(self, init_val=0):
            self.n = init_val

        def increment(self, multiplier=1):
            self.n += 1 * multiplier

        def read(self):
            return self.n

    counters = [Counter.remote(i) for i in range(4)]
    [c.increment.remote(2) for c in counters]
    print(ray.get([c.read.remote() for c in counters]))
""")


def runtime_frames(text: str, package_dir: str | None = None) -> list[str]:
    """The traceback lines in ``text`` that name a file inside the miniray package itself.

    A user's own files may sit in a folder named ``miniray`` (the default ``git clone`` name), so
    the test is the package's real path, not the word "miniray/"."""
    if package_dir is None:
        import miniray
        package_dir = os.path.dirname(os.path.abspath(miniray.__file__)) + os.sep
    return [line for line in text.splitlines()
            if line.strip().startswith("File ") and package_dir in line]


def run_as_ray(tmp_path, modules: str, body: str, *args: str, timeout: float = 120) -> dict:
    """Run ``body`` (a Ray documentation example) in a fresh driver with ``ray`` (and each of the
    comma-separated ``modules``, e.g. ``"miniray.data, miniray.data.aggregate"``) aliased to miniray;
    return its stdout as ``{first word: rest of line}``, failing with its stderr if it exits non-zero."""
    alias = (f"import sys\nimport miniray, {modules}\nfor _name in list(sys.modules):\n"
             "    if _name == 'miniray' or _name.startswith('miniray.'):\n"
             "        sys.modules['ray' + _name[len('miniray'):]] = sys.modules[_name]\n")
    path = driver_script(tmp_path, alias + textwrap.dedent(body))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name in ("MINIRAY_STORAGE", "MINIRAY_WORKFLOW_STORAGE", "MINIRAY_ADDRESS"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, path, *args], capture_output=True, text=True, env=env,
                         timeout=timeout, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


def kill_blocked_constructor(rt, actor, blocker, total_cpus, used_meanwhile=None):
    """#14 item 10, shared by the one-node and the cluster test: wait until ``actor``'s constructor
    runs (and blocks in its get of ``blocker``), check the CPUs counted as used meanwhile, kill it,
    and check that every CPU comes back and that later calls fail with ActorDiedError."""
    import pytest
    from miniray.events import events
    assert wait_until(lambda: any(e["kind"] == "started" and e["task_id"] == actor._actor_id[1:]
                                  for e in events()), timeout=20), "the constructor never started"
    time.sleep(0.5)                         # it is now blocked in its get
    if used_meanwhile is not None:
        assert rt.available_resources().get("CPU") == total_cpus - used_meanwhile, rt.available_resources()
    rt.kill(actor)
    rt.cancel(blocker, force=True)
    assert wait_until(lambda: rt.available_resources().get("CPU") == total_cpus, timeout=15), \
        rt.available_resources()
    with pytest.raises(rt.exceptions.ActorDiedError):
        rt.get(actor.f.remote(), timeout=30)
