"""A real Slurm for the launcher tests, and a stand-in for the cluster CLI until it exists.

``slurm_cluster`` (session scope) runs ``shared/slurm/start-local-slurm.sh 2``: munged, slurmctld
and two slurmd daemons (nodes n1 and n2, both on this machine at 127.0.0.1, 2 CPUs each).  It
needs root, as CI has; otherwise the tests that use it are skipped with the reason.  The daemons
stay up after the session (the next run reuses them in about a second); jobs do not: each test
waits for or cancels its jobs, and the fixture checks at the end that the queue is empty.

``fake_miniray`` writes a small program that honours the cluster CLI's contract
(``miniray start --head --port P ... --block`` listens on ``--node-ip-address:P`` until SIGTERM;
``start --address HOST:PORT ... --block`` connects to the head and blocks) and logs each start as
one JSON line, so the job script's ports, session directories, token and clean-up can be tested on
real Slurm before the real cluster lands.  ``cluster_cli_available()`` says when it has.

Import into tests/conftest.py with ``from slurm_fixtures import slurm_cluster, fake_miniray``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared folder: $MINIRAY_SHARED, else ../shared next to the repo (CI), else /work/shared."""
    candidates = [os.environ.get("MINIRAY_SHARED"), Path(__file__).resolve().parents[2] / "shared",
                  REPO.parent / "shared", "/work/shared"]
    for c in candidates:
        if c and (Path(c) / "slurm" / "start-local-slurm.sh").is_file():
            return Path(c)
    return Path(candidates[1])


def miniray_executable() -> str:
    """The ``miniray`` console script of the interpreter running the tests."""
    here = Path(sys.executable).with_name("miniray")
    return str(here) if here.exists() else (shutil.which("miniray") or "miniray")


def cluster_cli_available() -> bool:
    """True once ``miniray start --help`` offers ``--head``: the multi-node cluster has landed."""
    try:
        proc = subprocess.run([miniray_executable(), "start", "--help"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and "--head" in proc.stdout


def queue() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T %j"], capture_output=True, text=True,
                         timeout=30).stdout
    return out.split("\n")[:-1] if out.endswith("\n") else [l for l in out.split("\n") if l]


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running two-node local Slurm; yields the partition name.  Skips if it cannot be had."""
    script = shared_dir() / "slurm" / "start-local-slurm.sh"
    if not script.is_file():
        pytest.skip(f"no {script}: set MINIRAY_SHARED to the folder holding slurm/")
    if os.geteuid() != 0:
        pytest.skip("starting a local Slurm needs root (CI runs as root); run the tests as root, "
                    f"or start it yourself with `sudo {script} 2`")
    proc = subprocess.run(["bash", str(script), "2"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"{script} 2 failed:\n{proc.stdout}\n{proc.stderr}")
    yield "debug"
    wait_for(lambda: not queue(), timeout=60, interval=0.5)   # COMPLETING jobs drain in seconds
    left = queue()
    if left:
        subprocess.run(["scancel", *[l.split()[0] for l in left]], timeout=30)
        pytest.fail(f"jobs left in the queue after the tests: {left}")


FAKE_MINIRAY = r'''#!PYTHON
"""Stand-in for `miniray start --head|--address ... --block` (tests only): logs, listens, blocks."""
import argparse, json, os, signal, socket, stat, subprocess, sys, time

p = argparse.ArgumentParser()
p.add_argument("verb")
p.add_argument("--head", action="store_true")
p.add_argument("--address")
p.add_argument("--port", type=int)
p.add_argument("--num-cpus", type=int)
p.add_argument("--num-gpus", type=int, default=0)
p.add_argument("--node-ip-address")
p.add_argument("--block", action="store_true")
a = p.parse_args()
assert a.verb == "start" and a.block, sys.argv
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
session = os.environ.get("MINIRAY_SESSION_DIR", "")
st = os.stat(session) if session else None
record = {"role": "head" if a.head else "node", "pid": os.getpid(), "argv": sys.argv[1:],
          "node": os.environ.get("SLURMD_NODENAME"), "job": os.environ.get("SLURM_JOB_ID"),
          "session": session, "session_mode": oct(stat.S_IMODE(st.st_mode)) if st else None,
          "session_owner": st.st_uid if st else None, "token": os.environ.get("MINIRAY_TOKEN"),
          "port": a.port, "address": a.address, "ip": a.node_ip_address, "cpus": a.num_cpus,
          "gpus": a.num_gpus}
# a child, as a real node's workers would be: it must go when the node goes
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
record["worker_pid"] = worker.pid
def log():
    with open(os.environ["FAKE_MINIRAY_LOG"], "a") as f:
        f.write(json.dumps(record) + "\n")
# The head logs before it listens: the job script starts the driver once the port answers, and
# may stop the head as soon as the driver ends, so a record written after listen() can be lost.
if a.head:
    log()
    srv = socket.socket()
    srv.bind((a.node_ip_address, a.port))
    srv.listen(16)
else:   # a node logs once it has reached the head, which is what its record is to prove
    host, port = a.address.rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=10)
    log()
if a.head:
    while True:
        c, _ = srv.accept()
        c.close()
else:
    time.sleep(3600)
'''


@pytest.fixture(scope="session")
def fake_miniray(tmp_path_factory) -> Path:
    """Path of the stand-in ``miniray`` (see the module docstring)."""
    path = tmp_path_factory.mktemp("fake-miniray") / "miniray"
    path.write_text(FAKE_MINIRAY.replace("PYTHON", sys.executable, 1))
    path.chmod(0o755)
    return path


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.2):
    """Poll ``predicate`` until truthy; return its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
