"""The node's actor table: where each actor lives, its call queue, restarts and death.

Runs in the node's steps (called from ``Node``, under its baton), and uses the node only through its
interface (``NodeSide``, scheduler/interface.py): so tests/test_actor_table.py drives it with a fake.  An actor's life:

    PENDING ──constructor ok──► ALIVE ──worker died, restarts left──► RESTARTING ──► ALIVE
       │                          │                                       │
       └─constructor raised──► DEAD ◄── killed / restarts used up ────────┘

State per actor: its creation spec (to re-run ``__init__`` on restart), the worker it is bound to,
``queue`` (calls not yet sent, in submission order), ``inflight`` (calls sent to the worker),
``restarts_left`` and, once dead, ``cause``, the sentence every later call's error quotes.
Calls are sent to the actor's worker in the order they arrived; a call whose arguments are not ready
holds back the later calls of its caller, so one caller's calls run in submission order, while
other callers' calls go on.
"""
from __future__ import annotations

import pickle
from collections import deque
from dataclasses import dataclass, field

from miniray import exceptions as exc
from miniray.scheduler import state as S
from miniray.scheduler.interface import NodeSide

PENDING, ALIVE, RESTARTING, DEAD = "PENDING", "ALIVE", "RESTARTING", "DEAD"


@dataclass
class Actor:
    spec: object
    state: str = PENDING
    worker: str | None = None
    restarts_left: int = 0
    queue: deque = field(default_factory=deque)
    inflight: dict = field(default_factory=dict)
    cause: str = ""
    key: tuple | None = None

    @property
    def class_name(self) -> str:
        return self.spec.name.split(".")[0]


