"""Scheduler state: plain collections, changed only by the transition functions below.

No threads, no sockets, no processes: the node's main loop calls these and carries out what they
return, and the tests drive them by hand and compare dicts (STYLE 3, after ``dask/local.py``).

State
    total, available   resource name → amount ("CPU", "GPU", "memory", custom names), cluster-wide
    nodes              node_id → {"total": {...}, "available": {...}}: what placement checks; a call
                       runs on one node, so it must fit that node (DEFAULT packs the first node that
                       fits, the head first; SPREAD picks the node with the most CPU free)
    nodes[n]["gpus"]   that node's GPU ids not handed to any task or actor (ids are per node: a
                       task on node B with one GPU may get id 0 while one on the head also has 0)
    specs              task_id → TaskSpec, for every task the node still owns
    waiting            task_id → set of dependency object ids not yet ready
    dependents         object id → set of task_ids waiting for it
    ready              deque of task_ids whose dependencies are ready, in submission order, not yet
                       looked at by ``assign``
    parked             kind → deque of ready task_ids that found no worker (``kind_of``: a
                       scheduling class, as Ray calls it), tried again from the head in each pass
    workers            worker_id → Slot(state, queue, held, gpus, actor_id)
                       state: "starting" | "idle" | "busy" | "blocked" | "actor"
    placed             task_id → worker_id for every task sent to a worker and not yet done
    durations          fn_id → smoothed run time; a fast function may be prefetched: calls queued
                       on one busy worker, sharing its one slot of resources, up to QUEUED_S of
                       work (at most PREFETCH calls)

Resources are held per worker slot, not per queued call: a worker runs one call at a time, so calls
queued behind it use nothing until they run.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

PREFETCH = 64         # calls queued on one worker at most: a burst of tiny calls goes out (and
                      # comes back) in frames this big, instead of costing a frame each
QUEUED_S = 0.004      # seconds of work queued on one worker at most, so the last calls of a batch
                      # wait little for a worker that took too many
FAST = 0.002          # seconds: functions quicker than this are prefetched


@dataclass
class Slot:
    node: str = ""
    state: str = "starting"
    queue: list = field(default_factory=list)
    held: dict = field(default_factory=dict)
    gpus: list = field(default_factory=list)
    actor_id: str | None = None
    ran_cpu_only: bool = False     # it ran a call without GPUs: no GPU call is placed on it (usable)
    gets: int = 0                  # its gets not yet answered (a call's threads may wait at once)


@dataclass
class State:
    total: dict
    available: dict
    specs: dict = field(default_factory=dict)
    waiting: dict = field(default_factory=dict)
    dependents: dict = field(default_factory=dict)
    ready: deque = field(default_factory=deque)
    parked: dict = field(default_factory=dict)
    workers: dict = field(default_factory=dict)
    placed: dict = field(default_factory=dict)
    durations: dict = field(default_factory=dict)
    nodes: dict = field(default_factory=dict)
    head: str = ""


def new_state(total: dict, node_id: str = "") -> State:
    st = State(total=dict(total), available=dict(total), head=node_id)
    add_node(st, node_id, total, count=False)
    return st


def add_node(state: State, node_id: str, total: dict, count: bool = True) -> None:
    state.nodes[node_id] = {"total": dict(total), "available": dict(total),
                            "gpus": list(range(int(total.get("GPU", 0))))}
    if not count:
        return
    for k, v in total.items():
        state.total[k] = state.total.get(k, 0.0) + v
        state.available[k] = state.available.get(k, 0.0) + v


def remove_node(state: State, node_id: str) -> None:
    res = state.nodes.pop(node_id, None)
    if res is None:
        return
    for k, v in res["total"].items():
        state.total[k] = state.total.get(k, 0.0) - v
        state.available[k] = state.available.get(k, 0.0) - res["available"].get(k, 0.0)
        if state.total[k] <= 1e-9:
            state.total.pop(k, None)
            state.available.pop(k, None)


def fits(available: dict, need: dict) -> bool:
    return all(available.get(k, 0.0) >= v - 1e-9 for k, v in need.items() if v)


def feasible(state_or_total, need: dict) -> bool:
    """Could some node ever run this (given every node's total)?"""
    if isinstance(state_or_total, dict):
        return fits(state_or_total, need)
    return any(fits(n["total"], need) for n in state_or_total.nodes.values())


def _acquire(state: State, need: dict, node: str = None) -> dict:
    avail = state.nodes[node]["available"] if node in state.nodes else None
    for k, v in need.items():
        if v:
            state.available[k] = state.available.get(k, 0.0) - v
            if avail is not None:
                avail[k] = avail.get(k, 0.0) - v
    return {k: v for k, v in need.items() if v}


def _release(state: State, held: dict, node: str = None) -> None:
    avail = state.nodes[node]["available"] if node in state.nodes else None
    for k, v in held.items():
        state.available[k] = state.available.get(k, 0.0) + v
        if avail is not None:
            avail[k] = avail.get(k, 0.0) + v


def usable(slot: Slot, need: dict) -> bool:
    """A GPU call never reuses a worker that ran CPU-only calls, as in Ray: that process may have
    set up CUDA (or imported a library that did) without the GPU ids the call is given."""
    return not (slot.ran_cpu_only and need.get("GPU"))


def _pick_worker(state: State, idle: list, need: dict, spec):
    """An idle worker on a node where ``need`` fits, by the call's scheduling strategy."""
    fitting = [w for w in idle if fits(state.nodes.get(state.workers[w].node, {"available": state.available})
                                       ["available"], need) and usable(state.workers[w], need)]
    if not fitting:
        return None
    if spec.options.get("strategy") == "SPREAD":
        def free_cpu(w):
            n = state.nodes.get(state.workers[w].node)
            return -(n["available"].get("CPU", 0.0) / max(n["total"].get("CPU", 1.0), 1e-9)) if n else 0.0
        return min(fitting, key=free_cpu)
    head = [w for w in fitting if state.workers[w].node == state.head]
    return (head or fitting)[-1]


# -- tasks -------------------------------------------------------------------------------------
def submit(state: State, spec, unready: set) -> None:
    """A task arrives; ``unready`` are its dependencies not yet in the store."""
    state.specs[spec.task_id] = spec
    if unready:
        state.waiting[spec.task_id] = set(unready)
        for oid in unready:
            state.dependents.setdefault(oid, set()).add(spec.task_id)
    else:
        state.ready.append(spec.task_id)


def wait_again(state: State, oids) -> None:
    """Objects that were ready are being made again (their node died): calls queued on them, not
    yet placed, wait for them once more."""
    oids = set(oids)
    for queue in [state.ready, *state.parked.values()]:
        for tid in [t for t in queue if t in state.specs and oids.intersection(state.specs[t].deps)]:
            queue.remove(tid)
            missing = oids.intersection(state.specs[tid].deps)
            state.waiting.setdefault(tid, set()).update(missing)
            for oid in missing:
                state.dependents.setdefault(oid, set()).add(tid)


def object_ready(state: State, oid: str) -> list:
    """An object reached the store; returns the task_ids that became ready (and queues them)."""
    waiting = state.dependents.pop(oid, None)
    if not waiting:
        return []
    woken = []
    for tid in sorted(waiting, key=_order(state)):
        deps = state.waiting.get(tid)
        if deps is None:
            continue
        deps.discard(oid)
        if not deps:
            del state.waiting[tid]
            state.ready.append(tid)
            woken.append(tid)
    return woken


def _order(state: State):
    return lambda tid: tid


def assign(state: State) -> list:
    """Match ready tasks to workers; returns [(task_id, worker_id)] and updates the state.

    Parked kinds go first, each from its head until one call finds no worker; then new ready
    calls in order, a call that finds none parking with its kind.  A pass costs the number of
    kinds plus the calls it looks at for the first time, never the length of the queue."""
    out = []
    if not state.ready and not state.parked:     # a step for actor calls or reports: nothing to do
        return out
    idle = [w for w, s in state.workers.items() if s.state == "idle"]
    for kind, queue in list(state.parked.items()):
        while queue:
            spec = state.specs.get(queue[0])
            if spec is not None and not _place(state, spec, idle, out):
                break
            queue.popleft()
        if not queue:
            del state.parked[kind]
    while state.ready:
        tid = state.ready.popleft()
        spec = state.specs.get(tid)
        if spec is None:
            continue
        kind = kind_of(spec)
        if kind in state.parked or not _place(state, spec, idle, out):
            state.parked.setdefault(kind, deque()).append(tid)
    return out


def kind_of(spec) -> tuple:
    """What placement looks at: calls of one kind that found no worker in a pass all find none
    (free resources and idle workers only shrink during a pass)."""
    return (spec.type, spec.fn_id, not spec.deps, spec.options.get("strategy"), tuple(spec.resources.items()))


def _place(state: State, spec, idle: list, out: list) -> bool:
    need = placement_need(spec)
    wid = _pick_worker(state, idle, need, spec) if idle else None
    if wid is not None:
        idle.remove(wid)
        slot = state.workers[wid]
        slot.held = _acquire(state, need, slot.node)
        ngpu = int(need.get("GPU", 0))
        if ngpu:
            free = _gpus(state, slot.node)
            slot.gpus, free[:] = free[:ngpu], free[ngpu:]
        elif not need.get("GPU"):
            slot.ran_cpu_only = True
        slot.state = "busy"
    elif spec.type == "task" and not need.get("GPU"):
        wid = _prefetch_target(state, spec, need)
    if wid is None:
        return False
    state.workers[wid].queue.append(spec.task_id)
    state.placed[spec.task_id] = wid
    out.append((spec.task_id, wid))
    return True


def queued(state: State) -> list:
    """Every ready call not yet placed: parked kinds first, then those not looked at yet."""
    return [t for q in state.parked.values() for t in q] + list(state.ready)


def first_queued(state: State):
    for q in state.parked.values():
        if q:
            return q[0]
    return state.ready[0] if state.ready else None


def _prefetch_target(state: State, spec, need: dict):
    """The busy worker with the shortest queue of calls to the same function, if it has room."""
    # only argument-free calls: a queued call's arguments would sit pinned in the store meanwhile
    took = state.durations.get(spec.fn_id, 1.0)
    if spec.deps or took > FAST:
        return None
    room = min(PREFETCH, max(2, int(QUEUED_S / took) if took > 0 else PREFETCH))
    held = need if all(need.values()) else {k: v for k, v in need.items() if v}
    best, shortest, specs, fn_id = None, room, state.specs, spec.fn_id
    for wid, slot in state.workers.items():
        queue = slot.queue
        n = len(queue)
        if 0 < n < shortest and slot.state == "busy" and slot.held == held:
            head = specs.get(queue[0])
            if head is not None and head.fn_id == fn_id:
                best, shortest = wid, n
    return best


def placement_need(spec) -> dict:
    """Resources needed to place a call: actors without an explicit CPU ask still need one CPU
    free.  Read only: for other calls it is the spec's own dict."""
    if spec.type != "actor_creation" or "CPU" in spec.options.get("explicit", ()):
        return spec.resources
    need = dict(spec.resources)
    need["CPU"] = max(need.get("CPU", 0.0), 1.0)
    return need


def task_done(state: State, tid: str, duration: float | None = None) -> str | None:
    """A placed call ended; returns its worker.  Frees the worker's slot when its queue is empty."""
    wid = state.placed.pop(tid, None)
    spec = state.specs.pop(tid, None)
    if spec is not None and duration is not None:
        old = state.durations.get(spec.fn_id)
        state.durations[spec.fn_id] = duration if old is None else 0.8 * old + 0.2 * duration
    if wid is None:
        return None
    slot = state.workers.get(wid)
    if slot is None:
        return wid
    if tid in slot.queue:
        slot.queue.remove(tid)
    if not slot.queue and slot.state in ("busy", "blocked"):
        if spec is not None and spec.type == "actor_creation":
            return wid  # the node decides: the worker becomes the actor's, or dies with it
        _free_slot(state, slot)
        slot.state = "idle"
    return wid


def _free_slot(state: State, slot: Slot) -> None:
    if slot.state != "blocked":
        _release(state, slot.held, slot.node)
    _gpus(state, slot.node).extend(slot.gpus)
    slot.held, slot.gpus = {}, []


def _gpus(state: State, node: str) -> list:
    """The free GPU ids of ``node`` (a throwaway list for a node that is gone)."""
    return state.nodes[node]["gpus"] if node in state.nodes else []


def bind_actor(state: State, wid: str, actor_id: str, lifetime_need: dict) -> None:
    """The worker now belongs to an actor: trade the placement resources for its lifetime ones."""
    slot = state.workers[wid]
    gpus = slot.gpus
    _release(state, slot.held, slot.node)
    slot.held = _acquire(state, lifetime_need, slot.node)
    slot.gpus = gpus
    slot.state, slot.actor_id, slot.queue = "actor", actor_id, []


def descendants(state: State, tid: str) -> list:
    """The calls still known here that ``tid`` submitted, and theirs in turn (``cancel``'s
    recursive=True).  A nested call names its parent in ``options["parent"]``."""
    kids: dict = {}
    for t, spec in state.specs.items():
        parent = spec.options.get("parent") if spec.options else None
        if parent:
            kids.setdefault(parent, []).append(t)
    out, todo = [], [tid]
    while todo:
        for child in kids.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def requeue_front(state: State, tids: list) -> None:
    """Calls a worker handed back (or lost) go back to the head of the ready queue, in order."""
    for tid in reversed(tids):
        state.placed.pop(tid, None)
        spec = state.specs.get(tid)
        if spec is not None:
            parked = state.parked.get(kind_of(spec))
            (parked if parked is not None else state.ready).appendleft(tid)


def hand_back(state: State, wid: str, tids: list) -> None:
    """A worker returns calls it had queued but not started (it is about to block in ``get``)."""
    slot = state.workers.get(wid)
    back = [t for t in tids if state.placed.get(t) == wid]
    if slot is not None:
        slot.queue = [t for t in slot.queue if t not in back]
    requeue_front(state, back)


def worker_blocked(state: State, wid: str) -> None:
    """The worker waits in ``get``: release its CPUs so others can run meanwhile.  Not an actor's
    constructor that asked for resources of its own (``num_cpus=1`` given, say): those are the
    actor's for its whole life, so they stay counted as used (as Ray counts them), and come back
    when the actor is killed meanwhile, with its worker (``worker_gone``)."""
    slot = state.workers[wid]
    slot.gets += 1
    if slot.state == "busy" and not (slot.queue and (spec := state.specs.get(slot.queue[0])) is not None
                                     and spec.type == "actor_creation" and actor_lifetime_need(spec)):
        _release(state, slot.held, slot.node)
        slot.state = "blocked"


def actor_lifetime_need(spec) -> dict:
    """What an actor holds while it lives: the resources its creation asked for explicitly (the
    implicit CPU is only for placing it, as in Ray)."""
    explicit = spec.options.get("explicit", ())
    return {k: v for k, v in spec.resources.items() if k in explicit}


def worker_unblocked(state: State, wid: str) -> None:
    """One of the worker's gets was answered: its CPUs come back when the last one is (a call whose
    thread waits beside it still waits: taking them back then starved the calls both wait for)."""
    slot = state.workers.get(wid)
    if slot is None:
        return
    slot.gets = max(0, slot.gets - 1)
    if slot.gets == 0 and slot.state == "blocked":
        _acquire(state, slot.held, slot.node)  # may go briefly negative, as Ray allows
        slot.state = "busy" if slot.queue else "idle"
        if not slot.queue:
            _release(state, slot.held, slot.node)
            slot.held = {}


def worker_gone(state: State, wid: str) -> list:
    """A worker died; returns the task_ids it had (running first, then queued)."""
    slot = state.workers.pop(wid, None)
    if slot is None:
        return []
    lost = list(slot.queue)
    if slot.state in ("busy", "actor"):
        _release(state, slot.held, slot.node)
    _gpus(state, slot.node).extend(slot.gpus)
    for tid in lost:
        state.placed.pop(tid, None)
    return lost


def forget(state: State, tid: str) -> None:
    """Drop a task that will never run (cancelled, or its dependency failed)."""
    state.specs.pop(tid, None)
    for oid in state.waiting.pop(tid, ()):
        state.dependents.get(oid, set()).discard(tid)
    for queue in [state.ready, *state.parked.values()]:
        try:
            queue.remove(tid)
            return
        except ValueError:
            pass


# Retries: what becomes of a call that failed or lost its worker --------------------------------------
def retry(state: State, spec, is_ready) -> bool:
    """A placed call failed with a retryable error (an application error under
    ``retry_exceptions``): when ``max_retries`` has attempts left it runs again (its attempt
    counted, submitted anew, waiting for those of its arguments not ``is_ready``) and this
    returns True; False: its retries are used up, and its error is its result."""
    if spec.attempt >= spec.max_retries:
        return False
    spec.attempt += 1
    task_done(state, spec.task_id)
    submit(state, spec, {o for o in spec.deps if not is_ready(o)})
    return True


def after_worker_lost(state: State, lost: list, cancelled) -> list:
    """The calls ``lost`` with a dead worker (``worker_gone``): a list of (outcome, spec), one per
    call the node still owns, in their order, with the state already changed:

        "cancelled"      it was being cancelled: forgotten (it fails with TaskCancelledError)
        "creation_lost"  an actor's constructor: forgotten here (the actor table restarts it or not)
        "retried"        ``max_retries`` left: back at the head of the ready queue, attempt counted
        "failed"         retries used up: forgotten (it fails with WorkerCrashedError)
    """
    out, again = [], []
    for tid in lost:
        spec = state.specs.get(tid)
        if spec is None:
            continue
        if tid in cancelled:
            outcome = "cancelled"
        elif spec.type == "actor_creation":
            outcome = "creation_lost"
        elif spec.attempt < spec.max_retries:
            outcome = "retried"
            spec.attempt += 1
            again.append(tid)
        else:
            outcome = "failed"
        if outcome != "retried":
            forget(state, tid)
        out.append((outcome, spec))
    requeue_front(state, again)
    return out


def actor_restarts_left(restarts_left: int) -> int | None:
    """An actor's worker died: its restarts left after restarting it (-1: without limit), or None
    when it may not restart (``max_restarts`` used up)."""
    if restarts_left == 0:
        return None
    return restarts_left - 1 if restarts_left > 0 else restarts_left


def actor_calls_after_restart(inflight: list, max_task_retries: int) -> tuple:
    """The calls an actor had in flight when its worker died, as it restarts: (retried, failed).
    A call is retried (attempt counted) while ``max_task_retries`` allows (-1: always)."""
    again, failed = [], []
    for spec in inflight:
        if max_task_retries < 0 or spec.attempt < max_task_retries:
            spec.attempt += 1
            again.append(spec)
        else:
            failed.append(spec)
    return again, failed
