"""Memory-sharing workload, one class per system; run by path as a child of ``memory``.

    python memory_workloads.py --system {miniray,miniray_store,ray,dask} --workloads sharing --config {...}

The seed's "Ray vs Dask" slide: 4 tasks each read one large array and return a small result (its
sum).  The child only marks its phases (``mark(...)`` lines); the parent samples PSS across this
process and all its descendants and lines the samples up with the marks::

    init, warm-up tasks ─ baseline_start ··· 0.5 s ··· baseline_end ─ start ─ build array, share it,
    4 tasks read it ─ end ─ release, shutdown

Sharing, per system: ``miniray`` puts the driver's array; ``miniray_store`` builds it directly in the
store with ``miniray.util.empty`` (skipped when that does not exist yet); ``ray`` puts it; ``dask``
scatters it once and passes the future to 4 tasks on a 2-worker process cluster.  The driver keeps its
array until the end in every case, as user code would.
"""
from __future__ import annotations

import os

import importlib
import sys
import time

import numpy as np

from child_protocol import mark, serve

MiB = 1 << 20


def read_sum(a, hold_s=0.3):
    """The task: read the whole array, then hold it, so the sampler sees a steady plateau."""
    s = float(a.sum())
    time.sleep(hold_s)
    return s


def _fill(a: np.ndarray) -> np.ndarray:
    a[:] = 1.0           # touch every page: np.zeros alone would be lazily mapped
    return a


class Shared:
    """The phases common to every system; subclasses say how to start, share and run."""

    def __init__(self, name: str, config: dict):
        self.name, self.cfg = name, config
        self.n = config["mib"] * MiB // 8
        self.hold = config.get("hold_s", 0.3)

    def sharing(self):
        note = self.unsupported()
        if note:
            return {"skipped": note}
        self.run_tasks(self.share(_fill(np.empty(8, np.float64))), warm=True)
        time.sleep(0.3)
        mark("baseline_start")
        time.sleep(self.cfg.get("baseline_s", 0.5))
        mark("baseline_end")
        mark("start")
        t0 = time.perf_counter()
        handle = self.share(None)
        sums = self.run_tasks(handle)
        seconds = time.perf_counter() - t0
        mark("end")
        time.sleep(0.1)
        ok = sums == [float(self.n)] * 4
        del handle
        self.release()
        return {"seconds": seconds, "sums_ok": ok, "array_bytes": self.n * 8,
                "how": self.how}

    def unsupported(self) -> str:
        return ""

    def release(self):
        self.driver_array = None


class RayLike(Shared):
    how = "driver array, put() once, ref passed to 4 tasks"

    def __init__(self, name, config):
        super().__init__(name, config)
        self.mod = importlib.import_module("ray" if name == "ray" else "miniray")

    def init(self):
        extra = {"include_dashboard": False, "log_to_driver": False} if self.name == "ray" else {}
        t0 = time.perf_counter()
        # count every page the array causes: no pre-faulted arena hiding part of the store's copy
        os.environ["MINIRAY_PREFAULT_MIB"] = "0"
        self.mod.init(num_cpus=2, **extra)
        self.task = self.mod.remote(read_sum)
        return {"seconds": time.perf_counter() - t0}

    def shutdown(self):
        self.mod.shutdown()
        return {}

    def share(self, small):
        if small is not None:
            return self.mod.put(small)
        self.driver_array = _fill(np.empty(self.n, np.float64))
        return self.mod.put(self.driver_array)

    def run_tasks(self, ref, warm=False):
        return self.mod.get([self.task.remote(ref, 0 if warm else self.hold) for _ in range(4)])


class MinirayStore(RayLike):
    """The array is built in the store (``miniray.util.empty``), so the driver holds no copy."""

    how = "miniray.util.empty in the store, filled in place, put() seals it, ref to 4 tasks"

    def unsupported(self) -> str:
        util = importlib.import_module("miniray.util")
        if not hasattr(util, "empty"):
            return "miniray.util.empty does not exist yet"
        return ""

    def share(self, small):
        if small is not None:
            return self.mod.put(small)
        util = importlib.import_module("miniray.util")
        # The documented flow: a writable array in the store, filled in place; put() seals it
        # without a copy.  The driver keeps its (now read-only) view, as user code would.
        self.driver_array = _fill(util.empty((self.n,), np.float64))
        return self.mod.put(self.driver_array)


class DaskSystem(Shared):
    how = "driver array, client.scatter() once, future passed to 4 tasks"

    def __init__(self, name, config):
        super().__init__(name, config)
        import distributed
        self.distributed = distributed

    def init(self):
        t0 = time.perf_counter()
        self.cluster = self.distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                                     processes=True, dashboard_address=None)
        self.client = self.distributed.Client(self.cluster)
        return {"seconds": time.perf_counter() - t0}

    def shutdown(self):
        self.client.close()
        self.cluster.close()
        return {}

    def share(self, small):
        if small is not None:
            return small
        self.driver_array = _fill(np.empty(self.n, np.float64))
        return self.client.scatter(self.driver_array, hash=False)

    def run_tasks(self, handle, warm=False):
        return self.client.gather([self.client.submit(read_sum, handle, 0 if warm else self.hold,
                                                      pure=False) for _ in range(4)])


SYSTEMS = {"miniray": RayLike, "miniray_store": MinirayStore, "ray": RayLike, "dask": DaskSystem}


def make_system(name: str, config: dict):
    return SYSTEMS[name](name, config)


if __name__ == "__main__":
    sys.exit(serve(make_system))
