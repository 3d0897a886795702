"""Cluster security, tried as an attacker would on loopback: real TCP, a real head process started
by the CLI, real driver processes (issue 21).  Each attack must fail while the head keeps serving a
legitimate driver (this test process) throughout.

The head listens on 127.0.0.5 only; attackers come from other 127.0.0.x addresses, and a relay (a
fake server) sits on 127.0.0.3.  ``MINIRAY_REFUSED_LOG_S=1`` shortens the head's log interval for
refused connections so the bounded-rate test needs no long sleep.
"""
from __future__ import annotations

import os
import pickle
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

import miniray
from miniray.cluster import client as cluster_client
from miniray.cluster import transfer
from miniray.session import live_heads
from miniray.transport import auth, door, framing

CLI = [sys.executable, "-m", "miniray.cli"]
HEAD_IP = "127.0.0.5"


class _CreatesAFile:
    """Unpickling this opens (creates) a file: proof that a pickle was run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    log = tmp_path_factory.mktemp("head") / "head.log"
    env = {k: v for k, v in os.environ.items() if k not in ("MINIRAY_TOKEN", "MINIRAY_ADDRESS")}
    env["MINIRAY_REFUSED_LOG_S"] = "1"
    with open(log, "wb") as out:
        proc = subprocess.Popen(CLI + ["start", "--head", "--port", "0", "--num-cpus", "1",
                                       "--node-ip-address", HEAD_IP, "--block"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        _wait_for(lambda: "started at" in log.read_text() or proc.poll() is not None, 30, "the head")
        assert proc.poll() is None, log.read_text()
        info = next(h for h in live_heads() if h["pid"] == proc.pid)
        with open(os.path.join(info["session_dir"], "token"), "rb") as f:
            info["token"] = f.read()
        info["log"], info["proc"] = log, proc
        info["host"], info["port"] = HEAD_IP, int(info["address"].rsplit(":", 1)[1])
        yield info
    finally:
        if miniray.is_initialized():
            miniray.shutdown()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def serving(head):
    """The legitimate driver: this process.  Call it to check the head still runs tasks."""
    saved = os.environ.get("MINIRAY_TOKEN")
    os.environ["MINIRAY_TOKEN"] = head["token"].decode()        # earlier modules may leave theirs
    miniray.init(address=head["address"])

    @miniray.remote
    def add(a, b):
        return a + b

    def check():
        assert miniray.get([add.remote(i, 1) for i in range(20)], timeout=30) == list(range(1, 21))
    check()
    yield check
    miniray.shutdown()
    if saved is None:
        os.environ.pop("MINIRAY_TOKEN", None)
    else:
        os.environ["MINIRAY_TOKEN"] = saved


def _driver(address, token, code, **kw):
    """A real driver process joining ``address`` and running ``code``."""
    env = dict(os.environ, MINIRAY_TOKEN=token.decode())
    env.pop("MINIRAY_ADDRESS", None)
    script = f"import sys, miniray\nminiray.init(address={address!r})\n{code}"
    return subprocess.Popen([sys.executable, "-c", script], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _listen(ip="127.0.0.3"):
    srv = socket.socket()
    srv.bind((ip, 0))
    srv.listen(4)
    srv.settimeout(30)
    return srv, f"{ip}:{srv.getsockname()[1]}"


def _closed_by_peer(sock, timeout=5.0) -> bool:
    """True if the peer hangs up (EOF or reset) within ``timeout``, whatever it sent first."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise EOFError(f"got {len(buf)} of {n} bytes")
        buf += part
    return buf


def _evil_frames(marker) -> bytes:
    """The pickle that creates ``marker``, framed with a made-up MAC, and the old way."""
    payload = pickle.dumps([_CreatesAFile(str(marker))], protocol=5)
    return (os.urandom(16) + framing.LEN_SEQ.pack(len(payload), 0) + payload
            + framing.HEADER.pack(len(payload)) + payload) * 3


