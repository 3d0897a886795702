"""Building a local runtime: every part made and every callback connected here, by name.

    boot.local_driver(...)            (init() with no address)
        session directory ─► session.start_node: arena, store, event log, Node (store ⇄ node callbacks)
        LocalTransport(node) ─► Runtime(access=InStore, node, store, events, closer=_stop_local)
        node.pull_refs = runtime.flush_pending_to_node   each node step takes the driver's ref drops
        store.reclaim  = runtime.reclaim                 a full store asks the driver for its drops
        node.start(): workers spawn, the node thread runs

The two callbacks set last need the runtime, which needs the node first.  Other processes build
theirs in one place too: a worker in worker/main.py ``main``, a driver joined over TCP in
cluster/client.py ``connect``, a head in cluster/head.py ``run_head``, a node agent in
cluster/agent.py ``run_agent``.
"""
from __future__ import annotations

import functools
import shutil

from miniray import access, session
from miniray.runtime import LocalTransport, Runtime


def local_driver(*, num_cpus, num_gpus, resources, object_store_memory, inline_max, namespace,
                 job_env) -> Runtime:
    """A running local runtime: node thread and workers started; the caller installs it."""
    session.reap_stale_sessions()
    session_dir = session.new_session_dir()
    node = session.start_node(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                              object_store_memory=object_store_memory, inline_max=inline_max,
                              session_dir=session_dir)
    store = node.store
    runtime = Runtime(LocalTransport(node), "driver", node_id=node.node_id, job_id="01000000",
                      arena=store.arena, inline_max=inline_max, access=functools.partial(access.InStore, store=store),
                      node=node, store=store, events=node.events, session_dir=session_dir,
                      namespace=namespace, job_env=job_env, closer=_stop_local)
    node.pull_refs = runtime.flush_pending_to_node
    store.reclaim = runtime.reclaim
    node.start()
    return runtime


def _stop_local(runtime) -> None:
    """In order: the node thread and its workers, the arena, the session directory."""
    runtime.node.stop()
    runtime.arena.unlink()
    runtime.arena.close()
    shutil.rmtree(runtime.session_dir, ignore_errors=True)