class ActorTable:
    def __init__(self, node: NodeSide):
        self.node = node
        self.actors: dict[str, Actor] = {}
        self.names: dict[tuple, str] = {}
        self.calls: dict[str, str] = {}        # call task_id -> actor_id
        self.blocked: dict[str, set] = {}      # object id -> actor ids whose head call waits for it

    # -- creation and lookup --------------------------------------------------------------------
    def create(self, spec, ts):
        opts = spec.options
        name, ns = opts.get("name"), opts.get("namespace") or "default"
        if name:
            existing = self.names.get((ns, name))
            if existing is not None:
                if opts.get("get_if_exists"):
                    return self.actors[existing].spec.options["handle"]
                raise ValueError(f"An actor named {name!r} already exists in namespace {ns!r}. "
                                 "Pick another name, fetch it with miniray.get_actor(name), or pass "
                                 "get_if_exists=True to .options().")
        actor = Actor(spec, restarts_left=opts.get("max_restarts", 0))
        if name:
            actor.key = (ns, name)
            self.names[actor.key] = spec.actor_id
        self.actors[spec.actor_id] = actor
        self.node.submit(spec, ts)
        return opts["handle"]

    def lookup(self, name, namespace):
        aid = self.names.get((namespace or "default", name))
        if aid is None or self.actors[aid].state == DEAD:
            return None
        return self.actors[aid].spec.options["handle"]

    def named(self, namespace, all_namespaces=False) -> list:
        """The live named actors: names in ``namespace``, or {name, namespace} dicts of all."""
        live = sorted(k for k, aid in self.names.items() if self.actors[aid].state != DEAD)
        if all_namespaces:
            return [{"name": name, "namespace": ns} for ns, name in live]
        return [name for ns, name in live if ns == (namespace or "default")]

    def created(self, spec, result, wc):
        actor = self.actors.get(spec.actor_id)
        if actor is None or actor.state == DEAD:
            self.node.kill_worker(wc.holder)
            return
        if result.error == "ActorExit":
            self._die(actor, f"its constructor {actor.class_name}.__init__ called exit_actor()")
            self.node.kill_worker(wc.holder)
            return
        if result.error:
            err = pickle.loads(result.values[0][1][1]) if result.values else None
            self._die(actor, f"its constructor {actor.class_name}.__init__ raised:\n{err}")
            self.node.kill_worker(wc.holder)
            return
        S.bind_actor(self.node.state, wc.holder, spec.actor_id, S.actor_lifetime_need(spec))
        actor.worker, actor.state = wc.holder, ALIVE
        self.pump(actor)

    # -- calls ----------------------------------------------------------------------------------
    def enqueue(self, spec):
        actor = self.actors.get(spec.actor_id)
        if actor is None:
            self.node.fail(spec, exc.ActorDiedError(
                f"Actor {spec.actor_id} is unknown to this runtime: was it created before the last "
                "miniray.shutdown()?"))
            return
        if actor.state == DEAD:
            self.node.fail(spec, self._died_error(actor))
            return
        self.calls[spec.task_id] = spec.actor_id
        actor.queue.append(spec)
        self.pump(actor)

    def pump(self, actor):
        """Send the actor's queued calls whose arguments are ready.  A call waiting for one holds
        back only the later calls of the same caller (their order is kept), not other callers'."""
        node = self.node
        held, kept = None, None       # callers held back, and their calls (in order)
        while actor.state == ALIVE and actor.queue:
            spec = actor.queue.popleft()
            if held and spec.owner in held:
                kept.append(spec)
                continue
            descs = {}
            if spec.deps:                  # most calls take none: skip the checks without a call
                unready = [o for o in spec.deps if not node.store.ready(o)]
                if unready:
                    self.blocked.setdefault(unready[0], set()).add(spec.actor_id)
                    held, kept = (held or set()) | {spec.owner}, kept if kept is not None else deque()
                    kept.append(spec)
                    continue
                failed = [o for o in spec.deps if node.store.entries[o].state == "FAILED"]
                if failed:
                    self.calls.pop(spec.task_id, None)
                    desc = node.store.entries[failed[0]].desc
                    node.fail(spec, pickle.loads(desc[1]))
                    continue
                descs = node.descs_for(node.conns[actor.worker], spec.deps)
            actor.inflight[spec.task_id] = spec
            wc = node.conns[actor.worker]
            wc.deliver_exec(("exec", spec, None, descs, []))
        if kept:
            actor.queue.extendleft(reversed(kept))

    def object_ready(self, oid):
        for aid in self.blocked.pop(oid, ()):
            actor = self.actors.get(aid)
            if actor is not None:
                self.pump(actor)

    def inflight_spec(self, tid):
        aid = self.calls.get(tid)
        return self.actors[aid].inflight.get(tid) if aid in self.actors else None

    def done(self, tid, result, wc):
        aid = self.calls.pop(tid)
        actor = self.actors[aid]
        spec = actor.inflight.pop(tid, None)
        if spec is not None:
            self.node.finish(spec, result, worker=wc.holder)
        if result.error == "ActorExit":       # exit_actor() or __ray_terminate__: ended on purpose
            self.kill(aid, cause=f"it exited on purpose: exit_actor() was called in {spec.name if spec else tid}")

    def cancel(self, tid):
        aid = self.calls.get(tid)
        actor = self.actors.get(aid)
        if actor is None:
            return
        for spec in list(actor.queue):
            if spec.task_id == tid:
                actor.queue.remove(spec)
                self.calls.pop(tid, None)
                self.node.fail(spec, exc.TaskCancelledError(tid))

    def handles_gone(self, actor_id):
        """No handle of this actor is left anywhere and no call is pending: end it, as Ray does
        (named ones too), unless it is detached.  Gracefully: its worker runs the actor's
        ``__ray_shutdown__``, ``__del__`` and atexit handlers, then exits."""
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == DEAD:
            return
        if actor.spec.options.get("lifetime") == "detached":
            return
        self._die(actor, "all its handles went out of scope")
        S.forget(self.node.state, actor.spec.task_id)
        wc = self.node.conns.get(actor.worker) if actor.worker else None
        if wc is not None:
            wc.deliver([("terminate",)])      # graceful: __ray_shutdown__, __del__, atexit
        else:
            self._end_process(actor, forget=False)

    def owner_gone(self, holder):
        """A driver or worker left: the actors it created die with it, as Ray's do, unless they
        were created with lifetime="detached"."""
        for actor in list(self.actors.values()):
            if actor.spec.owner == holder and actor.state != DEAD and actor.spec.options.get("lifetime") != "detached":
                self.kill(actor.spec.actor_id, cause=f"its owner ({holder}, the process that created "
                          "it) died; create it with .options(lifetime=\"detached\") to outlive it")

    # -- failure --------------------------------------------------------------------------------
    def kill(self, actor_id, no_restart=True, cause="it was killed with miniray.kill()"):
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == DEAD:
            return
        if no_restart:
            self._die(actor, cause)
        self._end_process(actor, forget=no_restart)

    def _end_process(self, actor, forget=True):
        """Kill the actor's worker: the one it is bound to, or the one still running its
        constructor (its slot then holds the constructor's CPU until the worker is gone)."""
        wid = actor.worker or self.node.state.placed.get(actor.spec.task_id)
        if forget:
            S.forget(self.node.state, actor.spec.task_id)
        if wid:
            self.node.kill_worker(wid)

    def creation_lost(self, spec, wid):
        actor = self.actors.get(spec.actor_id)
        if actor is not None:
            self.worker_lost(spec.actor_id, wid, None, during_init=True)

    def worker_lost(self, actor_id, wid, pid, during_init=False):
        actor = self.actors.get(actor_id)
        if actor is None:
            return
        actor.worker = None
        if actor.state == DEAD:
            self._fail_all(actor)
            return
        left = S.actor_restarts_left(actor.restarts_left)
        if left is not None:
            actor.restarts_left, actor.state = left, RESTARTING
            retries = actor.spec.options.get("max_task_retries", 0)
            again, failed = S.actor_calls_after_restart(list(actor.inflight.values()), retries)
            for spec in failed:
                self.calls.pop(spec.task_id, None)
                self.node.fail(spec, exc.RayActorError(
                    f"The actor {actor.class_name} died while running {spec.name} (its worker, pid "
                    f"{pid}, exited). It is restarting; this call is not retried: max_task_retries={retries} "
                    "is used up. Pass a higher max_task_retries=N in .options() to retry calls."))
            actor.inflight.clear()
            actor.queue.extendleft(reversed(again))
            actor.spec.attempt += 1
            S.submit(self.node.state, actor.spec, set())
            return
        what = "while running its constructor" if during_init else f"(pid {pid})"
        limit = actor.spec.options.get("max_restarts", 0)
        self._die(actor, f"its worker process died {what}, and max_restarts={limit} restarts are used up")

    def _die(self, actor, cause):
        actor.state, actor.cause = DEAD, cause
        if actor.key is not None:
            self.names.pop(actor.key, None)
        self._fail_all(actor)

    def _fail_all(self, actor):
        for spec in list(actor.inflight.values()) + list(actor.queue):
            self.calls.pop(spec.task_id, None)
            self.node.fail(spec, self._died_error(actor))
        actor.inflight.clear()
        actor.queue.clear()

    def _died_error(self, actor):
        return exc.ActorDiedError(f"The actor {actor.class_name} ({actor.spec.actor_id[:12]}) is dead: "
                                  f"{actor.cause}")
