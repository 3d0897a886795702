"""Two and three nodes on loopback (127.0.0.1-3), each a real process tree joined over TCP with the
token: placement, SPREAD, custom resources, objects across nodes, node failure, status and stop."""
from __future__ import annotations

import os
import time

import numpy as np
import psutil
import pytest

import miniray
from miniray.cluster_utils import Cluster
from helpers import kill_blocked_constructor, wait_until

pytestmark = pytest.mark.timeout(120, method="signal")


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=2, resources={"big_box": 1})
    c.add_node(num_cpus=1)
    c.connect()
    c.wait_for_nodes()
    yield c
    c.shutdown()
    for node in [c.head] if c.head else []:
        assert not psutil.pid_exists(node.pid)


def node_of_this_call():
    return miniray.get_runtime_context().get_node_id()


@miniray.remote
def where(delay=0.0):
    time.sleep(delay)
    return node_of_this_call()


def test_three_nodes_with_their_own_ips_and_resources(cluster):
    nodes = miniray.nodes()
    assert len(nodes) == 3 and all(n["Alive"] for n in nodes)
    assert sorted(n["NodeManagerAddress"] for n in nodes) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    res = miniray.cluster_resources()
    assert res["CPU"] == 4.0 and res["big_box"] == 1.0
    assert all(res[f"node:127.0.0.{i}"] == 1.0 for i in (1, 2, 3))


def test_spread_uses_every_node(cluster):
    ids = miniray.get([where.options(scheduling_strategy="SPREAD").remote(0.3) for _ in range(8)])
    assert set(ids) == {n["NodeID"] for n in miniray.nodes()}


def test_default_packs_the_head_first(cluster):
    head_id = next(n["NodeID"] for n in miniray.nodes() if n["NodeManagerAddress"] == "127.0.0.1")
    assert miniray.get(where.remote()) == head_id


def test_custom_resources_route_tasks_and_actors(cluster):
    box = next(n["NodeID"] for n in miniray.nodes() if "big_box" in n["Resources"])
    assert miniray.get(where.options(resources={"big_box": 1}).remote()) == box

    @miniray.remote(resources={"big_box": 1})
    class OnTheBox:
        def node(self):
            return node_of_this_call()

        def pid(self):
            return os.getpid()

    actor = OnTheBox.remote()
    assert miniray.get(actor.node.remote()) == box
    # the handle works from a task on another node too
    @miniray.remote(resources={"node:127.0.0.3": 0.1})
    def ask(a):
        return miniray.get(a.node.remote())

    assert miniray.get(ask.remote(actor)) == box
    miniray.kill(actor)      # it holds big_box for life; later tests need the box


def test_killing_an_actor_blocked_in_its_constructor_on_a_joined_node_gives_its_cpu_back(cluster):
    """#14 item 10, the cluster half: the CPU of an actor whose constructor waits in ``get`` on
    another node counts as used meanwhile, and comes back when the actor is killed."""
    @miniray.remote(num_cpus=0)
    def hang():
        time.sleep(120)

    @miniray.remote(num_cpus=1, resources={"ctor_box": 1})
    class Slow:
        def __init__(self, holder):
            miniray.get(holder[0])          # waits for ever

        def f(self):
            return 1

    box = cluster.add_node(num_cpus=1, resources={"ctor_box": 1})     # its own node: nothing else there
    assert wait_until(lambda: "ctor_box" in miniray.cluster_resources(), timeout=30)
    total = miniray.cluster_resources()["CPU"]
    assert wait_until(lambda: miniray.available_resources().get("CPU") == total, timeout=20)
    h = hang.remote()
    a = Slow.remote([h])
    kill_blocked_constructor(miniray, a, h, total, used_meanwhile=1)    # its num_cpus=1 stays used
    cluster.remove_node(box, allow_graceful=True)


def test_an_object_made_on_one_node_is_read_on_another_and_by_the_driver(cluster):
    @miniray.remote(resources={"big_box": 1})
    def make():
        return np.arange(2_000_000, dtype=np.int64)          # 16 MB, made on node B

    @miniray.remote(resources={"node:127.0.0.3": 0.1})
    def total(a):
        return int(a.sum()), node_of_this_call()             # read on node C

    ref = make.remote()
    s, on = miniray.get(total.remote(ref))
    assert s == sum(range(2_000_000))
    assert miniray.get(ref)[-1] == 1_999_999                 # and by the driver
    listed = {o["object_id"]: o for o in miniray.util.state.list_objects()}
    assert listed[ref.hex()]["location"] == "shared_memory"  # streamed into the head's store
    box = next(n["NodeID"] for n in miniray.nodes() if "big_box" in n["Resources"])
    assert on not in (box,)


