"""``miniray microbenchmark``: the same workloads on miniray, multiprocessing.Pool, Ray and Dask, side by side.

    python benchmarks/microbenchmark.py [--quick] [--only miniray,pool,ray,dask]
                                        [--python-for-peers /path/to/python] [--out DIR]

Each system runs in its own child process (``micro_workloads.py``, see ``harness``), one after the
other, so that one system's start-up, memory and background threads never disturb another's figures.
miniray and Pool run under this interpreter; Ray and Dask under ``--python-for-peers`` (default: this
interpreter), which may lack miniray.  A system that cannot be imported is skipped with a note.

The table gives absolute figures per system and, per peer, miniray's advantage as a factor where
>1 always means miniray is better (faster, or more per second), next to the target from the issues.
Results go to ``<out>/microbenchmark-<date>[-quick].json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import os
import sys

from miniray.bench import harness
from miniray.bench.harness import fmt

SYSTEMS = ["miniray", "pool", "ray", "dask"]
PEER_SYSTEMS = {"ray", "dask"}
LABELS = {"miniray": "miniray", "pool": "Pool", "ray": "Ray", "dask": "Dask"}
WORKLOADS = ["tiny_tasks", "round_trip", "chain", "put_100mib", "get_800mib", "actor_async",
             "actor_sync", "actor_nn", "big_arg_tasks"]

_BASE = dict(n_tiny=5000, n_round_trip=1000, n_chain=200, put_mib=100, put_reps=10, get_mib=800,
             get_reps=10, n_actor_async=5000, n_actor_sync=1000, nn_actors=2, nn_calls=1000,
             big_mib=800, big_reps=3)
# Latencies are medians of 1,000 calls: 200 tiny calls span only ~50 ms, and on a noisy VM one
# slow spell moves a median taken over so short a window.  Slow peers get fewer iterations so
# that the whole run stays within a few minutes.
FULL = {"miniray": {}, "pool": {},
        "ray": dict(n_tiny=1000, n_actor_async=1000, nn_calls=250),
        "dask": dict(n_tiny=500, n_round_trip=100, put_reps=3, get_reps=2, big_reps=2)}
_QUICK_BASE = dict(n_tiny=500, n_round_trip=30, n_chain=50, put_mib=16, put_reps=3, get_mib=64,
                   get_reps=3, n_actor_async=500, n_actor_sync=30, nn_calls=100, big_mib=64,
                   big_reps=1)
QUICK = {"miniray": {}, "pool": {}, "ray": dict(n_tiny=200, nn_calls=50),
         "dask": dict(n_tiny=100, n_round_trip=20)}


def config_for(system: str, quick: bool) -> dict:
    cfg = dict(_BASE)
    if quick:
        cfg.update(_QUICK_BASE)
    cfg.update((QUICK if quick else FULL)[system])
    return cfg


def timeout_for(quick: bool):
    slow = {"startup": 90, "init": 90, "shutdown": 60, "between": 60}

    def f(workload: str) -> float:
        return float(slow.get(workload, 60 if quick else 120))
    return f


# -- the table ------------------------------------------------------------------------------------------
# (label, workload, key, unit, higher is better, targets: [(peer, factor)] or "get")
def row_specs(cfg: dict) -> list[tuple]:
    return [
        ("init(num_cpus=2)", "init", "seconds", "s", False, [("ray", 20)]),
        ("tiny tasks, submit all then get", "tiny_tasks", "per_s", "tasks/s", True,
         [("ray", 10), ("pool", 1)]),
        ("round trip, 1 tiny task (median)", "round_trip", "median_ms", "ms", False, [("ray", 10)]),
        (f"{cfg['n_chain']}-task dependent chain", "chain", "seconds", "s", False, [("ray", 5)]),
        (f"put {cfg['put_mib']} MiB, first (cold)", "put_100mib", "cold_gib_s", "GiB/s", True,
         [("ray", 4)]),
        (f"put {cfg['put_mib']} MiB, repeated (warm, median)", "put_100mib", "warm_gib_s", "GiB/s",
         True, [("ray", 4)]),
        (f"get {cfg['get_mib']} MiB (median of repeats)", "get_800mib", "median_ms", "ms", False,
         "get"),
        (f"get {cfg['get_mib']} MiB, first get", "get_800mib", "first_ms", "ms", False, []),
        (f"get {cfg['get_mib']} MiB zero-copy (shared, read-only)", "get_800mib", "zero_copy", "",
         True, []),
        ("actor calls 1:1, async", "actor_async", "per_s", "calls/s", True, [("ray", 8)]),
        ("actor calls 1:1, sync (median)", "actor_sync", "median_ms", "ms", False, [("ray", 4)]),
        (f"actor calls n:n (n={cfg['nn_actors']}, caller tasks)", "actor_nn", "per_s", "calls/s",
         True, []),
        (f"4 tasks on a {cfg['big_mib']} MiB arg (median)", "big_arg_tasks", "median_s", "s", False,
         [("ray", 1)]),
        (f"4 tasks on a {cfg['big_mib']} MiB arg, first", "big_arg_tasks", "first_s", "s", False, []),
    ]


def _value(runs: dict, system: str, workload: str, key: str):
    """(value, display) for one cell; value is None when missing, failed or not applicable."""
    run = runs.get(system)
    if run is None:
        return None, "–"
    res = run["results"].get(workload)
    if res is None:
        return None, "–"
    if "error" in res:
        return None, "timeout" if "timed out" in str(res["error"]) else "error"
    v = res.get(key)
    if key == "zero_copy" and v is not None:
        v = bool(v and res.get("read_only"))
    return v, fmt(v)


def _factor(mine, theirs, higher_better: bool):
    if isinstance(mine, bool) or isinstance(theirs, bool) or not mine or not theirs:
        return None
    return mine / theirs if higher_better else theirs / mine


def _not_comparable(runs: dict, peer: str, workload: str, key: str) -> str:
    """Why miniray's figure and ``peer``'s are not the same thing, or ''.  A get that maps shared
    pages against one that copies 800 MiB gives a ratio in the tens of thousands that says nothing
    about speed."""
    if workload == "get_800mib" and key != "zero_copy":
        mine, theirs = (_value(runs, s, workload, "zero_copy")[0] for s in ("miniray", peer))
        if mine and theirs is False:
            return "n/a (copies)"
    return ""


def build_table(runs: dict, cfg: dict, workloads=WORKLOADS) -> tuple[list, list, list]:
    peers = [s for s in SYSTEMS if s != "miniray" and s in runs]
    shown = [s for s in SYSTEMS if s in runs]
    headers = ["figure", "unit", *(LABELS[s] for s in shown),
               *(f"miniray vs {LABELS[p]}" for p in peers), "target", "met"]
    rows, records = [], []
    for label, workload, key, unit, higher, targets in row_specs(cfg):
        if workload != "init" and workload not in workloads:
            continue
        values = {s: _value(runs, s, workload, key) for s in shown}
        factors = {p: _factor(values.get("miniray", (None,))[0], values[p][0], higher) for p in peers}
        apart = {p: _not_comparable(runs, p, workload, key) for p in peers}
        factors = {p: None if apart[p] else f for p, f in factors.items()}
        target, met = "", "–"
        if targets == "get":
            target = "≤1 ms, zero-copy"
            mine = values.get("miniray", (None,))[0]
            zero = _value(runs, "miniray", workload, "zero_copy")[0]
            if mine is not None:
                met = "yes" if mine <= 1.0 and zero else "NO"
        elif targets:
            target = ", ".join(f"≥{k:g}x {LABELS[p]}" for p, k in targets)
            checks = [factors.get(p) >= k for p, k in targets if factors.get(p) is not None]
            not_run = [LABELS[p] for p, _ in targets if p not in runs]
            if checks:
                met = "yes" if all(checks) else "NO"
            if not_run:   # a peer that was not installed is not a missed target
                met = f"{met} ({', '.join(not_run)} not run)" if checks else f"{' and '.join(not_run)} not run"
        rows.append([label, unit, *(values[s][1] for s in shown),
                     *((f"{fmt(factors[p])}x" if factors[p] is not None else apart[p] or "–")
                       for p in peers),
                     target, met])
        records.append({"figure": label, "workload": workload, "key": key, "unit": unit,
                        "higher_is_better": higher, "values": {s: values[s][0] for s in shown},
                        "miniray_factor_vs": factors, "target": target, "met": met})
    return headers, rows, records


def render_markdown(data: dict, headers, rows) -> str:
    m = data["machine"]
    lines = [f"# miniray microbenchmark, {data['date']}{' (quick)' if data['quick'] else ''}", "",
             f"Machine: {m['cpu']}, {m['usable_cores']} usable cores of {m['cores']}, "
             f"{m['ram_gib']} GiB RAM, {m['os']}.", ""]
    for s, run in data["systems"].items():
        meta = run["meta"]
        lines.append(f"- {harness.peer_note(LABELS[s], meta)}"
                     + (f" — skipped: {meta['unavailable']}" if "unavailable" in meta else ""))
    lines += ["", harness.markdown_table(headers, rows),
              "Factors: miniray's advantage over the peer, >1 means miniray is better (faster, or "
              "more per second). Pool's \"put\" is a plain memcpy (`np.copyto`) into fresh, then "
              "reused, memory: the floor for any store write. Dask's \"put\" is `client.scatter` and "
              "its \"get\" is `future.result()`, which copies. Ray runs with `include_dashboard=False`. "
              "One run on a shared machine: expect noise of ±30% on the small figures.", ""]
    def sizes_of(s, c):
        out = f"{LABELS[s]}: tiny {c['n_tiny']}, round trip {c['n_round_trip']}"
        if s in ("miniray", "ray"):
            out += (f", actor async {c['n_actor_async']}, actor sync {c['n_actor_sync']}, n:n "
                    f"{c['nn_calls']} calls per caller and actor")
        return out
    sizes = "; ".join(sizes_of(s, c) for s, c in data["config"].items() if s in data["systems"])
    lines += [f"Iterations: {sizes}.", ""]
    problems = [f"- {LABELS[s]} `{w}`: {str(r['error']).strip().splitlines()[-1][:300]}"
                for s, run in data["systems"].items() for w, r in run["results"].items()
                if isinstance(r, dict) and "error" in r]
    problems += [f"- {LABELS[s]}: processes left after the run and killed: {run['meta']['leftovers']}"
                 for s, run in data["systems"].items() if run["meta"].get("leftovers")]
    if problems:
        lines += ["Problems during the run:", "", *problems, ""]
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="miniray microbenchmark", description=__doc__.split("\n")[0])
    harness.common_args(p, SYSTEMS)
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help="comma-separated subset of: " + ",".join(WORKLOADS))
    args = harness.parse_common(p, argv, SYSTEMS)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {bad}; choose among {WORKLOADS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    script = os.path.join(harness.HERE, "micro_workloads.py")
    shm_before = harness.shm_entries()
    data = {"benchmark": "microbenchmark", "date": harness.today(), "quick": args.quick,
            "machine": harness.machine_info(), "config": {}, "systems": {}}
    for system in [s for s in SYSTEMS if s in args.only]:
        python = args.python_for_peers if system in PEER_SYSTEMS else sys.executable
        cfg = config_for(system, args.quick)
        data["config"][system] = cfg
        print(f"running {system} ({python}) ...", flush=True)
        run = harness.run_child(python, script, system, args.workloads, cfg,
                                timeout_for=timeout_for(args.quick),
                                log=lambda s: print(s, flush=True))
        if "unavailable" in run["meta"]:
            print(f"  {system} skipped: {run['meta']['unavailable'][:200]}", flush=True)
        data["systems"][system] = run
    leftover_shm = harness.leftover_shm(shm_before, data["systems"])
    data["leftover_shm"] = leftover_shm
    runs = {s: r for s, r in data["systems"].items() if "unavailable" not in r["meta"]}
    headers, rows, data["table"] = build_table(runs, config_for("miniray", args.quick),
                                            args.workloads)
    markdown = render_markdown(data, headers, rows)
    if leftover_shm:
        markdown += f"\nNew /dev/shm entries after the run: {leftover_shm}\n"
    harness.report(args, "microbenchmark", data, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
