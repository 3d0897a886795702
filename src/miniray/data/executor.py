"""The streaming executor: runs a Plan as a chain of operators, blocks flowing as soon as they exist.

    source.inputs() ─► TaskStage(read+maps fused) ─► ActorStage(callable class) ─► Barrier(sort) ─► ...
                         window of tasks               pool of actors                all inputs, then
                         in flight                     (min..max, autoscaled)        map-reduce tasks
    consumer pulls RefBundles (ref, BlockMeta) from the last stage, in order.

Who runs where: everything here runs in the caller's thread (the driver, or a task/actor that
executes a dataset); the work itself runs in miniray tasks and actors.  Each stage is a generator; it
submits work for upstream bundles until its window is full, then waits for its oldest piece of work
and yields its output (order is kept).  Because the runtime runs everything that was submitted,
stages overlap: stage 2's tasks for block 1 run while stage 1 still reads block 3.

Names: every task is named after its operator as Ray Data names them (``ReadCSV->Map(add_fare)``
for a fused stage, ``Sort(x) map``/``Sort(x) reduce`` for the tasks of a map-reduce stage, an actor
pool's class ``MapBatches(Model)``), so the magics' ``%%taskgraph`` draws one node per operator and
``%timeline`` colours bars by operator, reading only the event log.

Backpressure: a stage's window holds at most ``max_tasks_in_flight_per_cpu * CPUs`` tasks and at
most ``budget / stages`` bytes of outputs (estimated from the outputs seen so far), where budget is
``DataContext.max_bytes_in_flight`` or a quarter of the object store.  A consumer that stops pulling
stops the whole chain, so a dataset many times the store's size streams through it.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import miniray
from miniray.data import block as B
from miniray.data.plan import (AllToAllOp, LimitOp, MapOp, Plan, ReadTask, RefBundle, UnionSource)
from miniray.data.progress import make_bar
from miniray.data.stats import BlockMeta, DatasetStats

MAX_TASKS_PER_ACTOR = 2


def _apply(inp, transforms, idx):
    t0, c0 = time.perf_counter(), time.process_time()
    block = inp() if isinstance(inp, ReadTask) else inp
    for t in transforms:
        block = t(block, idx)
    meta = BlockMeta(block.num_rows, block.nbytes, block.schema, time.perf_counter() - t0,
                     time.process_time() - c0)
    return block, meta


def _map_task(inp, transforms, idx):
    return _apply(inp, transforms, idx)


def _slice_task(block, start, length):
    piece = block.slice(start, length)
    return piece, BlockMeta(piece.num_rows, piece.nbytes, piece.schema)


class _MapWorker:
    """An actor of a pool: builds the callable classes once, then maps block after block."""

    def __init__(self, transforms):
        self.transforms = transforms
        for t in transforms:
            t.setup()

    def ready(self):
        return True

    @miniray.method(num_returns=2)
    def process(self, inp, idx):
        return _apply(inp, self.transforms, idx)


_remote_cache: dict = {}
_stage = threading.local()   # the name of the map-reduce operator whose tasks run_tasks submits


def _remote(fn):
    r = _remote_cache.get(fn)
    if r is None:
        r = _remote_cache[fn] = miniray.remote(fn)
    return r


def _pool_class(name: str):
    """An actor class named after its operator (``MapBatches(Model)``), so its calls read as such."""
    return type(name, (_MapWorker,), {"__module__": __name__, "__qualname__": name})


def _step_name(fn) -> str:
    """``_shuffle_map`` -> ``map``, ``_sample_task`` -> ``sample``: the step a helper task does."""
    return fn.__name__.removesuffix("_task").rsplit("_", 1)[-1]


def cluster_cpus() -> int:
    if not miniray.is_initialized():
        miniray.init()
    return max(1, int(miniray.cluster_resources().get("CPU", 1)))


def store_capacity() -> int:
    return int(miniray.cluster_resources().get("object_store_memory", 2 ** 30))


class _Window:
    """Shared admission rule of the map stages: task count and estimated output bytes."""

    def __init__(self, max_tasks, budget):
        self.max_tasks, self.budget = max(1, max_tasks), budget
        self.seen_bytes = self.seen = 0

    def saw(self, meta):
        self.seen_bytes += meta.size_bytes
        self.seen += 1

    def admits(self, in_flight: int) -> bool:
        if in_flight >= self.max_tasks:
            return False
        if in_flight == 0 or not self.seen:
            return True
        return (in_flight + 1) * (self.seen_bytes / self.seen) <= self.budget


class Execution:
    """One run of a plan: builds the stage chain and records stats and progress bars."""

    def __init__(self, plan: Plan):
        self.plan, self.ctx = plan, plan.ctx
        self.stats = DatasetStats()
        self.ncpus = cluster_cpus()
        stages = sum(isinstance(o, MapOp) for o in plan.ops) + 1
        budget = self.ctx.max_bytes_in_flight or store_capacity() // 4
        self.stage_budget = max(1, budget // stages)
        self.bars: list = []

    def _bar(self, name, total=None):
        bar = make_bar(name, total, self.ctx.enable_progress_bars)
        self.bars.append(bar)
        return bar

    def run(self):
        """Main loop: chain the stages, then pull bundles through the last one."""
        try:
            stream = self._chain()
            for bundle in stream:
                yield bundle
        finally:
            for bar in self.bars:
                bar.close()
            self.stats.finished = time.perf_counter()

    def _chain(self):
        plan = self.plan
        ops = list(plan.ops)
        if isinstance(plan.source, UnionSource):
            stream = self._union(plan.source)
            pending = []
        else:
            stream = iter(plan.source.inputs(self.ncpus, self.ctx))
            pending = [plan.source.name]
        fused, i = [], 0
        for j, op in enumerate(ops[:-1]):   # sort then limit: sort only each block's top rows
            nxt = ops[j + 1]
            if isinstance(op, AllToAllOp) and isinstance(nxt, LimitOp) and hasattr(op.fn, "with_limit"):
                ops[j] = AllToAllOp(op.name, op.fn.with_limit(nxt.n), op.keeps_rows)
        # Fuse the source's reads and consecutive task maps with the same resources into one stage.
        while i < len(ops):
            op = ops[i]
            if isinstance(op, MapOp) and op.compute is None and (
                    not fused or fused[-1].remote_args == op.remote_args):
                fused.append(op)
                i += 1
                continue
            stream, pending = self._flush(stream, pending, fused), []
            fused = []
            if isinstance(op, MapOp):
                stream = self._actor_stage(stream, op)
            elif isinstance(op, AllToAllOp):
                stream = self._barrier(stream, op)
            elif isinstance(op, LimitOp):
                stream = self._limit(stream, op.n)
            i += 1
        return self._flush(stream, pending, fused)

    def _flush(self, stream, pending_names, fused):
        if not fused and not pending_names:
            return stream
        names = pending_names + [op.name for op in fused]
        transforms = [op.transform for op in fused]
        args = fused[0].remote_args if fused else {}
        return self._task_stage(stream, "->".join(names), transforms, args)

    def _union(self, source):
        for sub in source.plans:
            yield from Execution(sub)._chain_with(self)

    def _chain_with(self, parent):
        self.stats, self.bars = parent.stats, parent.bars
        return self._chain()

    # -- stages -------------------------------------------------------------------------------
    # Each stage registers its stats and bar when the chain is built (so they are listed in plan
    # order), then returns its generator.
    def _task_stage(self, upstream, name, transforms, remote_args):
        return self._task_gen(upstream, self.stats.op(name), self._bar(name), transforms, remote_args)

    def _task_gen(self, upstream, st, bar, transforms, remote_args):
        fn = _remote(_map_task).options(num_returns=2, name=st.name, **remote_args)
        tref = miniray.put(transforms) if transforms else []
        window = _Window(self.ctx.max_tasks_in_flight_per_cpu * self.ncpus, self.stage_budget)
        inflight, idx = deque(), 0
        for item in _admit(upstream, inflight, window):
            if item is None:   # window full or upstream done: hand on the oldest output
                blk, mref = inflight.popleft()
                meta = miniray.get(mref)
                window.saw(meta)
                st.add(meta)
                bar.update(1, meta.num_rows)
                yield RefBundle(blk, meta)
                continue
            if isinstance(item, RefBundle) and not transforms:
                st.add(item.meta, tasks=0)
                bar.update(1, item.meta.num_rows)
                yield item
                continue
            inp = item.ref if isinstance(item, RefBundle) else item
            inflight.append(tuple(fn.remote(inp, tref, idx)))
            idx += 1
        st.finish()

    def _actor_stage(self, upstream, op):
        return self._actor_gen(upstream, op, self.stats.op(op.name), self._bar(op.name))

    def _actor_gen(self, upstream, op, st, bar):
        lo, hi = op.compute
        hi = hi or self.ncpus
        cls = miniray.remote(_pool_class(op.name)).options(**op.remote_args)
        tref = [op.transform]
        actors, load = [], []

        def add_actor():
            actors.append(cls.remote(tref))
            load.append(0)
            st.actors = len(actors)

        for _ in range(lo):
            add_actor()
        window = _Window(MAX_TASKS_PER_ACTOR * hi, self.stage_budget)
        inflight, idx = deque(), 0
        try:
            for item in _admit(upstream, inflight, window):
                if item is None:
                    blk, mref, a = inflight.popleft()
                    meta = miniray.get(mref)
                    load[a] -= 1
                    window.saw(meta)
                    st.add(meta)
                    bar.update(1, meta.num_rows)
                    yield RefBundle(blk, meta)
                    continue
                a = min(range(len(actors)), key=load.__getitem__)
                if load[a] >= MAX_TASKS_PER_ACTOR and len(actors) < hi:
                    add_actor()
                    a = len(actors) - 1
                load[a] += 1
                inp = item.ref if isinstance(item, RefBundle) else item
                blk, mref = actors[a].process.remote(inp, idx)
                inflight.append((blk, mref, a))
                idx += 1
        finally:
            st.finish()
            for a in actors:
                miniray.kill(a)

    def _barrier(self, upstream, op):
        return self._barrier_gen(upstream, op, self.stats.op(op.name), self._bar(op.name))

    def _barrier_gen(self, upstream, op, st, bar):
        inputs = list(upstream)
        st.started = time.perf_counter()
        outer, _stage.name = getattr(_stage, "name", None), op.name
        try:
            out = op.fn(inputs, self.ctx, st)
        finally:
            _stage.name = outer
        for b in out:
            st.add(b.meta, tasks=0)
            bar.update(1, b.meta.num_rows)
        st.finish()
        yield from out

    def _limit(self, upstream, n):
        return self._limit_gen(upstream, n, self.stats.op(f"Limit[{n}]"))

    def _limit_gen(self, upstream, n, st):
        left = n
        if left <= 0:
            st.finish()
            return
        for b in upstream:
            if b.meta.num_rows <= left:
                left -= b.meta.num_rows
                st.add(b.meta, tasks=0)
                yield b
            else:
                ref, mref = _remote(_slice_task).options(num_returns=2, name=st.name).remote(
                    b.ref, 0, left)
                meta = miniray.get(mref)
                st.add(meta)
                left = 0
                yield RefBundle(ref, meta)
            if left <= 0:
                break
        st.finish()


def _admit(upstream, inflight, window):
    """Yield upstream items while the window admits them, and None when the oldest must be taken."""
    upstream = iter(upstream)
    done = False
    while True:
        while not done and window.admits(len(inflight)):
            try:
                item = next(upstream)
            except StopIteration:
                done = True
                break
            yield item
        if not inflight:
            if done:
                return
            continue
        yield None


def execute(plan: Plan, holder=None):
    """Stream the plan's output bundles; ``holder._last_stats`` gets the run's stats."""
    ex = Execution(plan)
    if holder is not None:
        holder._last_stats = ex.stats
    return ex.run()


def run_tasks(fn, calls, num_returns=2):
    """Submit ``fn(*args)`` for each args tuple (helpers of the shuffles); the raw refs."""
    stage = getattr(_stage, "name", None)
    name = f"{stage} {_step_name(fn)}" if stage else fn.__name__
    rf = _remote(fn).options(num_returns=num_returns, name=name)
    return [rf.remote(*args) for args in calls]


def bundles(pairs) -> list:
    """[(block_ref, meta_ref), ...] -> [RefBundle, ...] once the metas are in."""
    pairs = list(pairs)
    metas = miniray.get([m for _, m in pairs]) if pairs else []
    return [RefBundle(r, m) for (r, _), m in zip(pairs, metas)]


def meta_of(block) -> BlockMeta:
    return BlockMeta(block.num_rows, B.size_bytes(block), block.schema)