def test_status_lists_every_node(cluster):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "miniray.cli", "status", "--address", cluster.address],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, MINIRAY_TOKEN=cluster.token))
    assert out.returncode == 0, out.stderr
    for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        assert ip in out.stdout
    assert "big_box" in out.stdout


def test_a_killed_node_is_marked_dead_and_its_tasks_run_elsewhere(cluster, tmp_path):
    victim = cluster.add_node(num_cpus=1, resources={"doomed": 1, "shared": 1})
    cluster.wait_for_nodes()
    flag = tmp_path / "started"

    @miniray.remote(resources={"shared": 1}, max_retries=2)
    def slow(path):
        open(path, "a").close()
        time.sleep(3)
        return node_of_this_call()

    # only the victim has "shared" at first; a second node with it joins, then the victim dies
    ref = slow.remote(str(flag))
    deadline = time.monotonic() + 20
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists()
    rescue = cluster.add_node(num_cpus=1, resources={"shared": 1})
    victim_id = next(n["NodeID"] for n in miniray.nodes() if "doomed" in n["Resources"])
    cluster.remove_node(victim)                                  # SIGKILL, like a crashed machine
    assert miniray.get(ref, timeout=60) != victim_id             # retried on the rescue node
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dead = [n for n in miniray.nodes() if n["NodeID"] == victim_id and not n["Alive"]]
        if dead:
            break
        time.sleep(0.1)
    assert dead, "the killed node is not marked dead"
    assert "doomed" not in miniray.cluster_resources()
    cluster.remove_node(rescue, allow_graceful=True)


def test_objects_stay_on_the_node_that_made_them_and_readers_pull_copies(cluster):
    @miniray.remote(resources={"big_box": 1})
    def make():
        return np.arange(1_000_000, dtype=np.int64)

    @miniray.remote(resources={"node:127.0.0.3": 0.1})
    def first(a):
        return int(a[0]), node_of_this_call()

    ref = make.remote()
    miniray.wait([ref])
    box = next(n["NodeID"] for n in miniray.nodes() if "big_box" in n["Resources"])
    listed = {o["object_id"]: o for o in miniray.util.state.list_objects()}
    assert listed[ref.hex()]["node_id"] == box                 # in node B's own store, not the head's
    assert listed[ref.hex()]["copies"] == []
    _, on_c = miniray.get(first.remote(ref))
    listed = {o["object_id"]: o for o in miniray.util.state.list_objects()}
    assert listed[ref.hex()]["copies"] == [on_c]               # C pulled one copy into its store
    assert miniray.get(first.remote(ref))[1] == on_c
    assert {o["object_id"]: o for o in miniray.util.state.list_objects()}[ref.hex()]["copies"] == [on_c]
    summary = miniray.util.state.memory_summary()               # every node's store, not just the head's
    assert {n["node_id"] for n in summary["nodes"]} >= {box, on_c}
    assert summary["capacity"] == sum(n["capacity"] for n in summary["nodes"])
    table = miniray.util.state.format_table(miniray.util.state.list_objects(), summary)
    assert f"node {box[:12]}" in table and box[:12] in next(line for line in table.splitlines()
                                                           if line.startswith(ref.hex()[:24]))


