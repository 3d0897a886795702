"""A head started with the real CLI, joined by drivers over TCP on loopback, with token authentication.

Each test module starts one head (``miniray start --head --port 0``, daemonized, as a user would) and
stops it with ``miniray stop``; the head is not our child process, so the check that it is gone is
explicit here rather than left to the autouse fixture.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

import miniray
from miniray.cluster import transfer
from miniray.session import live_heads
from miniray.transport import auth

CLI = [sys.executable, "-m", "miniray.cli"]


def _run(args, env=None, timeout=60):
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def head():
    before = {h["pid"] for h in live_heads()}
    out = _run(["start", "--head", "--port", "0", "--num-cpus", "2", "--resources", '{"teacher": 1}'])
    assert out.returncode == 0, out.stderr
    info = next(h for h in live_heads() if h["pid"] not in before)
    assert info["address"] in out.stdout and "miniray.init(address=" in out.stdout
    with open(os.path.join(info["session_dir"], "token"), "rb") as f:
        info["token"] = f.read()
    assert oct(os.stat(os.path.join(info["session_dir"], "token")).st_mode & 0o777) == "0o600"
    yield info
    if miniray.is_initialized():
        miniray.shutdown()
    stop = _run(["stop"])
    assert stop.returncode == 0 and f"pid {info['pid']}" in stop.stdout
    assert not psutil.pid_exists(info["pid"]) or psutil.Process(info["pid"]).status() == psutil.STATUS_ZOMBIE
    gone = [p for p in psutil.process_iter(["cmdline"]) if info["session_dir"] in " ".join(p.info["cmdline"] or [])]
    assert not gone, f"processes of the head left behind: {gone}"
    assert not os.path.exists(info["session_dir"])


from helpers import SEED_JOB as SEED  # noqa: E402  (the seed's examples as a job script)

def test_seed_examples_run_unchanged_on_the_cluster(head, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SEED)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[0, 1, 4, 9]\n[2, 3, 4, 5]\n"


def test_driver_over_tcp_sees_resources_objects_and_events(head):
    miniray.init(address=head["address"])
    try:
        import numpy as np
        assert miniray.cluster_resources()["teacher"] == 1.0
        assert miniray.cluster_resources()["CPU"] == 2.0

        @miniray.remote(resources={"teacher": 1})
        def where():
            return os.getpid()

        assert psutil.Process(miniray.get(where.remote())).parent().pid == head["pid"]
        arr = np.arange(300_000)
        ref = miniray.put(arr)
        back = miniray.get(ref)
        assert (back == arr).all() and not back.flags.writeable
        kinds = {e["kind"] for e in miniray.events.events()}
        assert {"submitted", "started", "finished", "put"} <= kinds
        assert any(o["object_id"] == ref.hex() for o in miniray.util.state.list_objects())
    finally:
        miniray.shutdown()


def test_a_driver_that_leaves_takes_its_objects_and_actors_with_it(head, tmp_path):
    script = tmp_path / "leave.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, miniray as ray
        ray.init(address="auto")
        @ray.remote
        class Keeper:
            def pid(self):
                import os
                return os.getpid()
        k = Keeper.remote()
        ref = ray.put(np.ones(1_000_000))
        print(ray.get(k.pid.remote()), ref.hex())
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pid, oid = out.stdout.split()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(int(pid)), "the driver's actor outlived its driver"
    miniray.init(address="auto")
    try:
        assert all(o["object_id"] != oid for o in miniray.util.state.list_objects())
    finally:
        miniray.shutdown()


def test_a_driver_that_dies_mid_write_gives_its_blocks_back(head, tmp_path):
    """A block reserved in the head's store (here by util.empty) but never sealed is freed when its
    driver vanishes, as a dead worker's are."""
    script = tmp_path / "vanish.py"
    script.write_text(textwrap.dedent("""
        import os, miniray
        miniray.init(address="auto")
        a = miniray.util.empty((4 * 2**20,))          # 32 MiB reserved, never put
        a[:] = 1
        print(miniray.util.state.memory_summary()["used"], flush=True)
        os._exit(0)                                  # no shutdown: gone mid-work
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 32 * 2**20
    miniray.init(address="auto")
    try:
        deadline = time.monotonic() + 10
        while miniray.util.state.memory_summary()["used"] >= 32 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert miniray.util.state.memory_summary()["used"] < 32 * 2**20
    finally:
        miniray.shutdown()


def test_wrong_token_and_garbage_are_refused_and_the_head_keeps_serving(head, monkeypatch):
    monkeypatch.setenv("MINIRAY_TOKEN", "not-the-token-of-this-head")
    with pytest.raises(ConnectionError, match="authentication failed"):
        miniray.init(address=head["address"])
    assert not miniray.is_initialized()
    host, port = head["address"].rsplit(":", 1)
    for junk in (b"GET / HTTP/1.0\r\n\r\n", os.urandom(200), b""):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            try:                    # the head may hang up as soon as it reads a bad greeting
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                reply = s.recv(100)
                reply += s.recv(100)
            except OSError:
                reply = b""
            assert len(reply) <= 64, reply     # at most the server hello, never data
    monkeypatch.setenv("MINIRAY_TOKEN", head["token"].decode())
    miniray.init(address=head["address"])
    try:
        @miniray.remote
        def one():
            return 1
        assert miniray.get(one.remote()) == 1
        secret = miniray.put(np.full(1 << 20, 42, dtype=np.uint8))    # bytes in the head's store
        data_port = miniray.nodes()[0]["ObjectManagerPort"]
        # the object port serves raw store bytes: it too wants the token before anything
        for junk in (struct.pack("<QQQ", 0, 1 << 20, 0), os.urandom(64)):
            with socket.create_connection((host, data_port), timeout=5) as s:
                try:
                    s.sendall(junk)
                    s.shutdown(socket.SHUT_WR)
                    reply = s.recv(1 << 16)
                    reply += s.recv(1 << 16)
                except OSError:
                    reply = b""
                assert len(reply) <= 64 and b"\x2a" * 64 not in reply
        with pytest.raises(ConnectionError):
            transfer.fetch((host, data_port), 0, 16, memoryview(bytearray(16)), token=b"wrong-token-wrong-token")
        assert miniray.get(secret)[0] == 42 and miniray.get(one.remote()) == 1
    finally:
        miniray.shutdown()


def test_auth_handshake_is_mutual_and_byte_exact():
    a, b = socket.socketpair()
    import threading
    errors = []
    t = threading.Thread(target=lambda: errors.append(_try(auth.serve, a, b"secret")))
    t.start()
    client = auth.connect(b, b"secret")
    t.join()
    assert errors == [None]
    assert client.send_key != client.recv_key       # one key per direction
    a.close(), b.close()


def _try(fn, *args):
    try:
        fn(*args)
    except Exception as err:  # reported to the test thread
        return err
    return None


def test_status_lists_nodes_resources_and_the_store(head):
    out = _run(["status", "--address", head["address"]])
    assert out.returncode == 0, out.stderr
    assert "alive" in out.stdout and "CPU" in out.stdout and "teacher" in out.stdout
    assert "head's object store:" in out.stdout and "MiB" in out.stdout.splitlines()[0]


def test_a_lost_head_is_reported_clearly(tmp_path):
    out = _run(["start", "--head", "--port", "0", "--num-cpus", "1"])
    assert out.returncode == 0, out.stderr
    address = out.stdout.split("started at ")[1].split()[0]
    info = next(h for h in live_heads() if h["address"] == address)
    miniray.init(address=address)
    try:
        os.kill(info["pid"], signal.SIGKILL)
        with pytest.raises(miniray.exceptions.RaySystemError, match="Lost the connection"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                miniray.cluster_resources()
                time.sleep(0.1)
    finally:
        miniray.shutdown()
    # the killed head's workers notice and exit; the next init on this machine reaps its files
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
            info["session_dir"] in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])):
        time.sleep(0.1)
    miniray.session.reap_stale_sessions()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"miniray_{info['pid']}_")]


def test_a_node_with_a_wrong_token_is_refused(head):
    out = _run(["start", "--address", head["address"], "--num-cpus", "1", "--block"],
               env={"MINIRAY_TOKEN": "wrong-token-wrong-token"})
    assert out.returncode == 1 and "authentication failed" in out.stderr


_ = json
