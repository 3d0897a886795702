"""Tune side by side: miniray.tune and Ray Tune on the same two workloads (issue 17's targets).

    python benchmarks/tune.py                     miniray, then Ray Tune (/work/rayvenv) in a subprocess
    python benchmarks/tune.py --backend miniray   one backend only, JSON on stdout
    python benchmarks/tune.py --ray-samples 64    ASHA samples for Ray (default: the full 64)

Workloads (a function trainable, ~1 ms per report):
    score = -(lr - 0.1)**2 - (m - 0.9)**2 + step * 1e-4
    grid:  lr x m, 4 x 4 grid points, 10 reports each, FIFO
    asha:  64 random samples, ASHAScheduler(max_t=27, grace_period=1, reduction_factor=3)
Each backend is initialised with 2 CPUs and one warm-up task first; the figure is Tuner.fit()'s
wall time.  Results go to benchmarks/results/tune-<date>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RAY_PYTHON = "/work/rayvenv/bin/python"


def workload(backend: str, asha_samples: int) -> dict:
    from importlib import import_module

    if backend == "miniray":
        sys.path.insert(0, os.path.join(HERE, "..", "src"))
    ray = import_module(backend)                      # the same code for both: `import X as ray`
    tune = import_module(f"{backend}.tune")
    ASHAScheduler = import_module(f"{backend}.tune.schedulers").ASHAScheduler
    RunConfig = getattr(tune, "RunConfig", None) or import_module(f"{backend}.train").RunConfig

    t0 = time.perf_counter()
    ray.init(num_cpus=2, **({"include_dashboard": False, "address": "local"} if backend == "ray"
                            else {}))
    init_s = time.perf_counter() - t0

    @ray.remote
    def warm():
        return 1

    ray.get(warm.remote())

    def objective(config):
        for step in range(config.get("steps", 10)):
            time.sleep(0.001)
            tune.report({"score": -(config["lr"] - 0.1) ** 2 - (config["m"] - 0.9) ** 2
                         + step * 1e-4})

    storage = tempfile.mkdtemp(prefix=f"tune-bench-{backend}-")
    out = {"backend": backend, "init_s": init_s}
    t0 = time.perf_counter()
    grid = tune.Tuner(objective, param_space={"lr": tune.grid_search([0.001, 0.01, 0.1, 1.0]),
                                              "m": tune.grid_search([0.5, 0.8, 0.9, 0.99])},
                      tune_config=tune.TuneConfig(metric="score", mode="max"),
                      run_config=RunConfig(storage_path=storage, name="grid", verbose=0)).fit()
    out["grid_s"] = time.perf_counter() - t0
    out["grid_best"] = grid.get_best_result().config
    out["grid_trials"] = len(grid)

    t0 = time.perf_counter()
    asha = tune.Tuner(objective, param_space={"lr": tune.uniform(0.0, 0.2),
                                              "m": tune.uniform(0.5, 0.99), "steps": 27},
                      tune_config=tune.TuneConfig(metric="score", mode="max",
                                                  num_samples=asha_samples,
                                                  scheduler=ASHAScheduler(max_t=27, grace_period=1,
                                                                          reduction_factor=3)),
                      run_config=RunConfig(storage_path=storage, name="asha", verbose=0)).fit()
    out["asha_s"] = time.perf_counter() - t0
    best = asha.get_best_result()
    out["asha_best_score"] = best.metrics["score"]
    out["asha_trials"] = len(asha)
    out["asha_stopped_early"] = sum(1 for r in asha if r.metrics["training_iteration"] < 27)
    out["asha_reports"] = sum(r.metrics["training_iteration"] for r in asha)
    ray.shutdown()
    return out


def table(rows: list[dict]) -> str:
    by = {r["backend"]: r for r in rows}
    m, r = by.get("miniray"), by.get("ray")
    lines = ["| workload | Ray Tune | miniray.tune | ratio | target |", "|---|---|---|---|---|"]

    def ratio(key):
        return f"{r[key] / m[key]:.0f}x" if m and r else "–"

    def cell(row, key, extra=""):
        return f"{row[key]:.2f} s{extra}" if row else "not run"

    lines.append(f"| 16-point grid, 10 reports each | {cell(r, 'grid_s')} | {cell(m, 'grid_s')} | "
                 f"{ratio('grid_s')} | ≥20x (≤1.3 s) |")
    extra = lambda row: (f" ({row['asha_stopped_early']}/{row['asha_trials']} stopped early)"
                         if row else "")
    lines.append(f"| {m['asha_trials'] if m else 64}-sample ASHA (max_t 27, grace 1, rf 3) | "
                 f"{cell(r, 'asha_s', extra(r))} | {cell(m, 'asha_s', extra(m))} | "
                 f"{ratio('asha_s') if r and r['asha_trials'] == m['asha_trials'] else '–'} | ≥20x |")
    for row in rows:
        lines.append(f"\n{row['backend']}: init {row['init_s']:.2f} s; grid best {row['grid_best']};"
                     f" ASHA best score {row['asha_best_score']:.5f}, {row['asha_reports']} reports")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("miniray", "ray"))
    parser.add_argument("--ray-samples", type=int, default=64)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.backend:
        samples = args.ray_samples if args.backend == "ray" else 64
        print("JSON " + json.dumps(workload(args.backend, samples)), flush=True)
        return 0
    rows = [workload("miniray", 64)]
    print(json.dumps(rows[0]), flush=True)
    if not args.no_ray and os.path.exists(RAY_PYTHON):
        proc = subprocess.run([RAY_PYTHON, os.path.abspath(__file__), "--backend", "ray",
                               "--ray-samples", str(args.ray_samples)], capture_output=True,
                              text=True, timeout=900)
        line = [l for l in proc.stdout.splitlines() if l.startswith("JSON ")]
        if line:
            rows.append(json.loads(line[-1][5:]))
        else:
            print(proc.stderr[-2000:], file=sys.stderr)
    text = table(rows)
    print(text)
    if not args.no_write:
        stamp = time.strftime("%Y-%m-%d")
        base = os.path.join(HERE, "results", f"tune-{stamp}")
        with open(base + ".json", "w") as f:
            json.dump(rows, f, indent=1)
        with open(base + ".md", "w") as f:
            f.write(f"# Tune side by side ({stamp}, 2 CPUs)\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
