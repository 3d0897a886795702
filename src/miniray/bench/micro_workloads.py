"""Microbenchmark workloads, one class per system; run by path as a child of ``microbenchmark``.

    python micro_workloads.py --system {miniray,ray,pool,dask} --workloads tiny_tasks,chain --config {...}

Every workload method returns a small dict of figures (seconds, rates, flags) that the child protocol
sends to the parent.  miniray and Ray share one class because their APIs are the same; Pool and Dask
implement the subset that makes sense for them (Pool has no refs or actors; Dask actors are left out).
Only the standard library and numpy are imported at module level, so the peers' interpreter, which
has no miniray, can run this file.

Config keys (sizes chosen by the parent per system and mode): n_tiny, n_round_trip, n_chain, put_mib,
put_reps, get_mib, get_reps, n_actor_async, n_actor_sync, nn_actors, nn_calls, big_mib, big_reps.
"""
from __future__ import annotations

import importlib
import statistics
import sys
import time

import numpy as np

from child_protocol import serve

MiB = 1 << 20
GiB = 1 << 30


# -- the work itself: module level, so every system can ship it to its workers ------------------------
def tiny(x):
    return x


def inc(x):
    return x + 1


def touch_pages(a):
    """Read one float64 per 4 KiB page: the cost of mapping the argument, not of arithmetic."""
    return float(a[::512].sum())


def nn_caller(module_name, actors, calls_per_actor):
    """Runs as a task: call every actor ``calls_per_actor`` times (all submitted, then one get)."""
    mod = importlib.import_module(module_name)
    refs = [a.ping.remote(i) for i in range(calls_per_actor) for a in actors]
    return len(mod.get(refs))