def _log_since(head, start: int) -> str:
    with open(head["log"], "rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace")


def test_1_a_relay_in_between_cannot_run_its_own_pickle_on_the_head(head, serving, tmp_path):
    """The fake server passes the real head's handshake to a real driver and back, so the head
    accepts the connection; then it sends its own pickle.  The frame keys came from the token,
    which the relay never saw: the head drops the connection unread."""
    marker = tmp_path / "relay-ran-its-pickle"
    srv, srv_addr = _listen()
    log_at = head["log"].stat().st_size
    result = {}

    def relay():
        c, _ = srv.accept()
        h = socket.create_connection((head["host"], head["port"]), timeout=10)
        h.sendall(_recv_exact(c, auth.CLIENT_HELLO))
        c.sendall(_recv_exact(h, auth.SERVER_HELLO))
        h.sendall(_recv_exact(c, auth.PROOF))         # the head now takes this for the driver
        h.sendall(_evil_frames(marker))
        result["closed"] = _closed_by_peer(h)
        c.close(), h.close()

    t = threading.Thread(target=relay)
    t.start()
    victim = _driver(srv_addr, head["token"], "print('joined', flush=True)")
    t.join(timeout=30)
    victim.kill()
    victim.communicate()
    srv.close()
    assert result.get("closed") is True, "the head kept a connection that sent a forged frame"
    assert not marker.exists(), "the head unpickled the relay's frame"
    assert "integrity check" in _log_since(head, log_at)
    serving()


def test_1_the_driver_checks_the_servers_proof_before_it_sends_anything(head, tmp_path):
    """A fake server that does not know the token gets the 40-byte greeting and nothing else."""
    srv, srv_addr = _listen()
    got = {}

    def fake():
        c, _ = srv.accept()
        got["hello"] = _recv_exact(c, auth.CLIENT_HELLO)
        c.sendall(os.urandom(auth.SERVER_HELLO))
        c.settimeout(10)
        rest = b""
        try:
            while part := c.recv(4096):
                rest += part
        except OSError:
            pass
        got["rest"] = rest
        c.close()

    t = threading.Thread(target=fake)
    t.start()
    victim = _driver(srv_addr, head["token"], "print('joined', flush=True)")
    out, err = victim.communicate(timeout=60)
    t.join(timeout=15)
    srv.close()
    assert victim.returncode != 0 and "could not prove it knows our cluster token" in err, err
    assert got["hello"].startswith(auth.MAGIC) and got["rest"] == b""