def test_a_node_whose_store_is_full_sends_new_objects_to_the_head(cluster):
    small = cluster.add_node(num_cpus=1, resources={"small_store": 1}, object_store_memory=32 * 2**20)
    cluster.wait_for_nodes()

    @miniray.remote(resources={"small_store": 1})
    def make(mib):
        return np.ones(mib * 2**20 // 8)

    fits, too_big = make.remote(8), make.remote(48)
    assert miniray.get(too_big).sum() == 48 * 2**20 // 8          # streamed to the head, which spills
    assert miniray.get(fits).sum() == 8 * 2**20 // 8
    homes = {o["object_id"]: o["node_id"] for o in miniray.util.state.list_objects()}
    head = miniray.nodes()[0]["NodeID"]
    assert homes[too_big.hex()] == head and homes[fits.hex()] != head
    small_store = next(n for n in miniray.nodes() if "small_store" in n["Resources"])
    assert small_store["ObjectStoreMemory"] == 32 * 2**20
    cluster.remove_node(small, allow_graceful=True)


def test_a_lost_task_output_is_rebuilt_from_lineage(cluster):
    """The only copy dies with its node; ``get`` re-runs the task that made it, on another node."""
    first = cluster.add_node(num_cpus=1, resources={"maker": 1})
    cluster.wait_for_nodes()

    @miniray.remote(resources={"maker": 1})
    def make(scale):
        return np.full(400_000, scale)

    @miniray.remote
    def double(a):
        return a * 2

    def home(ref):
        return {o["object_id"]: o for o in miniray.util.state.list_objects()}[ref.hex()]["node_id"]

    src = miniray.put(3)                          # an argument the re-run needs again
    ref = make.remote(src)
    miniray.wait([ref])
    made_on = home(ref)                           # its only copy: nobody has read it yet
    second = cluster.add_node(num_cpus=1, resources={"maker": 1})
    cluster.wait_for_nodes()
    cluster.remove_node(first)                    # SIGKILL: its store goes with it
    assert miniray.get(ref, timeout=60).sum() == 3 * 400_000
    assert home(ref) not in (made_on,)
    assert miniray.get(double.remote(ref))[0] == 6
    kinds = [e["kind"] for e in miniray.events.events() if e.get("kind") in ("lost", "reconstructing")]
    assert "lost" in kinds and "reconstructing" in kinds
    cluster.remove_node(second, allow_graceful=True)


def test_a_lost_chain_is_rebuilt_in_order_even_after_the_driver_dropped_its_start(cluster):
    """b(a()) both lived on the dying node; the driver kept only b's ref. Lineage keeps a's spec
    (an argument of b's) alive, so both re-run, a first."""
    first = cluster.add_node(num_cpus=1, resources={"chain": 1})
    cluster.wait_for_nodes()

    @miniray.remote(resources={"chain": 1})
    def a():
        return np.ones(1_000_000)

    @miniray.remote(resources={"chain": 1})
    def b(x):
        return x * 2

    ra = a.remote()
    rb = b.remote(ra)
    miniray.wait([rb])
    del ra
    second = cluster.add_node(num_cpus=1, resources={"chain": 1})
    cluster.wait_for_nodes()
    cluster.remove_node(first)
    assert miniray.get(rb, timeout=60).sum() == 2_000_000
    rebuilt = [e["name"] for e in miniray.events.events() if e["kind"] == "reconstructing"]
    assert rebuilt[-2:] == ["a", "b"]
    cluster.remove_node(second, allow_graceful=True)


def test_a_call_queued_on_a_lost_object_waits_for_it_to_be_made_again(cluster):
    first = cluster.add_node(num_cpus=1, resources={"maker2": 1})
    gate = cluster.add_node(num_cpus=2, resources={"gate": 1})
    cluster.wait_for_nodes()

    @miniray.remote(resources={"maker2": 1})
    def make():
        time.sleep(4)                               # the re-run outlasts `hold`
        return np.ones(500_000)

    @miniray.remote(resources={"gate": 1})
    def hold():
        time.sleep(2)

    @miniray.remote(resources={"gate": 1})
    def use(a):
        return int(a.sum())

    ref = make.remote()
    miniray.wait([ref])
    held, used = hold.remote(), use.remote(ref)     # `use` queues behind `hold`, its argument ready
    time.sleep(0.5)
    second = cluster.add_node(num_cpus=1, resources={"maker2": 1})
    cluster.wait_for_nodes()
    cluster.remove_node(first)                      # the argument's only copy goes
    assert miniray.get(used, timeout=60) == 500_000
    miniray.get(held)
    for n in (gate, second):
        cluster.remove_node(n, allow_graceful=True)


def test_a_lost_put_raises_object_lost_error_and_the_cluster_keeps_working(cluster):
    n = cluster.add_node(num_cpus=1, resources={"short_lived": 1})
    cluster.wait_for_nodes()

    @miniray.remote(resources={"short_lived": 1})
    def stash():
        return [miniray.put(np.full(500_000, 7))]     # a put on that node: no lineage

    (inner,) = miniray.get(stash.remote())
    cluster.remove_node(n)
    with pytest.raises(miniray.exceptions.ObjectLostError, match="no lineage"):
        miniray.get(inner, timeout=30)
    assert miniray.get(where.remote()) in {x["NodeID"] for x in miniray.nodes() if x["Alive"]}


def test_actors_on_a_dead_node_restart_elsewhere_or_die_clearly(cluster):
    home = cluster.add_node(num_cpus=2, resources={"desk": 2})
    cluster.wait_for_nodes()

    @miniray.remote(resources={"desk": 1})
    class Clerk:
        def __init__(self):
            self.calls = 0

        def where(self):
            self.calls += 1
            return node_of_this_call(), self.calls

    keeper = Clerk.options(max_restarts=1).remote()
    mortal = Clerk.remote()                                   # max_restarts=0: Ray's default
    first, _ = miniray.get(keeper.where.remote())
    assert miniray.get(mortal.where.remote())[0] == first
    spare = cluster.add_node(num_cpus=1, resources={"desk": 1})
    cluster.wait_for_nodes()
    cluster.remove_node(home)                                 # SIGKILL: both actors' processes go
    deadline = time.monotonic() + 30
    while True:                                               # calls fail until the restart is done
        try:
            again, calls = miniray.get(keeper.where.remote(), timeout=30)
            break
        except miniray.exceptions.RayActorError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert again != first and calls == 1                      # a new process ran __init__ again
    with pytest.raises(miniray.exceptions.ActorDiedError):
        miniray.get(mortal.where.remote(), timeout=30)
    cluster.remove_node(spare, allow_graceful=True)


def test_a_gpu_task_on_a_joined_node_gets_that_nodes_gpu_ids(cluster):
    gpu_node = cluster.add_node(num_cpus=2, num_gpus=2, resources={"gpu_box": 1})
    cluster.wait_for_nodes()

    @miniray.remote(num_gpus=1, resources={"gpu_box": 0.1})
    def visible():
        time.sleep(0.5)
        return os.environ.get("CUDA_VISIBLE_DEVICES"), miniray.get_gpu_ids()

    seen = miniray.get([visible.remote(), visible.remote()])
    assert sorted(v for v, _ in seen) == ["0", "1"]          # two tasks at once: one id each
    assert sorted(tuple(ids) for _, ids in seen) == [(0,), (1,)]
    cluster.remove_node(gpu_node, allow_graceful=True)


def test_a_frozen_node_is_declared_dead_by_missed_heartbeats(cluster):
    """SIGSTOP keeps the node's connection open but silences it: the head must notice anyway."""
    import signal
    frozen = cluster.add_node(num_cpus=1, resources={"frozen": 1})
    cluster.wait_for_nodes()
    node_id = next(n["NodeID"] for n in miniray.nodes() if "frozen" in n["Resources"] and n["Alive"])
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 15
        dead = False
        while time.monotonic() < deadline and not dead:
            dead = any(n["NodeID"] == node_id and not n["Alive"] for n in miniray.nodes())
            time.sleep(0.2)
        assert dead, "the silent node was not declared dead within 15 s"
        assert "frozen" not in miniray.cluster_resources()
        assert miniray.get(where.remote()) != node_id
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
        cluster.remove_node(frozen)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_nodes_exit_cleanly_when_the_head_goes(how, capfd):
    """A lost head (SIGKILL) and a stopped one (SIGTERM): either way its nodes exit 0 with nothing
    left behind; only a lost head is reported as lost."""
    import signal
    other = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = other.add_node(num_cpus=1)
    workers = psutil.Process(node.pid).children(recursive=True)
    os.kill(other.head.pid, getattr(signal, how))
    other.head.proc.wait()
    assert node.proc.wait(timeout=15) == 0                   # it noticed, and left on its own
    psutil.wait_procs(workers, timeout=10)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"miniray_{node.pid}_")]
    other.head = None
    other.shutdown()
    miniray.session.reap_stale_sessions()
    assert ("lost the head" in capfd.readouterr().err) == (how == "SIGKILL")