class Echo:
    def ping(self, x=0):
        return x


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def _ones(mib: int) -> np.ndarray:
    """An array whose pages are all touched (np.zeros would be lazily mapped zero pages)."""
    return np.ones(mib * MiB // 8, dtype=np.float64)


# -- miniray and Ray ---------------------------------------------------------------------------------
class RayLike:
    """miniray (``import miniray``) or Ray (``import ray``): the same calls, the same workloads."""

    def __init__(self, module_name: str, config: dict):
        t0 = time.perf_counter()
        self.mod = importlib.import_module(module_name)
        self.import_s = time.perf_counter() - t0
        self.name = module_name
        self.cfg = config

    def init(self):
        extra = {"include_dashboard": False, "log_to_driver": False} if self.name == "ray" else {}
        seconds, _ = _timed(lambda: self.mod.init(num_cpus=2, **extra))
        r = self.mod.remote
        self.tiny, self.inc, self.touch = r(tiny), r(inc), r(touch_pages)
        self.nn_caller = r(nn_caller)
        self.echo = r(Echo)
        self.echo0 = r(num_cpus=0)(Echo)
        return {"seconds": seconds, "import_s": self.import_s}

    def shutdown(self):
        seconds, _ = _timed(self.mod.shutdown)
        return {"seconds": seconds}

    def _warm(self, k=50):
        self.mod.get([self.tiny.remote(i) for i in range(k)])

    def tiny_tasks(self):
        n = self.cfg["n_tiny"]
        self._warm(min(n, 200))
        t0 = time.perf_counter()
        refs = [self.tiny.remote(i) for i in range(n)]
        submit_s = time.perf_counter() - t0
        out = self.mod.get(refs)
        seconds = time.perf_counter() - t0
        assert out == list(range(n))
        return {"per_s": n / seconds, "n": n, "seconds": seconds, "submit_s": submit_s}

    def round_trip(self):
        n = self.cfg["n_round_trip"]
        self._warm(20)
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            self.mod.get(self.tiny.remote(i))
            samples.append(time.perf_counter() - t0)
        return _latency(samples)

    def chain(self):
        n = self.cfg["n_chain"]
        self._warm(20)
        t0 = time.perf_counter()
        ref = self.inc.remote(0)
        for _ in range(n - 1):
            ref = self.inc.remote(ref)
        value = self.mod.get(ref)
        seconds = time.perf_counter() - t0
        assert value == n, value
        return {"seconds": seconds, "n": n}

    def put_100mib(self):
        arr = _ones(self.cfg["put_mib"])
        cold, ref = _timed(self.mod.put, arr)
        del ref
        warm = []
        for _ in range(self.cfg["put_reps"]):
            t, ref = _timed(self.mod.put, arr)
            warm.append(t)
            del ref
        return _bandwidth(arr.nbytes, cold, warm)

    def get_800mib(self):
        big = _ones(self.cfg["get_mib"])
        put_s, ref = _timed(self.mod.put, big)
        del big
        first, a = _timed(self.mod.get, ref)
        times = []
        for _ in range(self.cfg["get_reps"]):
            t, b = _timed(self.mod.get, ref)
            times.append(t)
            del b
        b = self.mod.get(ref)
        out = {"first_ms": first * 1e3, "median_ms": statistics.median(times) * 1e3,
               "zero_copy": bool(np.shares_memory(a, b)), "read_only": not a.flags.writeable,
               "correct": bool(a[0] == 1.0 and a[-1] == 1.0), "put_s": put_s,
               "mib": self.cfg["get_mib"]}
        del a, b, ref
        return out

    def actor_async(self):
        n = self.cfg["n_actor_async"]
        actor = self.echo.remote()
        self.mod.get([actor.ping.remote(i) for i in range(100)])
        t0 = time.perf_counter()
        out = self.mod.get([actor.ping.remote(i) for i in range(n)])
        seconds = time.perf_counter() - t0
        assert out == list(range(n))
        self.mod.kill(actor)
        return {"per_s": n / seconds, "n": n, "seconds": seconds}

    def actor_sync(self):
        n = self.cfg["n_actor_sync"]
        actor = self.echo.remote()
        self.mod.get([actor.ping.remote(i) for i in range(20)])
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            self.mod.get(actor.ping.remote(i))
            samples.append(time.perf_counter() - t0)
        self.mod.kill(actor)
        return _latency(samples)

    def actor_nn(self):
        """n actors (num_cpus=0) each called by n caller tasks; every caller calls every actor."""
        n, m = self.cfg["nn_actors"], self.cfg["nn_calls"]
        actors = [self.echo0.remote() for _ in range(n)]
        self.mod.get([self.nn_caller.remote(self.name, actors, 10) for _ in range(n)])
        t0 = time.perf_counter()
        counts = self.mod.get([self.nn_caller.remote(self.name, actors, m) for _ in range(n)])
        seconds = time.perf_counter() - t0
        assert counts == [n * m] * n, counts
        for a in actors:
            self.mod.kill(a)
        return {"per_s": n * n * m / seconds, "n_actors": n, "calls": n * n * m, "seconds": seconds}

    def big_arg_tasks(self):
        # Warm up with a small array, so that "first" is the big argument's cost, not the workers'
        # first import of numpy or first sight of the function.
        small = self.mod.put(_ones(1))
        self.mod.get([self.touch.remote(small) for _ in range(4)])
        big = _ones(self.cfg["big_mib"])
        expected = float(big[::512].sum())
        ref = self.mod.put(big)
        del big

        def four():
            return self.mod.get([self.touch.remote(ref) for _ in range(4)])

        first, out = _timed(four)
        assert out == [expected] * 4, out
        times = [_timed(four)[0] for _ in range(self.cfg["big_reps"])]
        del ref
        return {"first_s": first, "median_s": statistics.median(times), "mib": self.cfg["big_mib"]}


# -- multiprocessing.Pool ----------------------------------------------------------------------------
class PoolSystem:
    """``multiprocessing.Pool(2)``: tasks only; "put" is a plain memcpy, the floor for a store write."""

    def __init__(self, module_name: str, config: dict):
        import multiprocessing
        self.mp = multiprocessing
        self.cfg = config

    def init(self):
        seconds, self.pool = _timed(self.mp.Pool, 2)
        return {"seconds": seconds, "start_method": self.mp.get_start_method()}

    def shutdown(self):
        t0 = time.perf_counter()
        self.pool.close()
        self.pool.join()
        return {"seconds": time.perf_counter() - t0}

    def _warm(self, k=50):
        [r.get() for r in [self.pool.apply_async(tiny, (i,)) for i in range(k)]]

    def tiny_tasks(self):
        n = self.cfg["n_tiny"]
        self._warm(min(n, 200))
        t0 = time.perf_counter()
        results = [self.pool.apply_async(tiny, (i,)) for i in range(n)]
        submit_s = time.perf_counter() - t0
        out = [r.get() for r in results]
        seconds = time.perf_counter() - t0
        assert out == list(range(n))
        return {"per_s": n / seconds, "n": n, "seconds": seconds, "submit_s": submit_s}

    def round_trip(self):
        self._warm(20)
        samples = []
        for i in range(self.cfg["n_round_trip"]):
            t0 = time.perf_counter()
            self.pool.apply(tiny, (i,))
            samples.append(time.perf_counter() - t0)
        return _latency(samples)

    def put_100mib(self):
        arr = _ones(self.cfg["put_mib"])
        dst = np.empty_like(arr)          # fresh pages: the first copy pays the page faults
        cold, _ = _timed(np.copyto, dst, arr)
        warm = [_timed(np.copyto, dst, arr)[0] for _ in range(self.cfg["put_reps"])]
        return {**_bandwidth(arr.nbytes, cold, warm), "what": "memcpy (np.copyto)"}


# -- dask.distributed ---------------------------------------------------------------------------------
class DaskSystem:
    """``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``; "put" is ``scatter``."""

    def __init__(self, module_name: str, config: dict):
        import distributed
        self.distributed = distributed
        self.cfg = config

    def init(self):
        d = self.distributed
        t0 = time.perf_counter()
        self.cluster = d.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None)
        self.client = d.Client(self.cluster)
        return {"seconds": time.perf_counter() - t0}

    def shutdown(self):
        t0 = time.perf_counter()
        self.client.close()
        self.cluster.close()
        return {"seconds": time.perf_counter() - t0}

    def _warm(self, k=20):
        self.client.gather([self.client.submit(tiny, i, pure=False) for i in range(k)])

    def tiny_tasks(self):
        n = self.cfg["n_tiny"]
        self._warm()
        t0 = time.perf_counter()
        futs = [self.client.submit(tiny, i, pure=False) for i in range(n)]
        submit_s = time.perf_counter() - t0
        out = self.client.gather(futs)
        seconds = time.perf_counter() - t0
        assert out == list(range(n))
        return {"per_s": n / seconds, "n": n, "seconds": seconds, "submit_s": submit_s}

    def round_trip(self):
        self._warm()
        samples = []
        for i in range(self.cfg["n_round_trip"]):
            t0 = time.perf_counter()
            self.client.submit(tiny, i, pure=False).result()
            samples.append(time.perf_counter() - t0)
        return _latency(samples)

    def chain(self):
        n = self.cfg["n_chain"]
        self._warm()
        t0 = time.perf_counter()
        fut = self.client.submit(inc, 0, pure=False)
        for _ in range(n - 1):
            fut = self.client.submit(inc, fut, pure=False)
        value = fut.result()
        seconds = time.perf_counter() - t0
        assert value == n, value
        return {"seconds": seconds, "n": n}

    def put_100mib(self):
        arr = _ones(self.cfg["put_mib"])
        cold, fut = _timed(self.client.scatter, arr, hash=False)
        del fut
        warm = []
        for _ in range(self.cfg["put_reps"]):
            t, fut = _timed(self.client.scatter, arr, hash=False)
            warm.append(t)
            del fut
        return {**_bandwidth(arr.nbytes, cold, warm), "what": "client.scatter"}

    def get_800mib(self):
        big = _ones(self.cfg["get_mib"])
        put_s, fut = _timed(self.client.scatter, big, hash=False)
        del big
        first, a = _timed(fut.result)
        times = [_timed(fut.result)[0] for _ in range(self.cfg["get_reps"])]
        b = fut.result()
        out = {"first_ms": first * 1e3, "median_ms": statistics.median(times) * 1e3,
               "zero_copy": bool(np.shares_memory(a, b)), "read_only": not a.flags.writeable,
               "correct": bool(a[0] == 1.0 and a[-1] == 1.0), "put_s": put_s,
               "mib": self.cfg["get_mib"]}
        del a, b, fut
        return out

    def big_arg_tasks(self):
        small = self.client.scatter(_ones(1), hash=False)
        self.client.gather([self.client.submit(touch_pages, small, pure=False) for _ in range(4)])
        big = _ones(self.cfg["big_mib"])
        expected = float(big[::512].sum())
        fut = self.client.scatter(big, hash=False)
        del big

        def four():
            return self.client.gather([self.client.submit(touch_pages, fut, pure=False)
                                       for _ in range(4)])

        first, out = _timed(four)
        assert out == [expected] * 4, out
        times = [_timed(four)[0] for _ in range(self.cfg["big_reps"])]
        del fut
        return {"first_s": first, "median_s": statistics.median(times), "mib": self.cfg["big_mib"]}


# -- helpers ------------------------------------------------------------------------------------------
def _latency(samples: list[float]) -> dict:
    s = sorted(samples)
    return {"median_ms": statistics.median(s) * 1e3, "p90_ms": s[int(0.9 * (len(s) - 1))] * 1e3,
            "n": len(s)}


def _bandwidth(nbytes: int, cold: float, warm: list[float]) -> dict:
    w = statistics.median(warm) if warm else cold
    return {"cold_gib_s": nbytes / GiB / cold, "warm_gib_s": nbytes / GiB / w, "cold_s": cold,
            "warm_median_s": w, "mib": nbytes // MiB, "reps": len(warm)}


SYSTEMS = {"miniray": RayLike, "ray": RayLike, "pool": PoolSystem, "dask": DaskSystem}


def make_system(name: str, config: dict):
    return SYSTEMS[name](name, config)


if __name__ == "__main__":
    sys.exit(serve(make_system))
