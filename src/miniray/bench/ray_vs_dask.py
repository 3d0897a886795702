"""Ray vs Dask for the lesson: peak memory and wall time of two workloads on up to four systems.

    python benchmarks/ray_vs_dask.py [--quick] [--only dask,dask_on_miniray,ray,dask_on_ray]
                                     [--python-for-peers /work/venv-peers/bin/python]
                                     [--figure out.png] [--out DIR] [--no-write]

Workloads (the same Dask graph on every Dask-based system; Ray runs the same steps as tasks):

* ``broadcast``: one task builds one large float64 array; many tasks each read all of it and
  return a number.  Dask's distributed workers copy the array to each worker that needs it;
  miniray and Ray keep one copy in shared memory that every task reads zero-copy.
* ``set_index``: a dataframe made of partitions generated in tasks (``dd.from_map``) is sorted by a
  random float column with ``set_index`` (task-based shuffle everywhere), and every output partition
  is checked to be sorted.  All-to-all: each output partition takes a piece of every input.

Systems: ``dask`` (dask.distributed LocalCluster, 2 process workers, 1 thread each),
``dask_on_miniray`` (``miniray_dask_get``), and with ``--python-for-peers`` an interpreter that has
Ray: ``ray`` (native tasks) and ``dask_on_ray`` (``ray.util.dask.ray_dask_get``).

    parent (this module, main)                         child (this file run by path)
    ─────────────────────────                          ─────────────────────────────
    harness.run_child ── Popen ──────────────────────► serve(): init, workloads, shutdown
    TreeSampler: Σ PSS over the child's process tree  ◄── "@@BENCH" lines, marks per workload:
    every ~20 ms                                           <w>:baseline_start/_end, <w>:start/_end
    peak extra = max Σ PSS in [start, end] − median Σ PSS over the baseline just before

The child part imports only the standard library at the top (the peers' interpreter has no
miniray); the parent part imports miniray.bench.harness and memory inside ``main``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

SYSTEMS = ["dask", "dask_on_miniray", "ray", "dask_on_ray"]
PEER_SYSTEMS = {"ray", "dask_on_ray"}
WORKLOADS = ["broadcast", "set_index"]
LABELS = {"dask": "dask.distributed (2 processes)", "dask_on_miniray": "Dask on miniray",
          "ray": "Ray (tasks)", "dask_on_ray": "Dask on Ray"}
FULL = {"mib": 256, "readers": 16, "rows": 2_000_000, "partitions": 16, "baseline_s": 0.4}
QUICK = {"mib": 16, "readers": 4, "rows": 40_000, "partitions": 4, "baseline_s": 0.2}
MiB = 1 << 20


# =========================================================================== child side
def make_array(n: int):
    import numpy as np

    a = np.empty(n, np.float64)
    a[:] = 1.0                                  # touch every page
    return a


def read_array(a, i: int) -> float:
    time.sleep(0.05)                            # hold it a moment: the sampler sees the plateau
    return float(a.sum()) + i


def make_partition(i: int, rows: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    return pd.DataFrame({"key": rng.random(rows), "a": rng.integers(0, 1000, rows),
                         "b": rng.random(rows)}, index=pd.RangeIndex(i * rows, (i + 1) * rows))


def sorted_len(df) -> int:
    assert df.index.is_monotonic_increasing
    return len(df)


class System:
    """Workload phases shared by every system; subclasses say how to start and run graphs."""

    def __init__(self, name: str, cfg: dict):
        self.name, self.cfg = name, cfg

    def warm_up(self):
        """Run both workloads tiny once, so workers have imported numpy, pandas and dask before
        any baseline is taken (the imports would otherwise count as the workload's memory)."""
        self.run_broadcast(1024, 2)
        self.run_set_index(500, 2)

    def _measured(self, workload: str, run):
        from child_protocol import mark

        mark(f"{workload}:baseline_start")
        time.sleep(self.cfg["baseline_s"])
        mark(f"{workload}:baseline_end")
        mark(f"{workload}:start")
        t0 = time.perf_counter()
        ok = run()
        seconds = time.perf_counter() - t0
        mark(f"{workload}:end")
        time.sleep(0.1)
        return {"seconds": seconds, "ok": bool(ok)}

    def broadcast(self):
        n, k = self.cfg["mib"] * MiB // 8, self.cfg["readers"]
        return self._measured("broadcast", lambda: self.run_broadcast(n, k) == [n + i for i in range(k)])

    def set_index(self):
        rows, parts = self.cfg["rows"], self.cfg["partitions"]
        return self._measured("set_index", lambda: self.run_set_index(rows // parts, parts) == rows)

    # Dask graphs, shared by the three Dask-based systems.
    def broadcast_graph(self, n, k):
        import dask

        a = dask.delayed(make_array, pure=True)(n)
        return [dask.delayed(read_array, pure=True)(a, i) for i in range(k)]

    def set_index_graph(self, rows, parts):
        import dask
        import dask.dataframe as dd

        with dask.config.set({"dataframe.shuffle.method": "tasks"}):
            df = dd.from_map(make_partition, range(parts), rows=rows)
            return df.set_index("key").map_partitions(sorted_len, meta=(None, int)).sum()


class DaskOnScheduler(System):
    def compute(self, *xs):
        import dask

        with dask.config.set({"dataframe.shuffle.method": "tasks"}):
            return dask.compute(*xs, scheduler=self.scheduler)

    def run_broadcast(self, n, k):
        return list(self.compute(*self.broadcast_graph(n, k)))

    def run_set_index(self, rows, parts):
        return int(self.compute(self.set_index_graph(rows, parts))[0])


class DaskDistributed(DaskOnScheduler):
    def init(self):
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    dashboard_address=None)
        self.client = Client(self.cluster)
        self.scheduler = None                       # the default client
        self.warm_up()

    def compute(self, *xs):
        import dask

        with dask.config.set({"dataframe.shuffle.method": "tasks"}):
            return dask.compute(*xs)

    def shutdown(self):
        self.client.close()
        self.cluster.close()


class DaskOnMiniray(DaskOnScheduler):
    def init(self):
        import miniray
        from miniray.util.dask import miniray_dask_get

        miniray.init(num_cpus=2)
        self.scheduler = miniray_dask_get
        self.warm_up()

    def shutdown(self):
        import miniray

        miniray.shutdown()


class DaskOnRay(DaskOnScheduler):
    def init(self):
        import ray
        from ray.util.dask import ray_dask_get

        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        self.scheduler = ray_dask_get
        self.warm_up()

    def shutdown(self):
        import ray

        ray.shutdown()


class RayTasks(DaskOnRay):
    def run_broadcast(self, n, k):
        import ray

        ref = ray.remote(make_array).remote(n)
        reader = ray.remote(read_array)
        return ray.get([reader.remote(ref, i) for i in range(k)])

    def run_set_index(self, rows, parts):
        """Ray's native sort: sample the keys, split each partition by the boundaries, merge."""
        import numpy as np
        import ray

        @ray.remote
        def sample(i):
            return make_partition(i, rows)["key"].to_numpy()[::100]

        @ray.remote(num_returns=parts)
        def split(i, bounds):
            df = make_partition(i, rows)
            which = np.searchsorted(bounds, df["key"].to_numpy(), side="right")
            return tuple(df[which == j] for j in range(parts))

        @ray.remote
        def merge(*pieces):
            import pandas as pd

            return sorted_len(pd.concat(pieces).set_index("key").sort_index())

        keys = np.sort(np.concatenate(ray.get([sample.remote(i) for i in range(parts)])))
        bounds = keys[np.linspace(0, len(keys) - 1, parts + 1).astype(int)[1:-1]]
        pieces = [split.remote(i, bounds) for i in range(parts)]
        return sum(ray.get([merge.remote(*[p[j] for p in pieces]) for j in range(parts)]))


def make_system(name: str, cfg: dict):
    cls = {"dask": DaskDistributed, "dask_on_miniray": DaskOnMiniray, "ray": RayTasks,
           "dask_on_ray": DaskOnRay}[name]
    import dask  # noqa: F401  (ImportError: "unavailable")
    if name == "dask":
        import distributed  # noqa: F401
    elif name == "dask_on_miniray":
        import miniray  # noqa: F401
    else:
        import ray  # noqa: F401
    return cls(name, cfg)


# =========================================================================== parent side
def analyse(sampler, workload: str) -> dict:
    """Peak and baseline Σ PSS of one workload's phase (mean of the forward and backward pass)."""
    m = {k.split(":", 1)[1]: t for k, t in sampler.marks.items() if k.startswith(workload + ":")}
    if not all(k in m for k in ("baseline_start", "baseline_end", "start", "end")):
        return {"error": f"phase marks missing for {workload}: {sorted(m)}"}
    base = [(f + b) / 2 for t, f, b, _ in sampler.samples
            if m["baseline_start"] <= t <= m["baseline_end"]]
    during = [(f + b) / 2 for t, f, b, _ in sampler.samples if m["start"] <= t <= m["end"] + 0.05]
    if not base or not during:
        return {"error": f"too few samples ({len(base)} baseline, {len(during)} during)"}
    baseline, peak = statistics.median(base), max(during)
    return {"baseline_mib": baseline / MiB, "peak_mib": peak / MiB,
            "extra_mib": (peak - baseline) / MiB, "samples": len(during)}


def parse_args(argv):
    from miniray.bench import harness
    p = argparse.ArgumentParser(prog="ray_vs_dask", description=__doc__.split("\n")[0])
    harness.common_args(p, SYSTEMS)
    p.add_argument("--mib", type=int, help="broadcast array size in MiB")
    p.add_argument("--rows", type=int, help="set_index rows")
    p.add_argument("--figure", help="write the comparison figure (PNG) here")
    return harness.parse_common(p, argv, SYSTEMS)


def draw(data: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s, r in data["systems"].items() if "unavailable" not in r["meta"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(systems))
    for ax, field, title in ((axes[0], "peak_mib", "peak memory (Σ PSS, MiB)"),
                             (axes[1], "seconds", "wall time (s)")):
        for i, s in enumerate(systems):
            vals = [(data["systems"][s]["results"].get(w) or {}).get(field) or 0 for w in WORKLOADS]
            bars = ax.bar([x + i * width for x in range(len(WORKLOADS))], vals, width,
                          label=LABELS[s])
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(WORKLOADS))])
        ax.set_xticklabels([f"broadcast {data['config']['mib']} MiB to "
                            f"{data['config']['readers']} tasks",
                            f"set_index, {data['config']['rows']:,} rows"])
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Ray vs Dask on this machine ({data['machine']['usable_cores']} cores, "
                 f"{data['date']})")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from miniray.bench import harness
    from miniray.bench.harness import fmt
    from miniray.bench.memory import TreeSampler

    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = dict(QUICK if args.quick else FULL)
    cfg.update({k: v for k, v in (("mib", args.mib), ("rows", args.rows)) if v})
    script = os.path.abspath(__file__)
    data = {"benchmark": "ray_vs_dask", "date": harness.today(), "quick": args.quick,
            "machine": harness.machine_info(), "config": cfg, "systems": {}}
    rows = []
    limit = 60.0 if args.quick else 120.0
    for system in [s for s in SYSTEMS if s in args.only]:
        python = args.python_for_peers if system in PEER_SYSTEMS else sys.executable
        print(f"running {system} ({python}) ...", flush=True)
        sampler = TreeSampler()
        try:
            run = harness.run_child(python, script, system, WORKLOADS, cfg,
                                    timeout_for=lambda w: limit, on_event=sampler.on_event,
                                    log=lambda s: print(s, flush=True))
        finally:
            sampler.stop()
        data["systems"][system] = run
        if "unavailable" in run["meta"]:
            print(f"  {system}: skipped ({run['meta']['unavailable'][:120]})", flush=True)
            continue
        for w in WORKLOADS:
            res = run["results"].get(w) or {"error": "not run"}
            if "error" not in res:
                res.update(analyse(sampler, w))
            run["results"][w] = res
            if "error" in res:
                note = str(res["error"]).strip().splitlines()[-1][:160]
                rows.append([w, LABELS[system], "–", "–", "–", "error: " + note])
            else:
                rows.append([w, LABELS[system], fmt(res["seconds"]), fmt(res["peak_mib"]),
                             fmt(res["extra_mib"]), "ok" if res["ok"] else "WRONG RESULT"])
    rows.sort(key=lambda r: WORKLOADS.index(r[0]))
    headers = ["workload", "system", "wall s", "peak Σ PSS MiB", "extra over idle MiB", "result"]
    lines = [f"# Ray vs Dask, {data['date']}{' (quick)' if args.quick else ''}", "",
             f"broadcast: one task builds a {cfg['mib']} MiB array, {cfg['readers']} tasks read "
             f"it. set_index: {cfg['rows']:,} rows in {cfg['partitions']} partitions, task "
             "shuffle. Peak = max Σ PSS over the driver and all its descendants (sampled every "
             "~20 ms); extra = peak minus the idle baseline just before.", "",
             *harness.setup_lines(data)]
    lines += ["", harness.markdown_table(headers, rows)]
    markdown = "\n".join(lines)
    harness.report(args, "ray-vs-dask", data, markdown)
    if args.figure:
        draw(data, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    if "--system" in sys.argv:                  # the child, run by path by harness.run_child
        from child_protocol import serve
        sys.exit(serve(make_system))
    sys.exit(main())