DRIVER_ELSEWHERE = """
import sys
import numpy as np
import miniray
miniray.init(address=sys.argv[1])
rt = miniray.api.current_runtime()
assert rt.arena is None, "this driver should not see the head's shared memory"

@miniray.remote(resources={"big_box": 1})
def make():
    return np.arange(4_000_000, dtype=np.int64)          # 32 MB, stored on node B

@miniray.remote
def total(a):
    return int(a.sum())

made = miniray.get(make.remote())                        # pulled into this process, in pieces
mine = miniray.put(np.ones(3_000_000))                   # 24 MB streamed into the head's store
print(int(made[-1]), miniray.get(total.remote(mine)), flush=True)
miniray.shutdown()
"""


def test_a_driver_on_another_machine_pulls_objects_without_shared_memory(cluster, tmp_path):
    """A driver that cannot map any node's /dev/shm (here: a private mount namespace, as on another
    machine) still gets objects made on other nodes, and puts big ones, over TCP."""
    import shutil
    import subprocess
    import sys
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private /dev/shm")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER_ELSEWHERE)
    out = subprocess.run(["unshare", "--mount", "sh", "-c",
                          f'mount -t tmpfs tmpfs /dev/shm && exec "{sys.executable}" "{script}" {cluster.address}'],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, MINIRAY_TOKEN=cluster.token))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3999999", "3000000"]

