"""miniray.data vs Ray Data vs pandas: the six laptop workloads of issue 16 on one 1M-row table.

    python benchmarks/data.py --python-for-ray /work/rayvenv/bin/python
    python benchmarks/data.py --rows 100000 --only miniray,pandas --no-write      # a quick look

One table (``id``, ``g = id % 100``, a random float ``x``) is written once as CSV.  Each system runs
in its own child process, one after the other (Ray's from the interpreter that has it): it starts its
runtime with 2 CPUs, warms up on a tiny dataset (workers import pyarrow once), then runs each
workload ``--repeats`` times and reports the best wall time and the result, which the parent checks
agree across systems.  Progress bars are off in both Ray Data and miniray.data.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = ["map_batches_sum", "read_csv_count", "groupby_mean", "items_map_filter", "sort_take",
             "random_shuffle_count"]
LABELS = {
    "map_batches_sum": 'range(1M).map_batches(x*2).sum("id")',
    "read_csv_count": "read_csv(...).count()",
    "groupby_mean": 'read_csv(...).groupby("g").mean("x").take_all()',
    "items_map_filter": "from_items(range(20k)).map(...).filter(...).take_all()",
    "sort_take": 'read_csv(...).sort("x").take(5)',
    "random_shuffle_count": "read_csv(...).random_shuffle(seed=0).count()",
}
NEEDS_PANDAS_TARGET = {"map_batches_sum", "read_csv_count", "groupby_mean", "sort_take",
                       "random_shuffle_count"}


# -- children -------------------------------------------------------------------------------------
def _dataset_workloads(ray, csv, rows):
    def map_batches_sum():
        return int(ray.data.range(rows).map_batches(lambda b: {"id": b["id"] * 2}).sum("id"))

    def read_csv_count():
        return ray.data.read_csv(csv).count()

    def groupby_mean():
        out = ray.data.read_csv(csv).groupby("g").mean("x").take_all()
        return round(sum(r["mean(x)"] for r in out), 6)

    def items_map_filter():
        out = (ray.data.from_items(list(range(20_000))).map(lambda r: {"v": r["item"] * 2})
               .filter(lambda r: r["v"] % 3 == 0).take_all())
        return len(out)

    def sort_take():
        return [r["id"] for r in ray.data.read_csv(csv).sort("x").take(5)]

    def random_shuffle_count():
        return ray.data.read_csv(csv).random_shuffle(seed=0).count()

    return locals()


def _pandas_workloads(csv, rows):
    import numpy as np
    import pandas as pd

    def map_batches_sum():
        return int((pd.Series(np.arange(rows)) * 2).sum())

    def read_csv_count():
        return len(pd.read_csv(csv))

    def groupby_mean():
        return round(float(pd.read_csv(csv).groupby("g")["x"].mean().sum()), 6)

    def items_map_filter():
        s = pd.Series(range(20_000)) * 2
        return len(s[s % 3 == 0].tolist())

    def sort_take():
        return pd.read_csv(csv).sort_values("x").head(5)["id"].tolist()

    def random_shuffle_count():
        return len(pd.read_csv(csv).sample(frac=1.0, random_state=0))

    return locals()


def child(system, csv, rows, repeats, only):
    if system == "pandas":
        work = _pandas_workloads(csv, rows)
    else:
        if system == "miniray":
            sys.path.insert(0, os.path.join(HERE, "..", "src"))
            import miniray as ray
        else:
            import ray
        kw = {"include_dashboard": False, "address": "local"} if system == "ray" else {}
        t = time.perf_counter()
        ray.init(num_cpus=2, **kw)
        ray.data.DataContext.get_current().enable_progress_bars = False
        # warm-up: every worker imports pyarrow once
        ray.data.range(10, override_num_blocks=2).map_batches(lambda b: b).filter(lambda r: True).take_all()
        print(json.dumps({"init_and_warmup_s": time.perf_counter() - t}), flush=True)
        work = _dataset_workloads(ray, csv, rows)
    for name in WORKLOADS:
        if only and name not in only:
            continue
        best, result = float("inf"), None
        for _ in range(repeats):
            t = time.perf_counter()
            result = work[name]()
            best = min(best, time.perf_counter() - t)
        print(json.dumps({"workload": name, "seconds": best, "result": result}), flush=True)


# -- parent ---------------------------------------------------------------------------------------
def write_csv(path, rows):
    import numpy as np
    import pandas as pd
    ids = np.arange(rows)
    pd.DataFrame({"id": ids, "g": ids % 100, "x": np.random.default_rng(0).random(rows)}).to_csv(
        path, index=False)


def run_child(python, system, csv, args):
    cmd = [python, os.path.abspath(__file__), "--child", system, "--csv", csv, "--rows", str(args.rows),
           "--repeats", str(args.repeats if system != "ray" else args.ray_repeats),
           "--workloads", ",".join(args.workloads)]
    env = dict(os.environ)
    if system == "ray":
        env.pop("PYTHONPATH", None)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired as e:
        print(f"{system}: timed out after {args.timeout} s", file=sys.stderr)
        out = e
    res = {}
    for line in (out.stdout or "").splitlines() if isinstance(out.stdout, str) else []:
        if line.startswith("{"):
            d = json.loads(line)
            if "workload" in d:
                res[d["workload"]] = d
            else:
                res["_init"] = d
    if getattr(out, "returncode", 1) != 0:
        print(f"{system} child failed:\n{(out.stderr or '')[-2000:]}", file=sys.stderr)
    return res


def table(results, rows):
    m, r, p = (results.get(k, {}) for k in ("miniray", "ray", "pandas"))
    lines = [f"miniray.data vs Ray Data vs pandas, {rows:,} rows, 2 CPUs, best of repeats (seconds)", "",
             "| workload | miniray | Ray Data | pandas | Ray / miniray | miniray / pandas | target met |",
             "|---|---|---|---|---|---|---|"]
    for name in WORKLOADS:
        if name not in m:
            continue
        ms = m[name]["seconds"]
        rs = r.get(name, {}).get("seconds")
        ps = p.get(name, {}).get("seconds")
        vs_ray = f"{rs / ms:.0f}x" if rs else "–"
        vs_pd = f"{ms / ps:.1f}x" if ps else "–"
        ok = []
        if rs:
            ok.append("≥10x Ray " + ("yes" if rs / ms >= 10 else "NO"))
        if ps and name in NEEDS_PANDAS_TARGET:
            ok.append("≤3x pandas " + ("yes" if ms / ps <= 3 else "NO"))
        fmt = lambda v: "–" if v is None else f"{v:.3f}"
        lines.append(f"| `{LABELS[name]}` | {fmt(ms)} | {fmt(rs)} | {fmt(ps)} | {vs_ray} | {vs_pd} | "
                     f"{', '.join(ok)} |")
    agree = [n for n in WORKLOADS if len({json.dumps(s[n]["result"]) for s in (m, r, p) if n in s}) > 1
             and n not in ("sort_take",)]
    inits = {k: v["_init"]["init_and_warmup_s"] for k, v in results.items() if "_init" in v}
    lines += ["", "init + warm-up (not in the table): " + ", ".join(f"{k} {v:.2f} s" for k, v in inits.items())]
    if agree:
        lines.append(f"results differ between systems for: {agree}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--csv")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ray-repeats", type=int, default=2)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--only", default="miniray,ray,pandas")
    ap.add_argument("--python-for-ray", default="/work/rayvenv/bin/python")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    args.workloads = [w for w in args.workloads.split(",") if w]
    if args.child:
        child(args.child, args.csv, args.rows, args.repeats, set(args.workloads))
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "table.csv")
        write_csv(csv, args.rows)
        for system in args.only.split(","):
            python = args.python_for_ray if system == "ray" else sys.executable
            if system == "ray" and not os.path.exists(python):
                print(f"skipping Ray Data: no interpreter at {python}", file=sys.stderr)
                continue
            results[system] = run_child(python, system, csv, args)
    text = table(results, args.rows)
    print(text)
    if not args.no_write:
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, f"data-{datetime.date.today().isoformat()}")
        with open(stem + ".md", "w") as f:
            f.write(text + "\n")
        with open(stem + ".json", "w") as f:
            json.dump({"rows": args.rows, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