def test_2_a_frame_injected_into_a_live_connection_closes_that_connection_only(head, serving, tmp_path):
    """A man in the middle that forwards a real driver's traffic faithfully, then slips in a frame
    of its own: the head closes that connection (the driver hears so), runs nothing, and serves
    everyone else."""
    marker = tmp_path / "injected-pickle-ran"
    srv, srv_addr = _listen()
    lock, state = threading.Lock(), {}

    def pump(src, dst):
        try:
            while data := src.recv(65536):
                with lock:
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def proxy():
        c, _ = srv.accept()
        h = socket.create_connection((head["host"], head["port"]))
        state["h"] = h
        for a, b in ((c, h), (h, c)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()

    threading.Thread(target=proxy, daemon=True).start()
    log_at = head["log"].stat().st_size
    code = ("@miniray.remote\ndef one():\n    return 1\n"
            "print('ran', miniray.get(one.remote()), flush=True)\n"
            "sys.stdin.readline()\n"
            "try:\n    miniray.get(one.remote(), timeout=20)\n    print('still connected', flush=True)\n"
            "except Exception as e:\n    print(type(e).__name__, e, flush=True)\n")
    victim = _driver(srv_addr, head["token"], code)
    assert victim.stdout.readline().strip() == "ran 1"
    payload = pickle.dumps([_CreatesAFile(str(marker))], protocol=5)
    with lock:
        state["h"].sendall(os.urandom(16) + framing.LEN_SEQ.pack(len(payload), 7) + payload)
    victim.stdin.write("go\n")
    victim.stdin.flush()
    out, err = victim.communicate(timeout=60)
    srv.close()
    assert re.search("Lost the connection|Broken pipe|Connection reset", out), (out, err)   # closed
    assert not marker.exists()
    assert "integrity check" in _log_since(head, log_at)
    serving()


def test_2_object_bytes_altered_on_the_way_are_refused(head, serving):
    """Object transfers (cluster/transfer.py) carry no pickled frames but raw store bytes, which the
    reader later unpickles: a man in the middle that flips one byte of a reply is caught."""
    import numpy as np
    ref = miniray.put(np.arange(1 << 18, dtype=np.int64))           # 2 MiB in the head's store
    data_port = miniray.nodes()[0]["ObjectManagerPort"]
    srv, srv_addr = _listen()
    n = 2 << 20

    def proxy(flip):
        c, _ = srv.accept()
        h = socket.create_connection((head["host"], data_port))
        h.sendall(_recv_exact(c, auth.CLIENT_HELLO))
        c.sendall(_recv_exact(h, auth.SERVER_HELLO))
        h.sendall(_recv_exact(c, auth.PROOF) + _recv_exact(c, transfer._REQ.size + 16))  # proof, request
        reply = bytearray(_recv_exact(h, n + 16))
        if flip:
            reply[n // 2] ^= 1
        c.sendall(reply)
        c.close(), h.close()

    direct, relayed = bytearray(n), bytearray(n)
    transfer.fetch((head["host"], data_port), 0, n, memoryview(direct), token=head["token"])
    for flip in (False, True):
        transfer.close_all()                          # a fresh connection through the relay
        t = threading.Thread(target=proxy, args=(flip,))
        t.start()
        host, port = srv_addr.rsplit(":", 1)
        if flip:
            with pytest.raises(ConnectionError, match="failed their integrity check"):
                transfer.fetch((host, int(port)), 0, n, memoryview(relayed), token=head["token"])
        else:
            transfer.fetch((host, int(port)), 0, n, memoryview(relayed), token=head["token"])
            assert relayed == direct                  # a faithful relay changes nothing
        t.join(timeout=30)
    srv.close()
    transfer.close_all()
    assert miniray.get(ref)[-1] == (1 << 18) - 1
    serving()


@pytest.mark.parametrize("mac", ["AES-GMAC", "HMAC-SHA256 (a reader without cryptography)"])
def test_2_an_object_reply_replayed_on_its_connection_is_refused(head, serving, monkeypatch, mac):
    """A reply's MAC is bound to its request's sequence number: a man in the middle that answers
    the reader's second request with the bytes (and MAC) of the first, the same range of the same
    object, is caught, whichever MAC the reader asked for."""
    import numpy as np
    if mac.startswith("HMAC"):
        monkeypatch.setattr(transfer, "_gmac_state", [True])     # as if `cryptography` were missing
    assert transfer._gmac_missing() == mac.startswith("HMAC")
    miniray.put(np.arange(1 << 17, dtype=np.int64))              # 1 MiB in the head's store
    data_port = miniray.nodes()[0]["ObjectManagerPort"]
    srv, srv_addr = _listen()
    n, req = 1 << 20, transfer._REQ.size + 16
    modes = []

    def proxy():
        c, _ = srv.accept()
        h = socket.create_connection((head["host"], data_port))
        h.sendall(_recv_exact(c, auth.CLIENT_HELLO))
        c.sendall(_recv_exact(h, auth.SERVER_HELLO))
        first = _recv_exact(c, auth.PROOF + req)
        modes.append(first[-17])                                  # the request's ``mac?`` byte
        h.sendall(first)
        reply = _recv_exact(h, n + 16)
        c.sendall(reply)
        _recv_exact(c, req)                                       # the second request, kept back
        c.sendall(reply)                                          # answered with the first reply
        c.close(), h.close()

    transfer.close_all()
    t = threading.Thread(target=proxy)
    t.start()
    host, port = srv_addr.rsplit(":", 1)
    first, second = bytearray(n), bytearray(n)
    transfer.fetch((host, int(port)), 0, n, memoryview(first), token=head["token"])
    with pytest.raises(ConnectionError, match="failed their integrity check"):
        transfer.fetch((host, int(port)), 0, n, memoryview(second), token=head["token"])
    t.join(timeout=30)
    srv.close()
    transfer.close_all()
    assert modes == [transfer.HMAC_SHA256 if mac.startswith("HMAC") else transfer.AES_GMAC]
    direct = bytearray(n)
    transfer.fetch((head["host"], data_port), 0, n, memoryview(direct), token=head["token"])
    assert first == direct                                        # the first reply was good
    transfer.close_all()
    serving()


def test_2_a_4_gib_length_after_authenticating_is_refused_with_a_clear_error(head, serving):
    before = psutil.Process(head["pid"]).memory_info().rss
    log_at = head["log"].stat().st_size
    s = socket.create_connection((head["host"], head["port"]))
    auth.connect(s, head["token"])
    s.sendall(bytes(16) + framing.LEN_SEQ.pack(0xFFFFFFFF, 0) + b"x" * 4096)
    assert _closed_by_peer(s)
    s.close()
    assert psutil.Process(head["pid"]).memory_info().rss - before < 64 * 2**20
    assert re.search(r"a frame of 4,294,967,295 bytes is over miniray's limit", _log_since(head, log_at))
    serving()


def test_2_the_frame_limit_is_enforced_on_both_ends(monkeypatch):
    monkeypatch.setattr(framing, "MAX_FRAME", 1000)
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ValueError, match="over miniray's frame limit.*miniray.put"):
            framing.Connection(a).send([b"x" * 2000])
        a.sendall(framing.HEADER.pack(1 << 30))
        with pytest.raises(framing.FrameError, match="over miniray's limit"):
            framing.FrameReader(b).feed(block=True)


def test_3_running_out_of_descriptors_backs_off_instead_of_spinning(head, serving):
    proc = psutil.Process(head["pid"])
    soft, hard = proc.rlimit(psutil.RLIMIT_NOFILE)
    subprocess.run(["prlimit", f"--pid={head['pid']}", f"--nofile={proc.num_fds() + 6}:{hard}"], check=True)
    attackers = []
    try:
        log_at = head["log"].stat().st_size
        for _ in range(60):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.setblocking(False)
            s.connect_ex((head["host"], head["port"]))
            attackers.append(s)
        _wait_for(lambda: "Too many open files" in _log_since(head, log_at), 10, "EMFILE in the log")
        cpu0, size0 = sum(proc.cpu_times()[:2]), head["log"].stat().st_size
        for _ in range(4):
            serving()                       # the connected driver is served all along
            time.sleep(0.5)
        cpu1, size1 = sum(proc.cpu_times()[:2]), head["log"].stat().st_size
        assert cpu1 - cpu0 < 0.8, f"the head burnt {cpu1 - cpu0:.2f} s of CPU while out of descriptors"
        assert size1 - size0 < 2000, _log_since(head, size0)[:2000]
    finally:
        for s in attackers:
            s.close()
        subprocess.run(["prlimit", f"--pid={head['pid']}", f"--nofile={soft}:{hard}"], check=True)
    # the door listens again after its back-off, and a new peer gets in
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((head["host"], head["port"]), timeout=5) as s:
                auth.connect(s, head["token"])
            break
        except (OSError, auth.AuthenticationError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    serving()


def test_4_a_hundred_slowloris_connections_do_not_keep_a_driver_out(head, serving):
    threads_before = psutil.Process(head["pid"]).num_threads()
    loris = []
    for _ in range(100):
        s = socket.socket()
        s.bind(("127.0.0.4", 0))
        s.connect((head["host"], head["port"]))
        loris.append(s)
    stop = threading.Event()

    def drip():                            # one byte of the greeting now and then, never all of it
        i = 0
        while not stop.wait(0.3):
            for s in loris:
                try:
                    s.send(auth.MAGIC[i % 4:i % 4 + 1])
                except OSError:
                    pass
            i += 1

    start = time.monotonic()
    # past the cap on handshakes in flight, the oldest are dropped at once: descriptors stay bounded
    _wait_for(lambda: len(select.select(loris, [], [], 0.2)[0]) >= 100 - door.MAX_PENDING, 5,
              "the oldest slow handshakes to be dropped")
    t = threading.Thread(target=drip)
    t.start()
    try:
        code = ("@miniray.remote\ndef sq(x):\n    return x * x\n"
                "print(sum(miniray.get([sq.remote(i) for i in range(50)])), flush=True)\n")
        newcomer = _driver(head["address"], head["token"], code)
        out, err = newcomer.communicate(timeout=60)
        assert newcomer.returncode == 0 and out.strip() == str(sum(i * i for i in range(50))), err
        serving()
        assert psutil.Process(head["pid"]).num_threads() - threads_before < 10   # no thread each
        # none is held past the whole-handshake deadline, however it drips
        left = auth.HANDSHAKE_S + 2 - (time.monotonic() - start)
        closed = [_closed_by_peer(s, timeout=max(0.1, left)) for s in loris]
        assert all(closed), f"{closed.count(False)} slow handshakes still open"
        assert time.monotonic() - start < auth.HANDSHAKE_S + 3
    finally:
        stop.set()
        t.join()
        for s in loris:
            s.close()
    serving()


def test_5_the_head_and_its_nodes_bind_only_the_address_asked(head, serving):
    def listening(pid):
        return {c.laddr.ip for p in [psutil.Process(pid)] for c in p.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN}
    assert listening(head["pid"]) == {HEAD_IP}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", head["port"]), timeout=5)
    env = dict(os.environ, MINIRAY_TOKEN=head["token"].decode())
    agent = subprocess.Popen(CLI + ["start", "--address", head["address"], "--node-ip-address", "127.0.0.6",
                                    "--num-cpus", "1", "--block"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        assert "joined the head" in agent.stdout.readline()
        assert listening(agent.pid) == {"127.0.0.6"}
        serving()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=30)


def test_6_a_short_token_is_refused_with_how_to_make_a_good_one(head, monkeypatch):
    env = {**os.environ, "MINIRAY_TOKEN": "hunter2"}
    for args in (["start", "--head", "--port", "0"], ["start", "--address", head["address"]]):
        out = subprocess.run(CLI + args, capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 2
        assert "at least 16" in out.stderr and "secrets.token_hex(16)" in out.stderr, out.stderr
    monkeypatch.setenv("MINIRAY_TOKEN", "hunter2")
    with pytest.raises(ConnectionError, match="(?s)at least 16.*secrets.token_hex"):
        cluster_client.find_token(None)        # what init(address=...) reads the token with


def test_7_refused_connections_are_counted_and_logged_at_a_bounded_rate(head, serving):
    time.sleep(1.1)                             # let the previous tests' lines age out
    log_at = head["log"].stat().st_size
    for i in range(300):
        with socket.socket() as s:
            s.bind(("127.0.0.7", 0))
            s.connect((head["host"], head["port"]))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(20))
            _closed_by_peer(s)
    time.sleep(1.1)
    with socket.socket() as s:                  # one more, after the interval: the count comes out
        s.connect((head["host"], head["port"]))
        s.sendall(bytes(40))
        _closed_by_peer(s)
    def lines():
        return [ln for ln in _log_since(head, log_at).splitlines() if "refused connections" in ln]

    def counted():
        return sum(1 + int(m.group(1)) if (m := re.search(r"and (\d+) more", ln)) else 1 for ln in lines())
    _wait_for(lambda: counted() >= 301, 5, "the summary line")
    assert len(lines()) <= 3, lines()
    assert "not a miniray client" in lines()[0]
    serving()

