"""Cold and large paths, miniray side by side with Ray (issue 14's speed table).

    python benchmarks/cold_paths.py --ray-python /work/rayvenv/bin/python [--quick]

Each library runs in its own child process (one fresh runtime each, so store pages are fresh):
  puts       5 puts of one 100 MiB array into fresh store pages, GiB/s
  big_arg    4 tasks each summing a just-put array (800 MiB; --quick: 200 MiB), seconds
  returns    one task with num_returns=10000, all fetched, seconds
  queued     N tiny tasks submitted at once (100k; --quick: 20k), driver RSS growth per task, KiB
The figures and the ratios (miniray vs Ray, >1 means miniray is better) are printed as a table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(lib: str, quick: bool) -> dict:
    import numpy as np
    import psutil
    if lib == "ray":
        import ray
    else:
        sys.path.insert(0, os.path.join(HERE, "..", "src"))
        import miniray as ray
    big = (200 if quick else 800) << 20
    n_queued = 20_000 if quick else 100_000
    ray.init(num_cpus=2, object_store_memory=max(2 << 30, int(big * 2.5)))   # no spilling
    out = {}

    @ray.remote
    def total(a):
        return float(a.sum())

    @ray.remote(num_returns=10_000)
    def many():
        return tuple(range(10_000))

    @ray.remote
    def tiny(i):
        return i

    ray.get(tiny.remote(0))                                   # workers up
    arr = np.ones(100 << 20, dtype=np.uint8)
    start = time.perf_counter()
    refs = [ray.put(arr) for _ in range(5)]
    out["puts"] = 5 * arr.nbytes / 2**30 / (time.perf_counter() - start)
    del refs, arr

    a = np.ones(big // 8, dtype=np.float64)
    ref = ray.put(a)
    del a
    start = time.perf_counter()
    ray.get([total.remote(ref) for _ in range(4)])
    out["big_arg"] = time.perf_counter() - start
    del ref

    start = time.perf_counter()
    vals = ray.get(many.remote())
    out["returns"] = time.perf_counter() - start
    assert len(vals) == 10_000

    me = psutil.Process()
    before = me.memory_info().rss
    refs = [tiny.remote(i) for i in range(n_queued)]
    out["queued"] = (me.memory_info().rss - before) / n_queued / 1024
    ray.get(refs[-1])
    del refs
    ray.shutdown()
    return out


ROWS = [("puts", "5 puts of 100 MiB into fresh pages", "GiB/s", True),
        ("big_arg", "4 tasks summing a just-put array", "s", False),
        ("returns", "num_returns=10000, all fetched", "s", False),
        ("queued", "driver RSS per queued tiny task", "KiB", False)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ray-python", default="/work/rayvenv/bin/python")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", choices=["ray", "miniray"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.quick)))
        return 0
    results = {}
    for lib, python in (("miniray", sys.executable), ("ray", args.ray_python)):
        cmd = [python, os.path.abspath(__file__), "--child", lib] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            print(f"{lib} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        results[lib] = json.loads(proc.stdout.strip().splitlines()[-1])
    print("| figure | Ray | miniray | miniray vs Ray |\n|---|---|---|---|")
    for key, label, unit, higher_better in ROWS:
        r, m = results["ray"][key], results["miniray"][key]
        ratio = (m / r if higher_better else r / m) if r and m else float("nan")
        print(f"| {label} | {r:.3g} {unit} | {m:.3g} {unit} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
