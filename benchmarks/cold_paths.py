"""Cold and large paths, miniray side by side with Ray (issue 14's speed table).

    python benchmarks/cold_paths.py --ray-python /work/rayvenv/bin/python [--quick] [--runs 3] [--out DIR]
    python benchmarks/cold_paths.py --only miniray --queued 1000000 --runs 1   # Ray's 1M envelope

Each library runs in its own child process (one fresh runtime each, so store pages are fresh):
  puts       5 puts of one 100 MiB array into fresh store pages, GiB/s
  big_arg    4 tasks each summing a just-put array (800 MiB; --quick: 200 MiB), seconds
  returns    one task with num_returns=10000, all fetched, seconds
  queued     N tiny tasks submitted at once (--queued, default 100k; --quick: 20k), driver RSS
             growth per task, KiB
Each library gets 1 s after its first task to finish starting.  Rounds alternate which library
goes first (--runs, default 3).  The table gives each figure's median and range per library and
miniray vs Ray in each round (>1 means miniray is better), next to issue 14's target; it is printed and written to <out>/cold-paths-<date>.md and .json (default
benchmarks/results; --no-write: print only).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(lib: str, quick: bool, n_queued: int) -> dict:
    import numpy as np
    import psutil
    if lib == "ray":
        import ray
    else:
        sys.path.insert(0, os.path.join(HERE, "..", "src"))
        import miniray as ray
    big = (200 if quick else 800) << 20
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
    time.sleep(1.0)     # both finish starting: Ray's workers import in the background for a while,
                        # miniray's store allocates its first warm pages (a put in the first ~0.3 s
                        # after init may still run beside that fill)
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


ROWS = [("puts", "5 puts of 100 MiB into fresh pages", "GiB/s", True, "≥1.5x"),
        ("big_arg", "4 tasks summing a just-put array", "s", False, "≥1x"),
        ("returns", "num_returns=10000, all fetched", "s", False, "≥1x"),
        ("queued", "driver RSS per queued tiny task ({n} queued)", "KiB", False, "≤1.1 KiB")]


def run_child(lib: str, python: str, quick: bool, n_queued: int) -> dict:
    cmd = [python, os.path.abspath(__file__), "--child", lib, "--queued", str(n_queued)]
    cmd += ["--quick"] if quick else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{lib} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rounds: list, quick: bool, n_queued: int) -> str:
    import platform
    import statistics
    lines = [f"# Cold and large paths, miniray and Ray side by side ({time.strftime('%Y-%m-%d')})", "",
             f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
             f"{len(rounds)} rounds, alternating which goes first{' (--quick sizes)' if quick else ''}.", "",
             "| figure | Ray median (range) | miniray median (range) | miniray vs Ray, each round | target |",
             "|---|---|---|---|---|"]
    for key, label, unit, higher_better, target in ROWS:
        r = [x["ray"][key] for x in rounds if "ray" in x]
        m = [x["miniray"][key] for x in rounds]
        ratios = [(b / a if higher_better else a / b) if a and b else float("nan") for a, b in zip(r, m)]

        def span(v):
            return f"{statistics.median(v):.3g} {unit} ({min(v):.3g}-{max(v):.3g})" if v else "not run"
        each = " / ".join(f"{q:.2f}x" for q in ratios) or "-"
        label = label.replace("{n}", f"{n_queued:,}")
        lines.append(f"| {label} | {span(r)} | {span(m)} | {each} | {target} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ray-python", default="/work/rayvenv/bin/python")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--queued", type=int, help="tiny tasks queued at once (default 100k; --quick: 20k)")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--only", choices=["miniray"], help="miniray alone (no Ray installed)")
    p.add_argument("--child", choices=["ray", "miniray"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    n_queued = args.queued or (20_000 if args.quick else 100_000)
    if args.child:
        print(json.dumps(child(args.child, args.quick, n_queued)))
        return 0
    libs = [("miniray", sys.executable)] + ([] if args.only else [("ray", args.ray_python)])
    rounds = []
    for i in range(args.runs):
        order = libs if i % 2 == 0 else libs[::-1]
        try:
            rounds.append({lib: run_child(lib, python, args.quick, n_queued) for lib, python in order})
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return 1
    text = table(rounds, args.quick, n_queued)
    print(text)
    if not args.no_write:
        os.makedirs(args.out, exist_ok=True)
        suffix = ("-quick" if args.quick else "") + (f"-{n_queued // 1000}k-queued" if args.queued else "")
        stem = os.path.join(args.out, f"cold-paths-{time.strftime('%Y-%m-%d')}{suffix}")
        with open(stem + ".md", "w") as f:
            f.write(text)
        with open(stem + ".json", "w") as f:
            json.dump({"rounds": rounds, "quick": args.quick, "queued": n_queued}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
