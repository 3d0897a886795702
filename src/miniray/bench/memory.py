"""Peak extra memory while 4 tasks read one large array: miniray, miniray built-in-store, Ray, Dask.

    python benchmarks/memory_sharing.py [--mib 400] [--quick] [--only miniray,miniray_store,ray,dask]
                                        [--python-for-peers /path/to/python] [--out DIR]

The seed's slide says Ray's shared-memory store lets workers on one node reuse memory where Dask
copies.  This measures it.  Each system runs in its own child (``memory_workloads.py``); a sampler
thread here reads PSS (``memory_full_info().pss``) of the child and all its descendants every ~20 ms::

    child:   init, warm-up ─ baseline_start ─ baseline_end ─ start ─ array, share, 4 tasks ─ end
    sampler: ··························· samples, each (t, Σ PSS over the process tree) ···········
    extra  = max(samples in [start, end]) − median(samples in [baseline_start, baseline_end])

Processes are read one after another, so a sample taken while a reader faults in shared pages
miscounts them (one process read before the sharing, the next after).  Each sample therefore reads
the tree forwards, then backwards, and only samples where both sums agree count towards the peak;
each task holds its array 0.3 s after reading it, so every system has a steady plateau to measure.

PSS splits each shared page among the processes that map it, so the sum counts a page once however
many tasks read it.  The figure reported is extra / array size (targets: miniray ≤2.05x, ≤1.05x when
built in the store; Ray ~1.99x, Dask ~3.0x here).  Results go to ``<out>/memory-sharing-<date>.*``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import psutil

from miniray.bench import harness
from miniray.bench.harness import fmt

SYSTEMS = ["miniray", "miniray_store", "ray", "dask"]
PEER_SYSTEMS = {"ray", "dask"}
LABELS = {"miniray": "miniray (put from driver)", "miniray_store": "miniray (built in store)",
          "ray": "Ray (put from driver)", "dask": "Dask (scatter, 2 process workers)"}
TARGETS = {"miniray": ("≤2.05x", 2.05), "miniray_store": ("≤1.05x", 1.05),
           "ray": ("(reference ~1.99x)", None), "dask": ("(reference ~3.0x)", None)}
MiB = 1 << 20


class TreeSampler:
    """Samples Σ PSS over a process and its descendants, every ``interval`` seconds, in a thread."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.samples: list[tuple] = []      # (CLOCK_MONOTONIC, Σ PSS forward, Σ PSS backward, processes)
        self.breakdown: dict[float, list] = {}              # t -> [(pid, name, MiB)] per sample
        self.marks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = None

    def on_event(self, msg: dict) -> None:
        if msg["event"] == "hello" and self._thread is None:
            self.start(msg["pid"])
        elif msg["event"] == "mark":
            self.marks[msg["name"]] = msg["t"]

    def start(self, pid: int) -> None:
        self._thread = threading.Thread(target=self._run, args=(pid,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, pid: int) -> None:
        try:
            root = psutil.Process(pid)
        except psutil.Error:
            return
        # Main loop: one sample per interval until stopped or the child is gone.
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            forward = [self._pss(p) for p in procs]
            backward = [self._pss(p) for p in reversed(procs)][::-1]
            self.samples.append((t0, sum(forward), sum(backward), len(procs)))
            self.breakdown[t0] = [(p.pid, self._name(p), round(f / MiB, 1))
                                  for p, f in zip(procs, forward)]
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    @staticmethod
    def _pss(p: psutil.Process) -> int:
        try:
            return p.memory_full_info().pss
        except psutil.Error:
            return 0

    @staticmethod
    def _name(p: psutil.Process) -> str:
        try:
            return p.name()
        except psutil.Error:
            return "?"

    def analyse(self, array_bytes: int) -> dict:
        """Peak over *consistent* samples: the processes are read one after another, so while pages
        change hands (a reader faulting in a shared array) a single pass over- or under-counts.  Each
        sample reads the tree forwards then backwards; it counts when both sums agree within
        ``tol``.  The plain maximum is kept as ``raw_peak_mib``."""
        m = self.marks
        need = ("baseline_start", "baseline_end", "start", "end")
        if not all(k in m for k in need):
            return {"error": f"phase marks missing: {sorted(m)}"}
        tol = max(4 * MiB, array_bytes // 100)
        base = [(f + b) / 2 for t, f, b, _ in self.samples
                if m["baseline_start"] <= t <= m["baseline_end"]]
        window = [s for s in self.samples if m["start"] <= s[0] <= m["end"] + 0.05]
        during = [s for s in window if abs(s[1] - s[2]) <= tol]
        consistent = bool(during)
        if not during:                      # nothing steady was seen: fall back to every sample
            during = window
        if not base or not during:
            return {"error": f"too few samples ({len(base)} baseline, {len(window)} during the "
                             "tasks)"}
        t_peak, f, b, procs = max(during, key=lambda s: (s[1] + s[2]) / 2)
        peak = (f + b) / 2
        t_base = max(t for t, *_ in self.samples if t <= m["baseline_end"])
        baseline = statistics.median(base)
        extra = peak - baseline
        gaps = [y[0] - x[0] for x, y in zip(self.samples, self.samples[1:])]
        return {"baseline_mib": baseline / MiB, "peak_mib": peak / MiB, "extra_mib": extra / MiB,
                "ratio": extra / array_bytes, "processes": procs,
                "raw_peak_mib": max(s[1] for s in window) / MiB,
                "samples_during": len(window), "consistent_samples": len(during) if consistent else 0,
                "sample_interval_ms": statistics.median(gaps) * 1e3 if gaps else None,
                "peak_by_process_mib": self.breakdown[t_peak],
                "baseline_by_process_mib": self.breakdown[t_base]}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="memory_sharing", description=__doc__.split("\n")[0])
    p.add_argument("--mib", type=int, default=400, help="array size in MiB (default 400)")
    harness.common_args(p, SYSTEMS)
    return harness.parse_common(p, argv, SYSTEMS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    script = os.path.join(harness.HERE, "memory_workloads.py")
    cfg = {"mib": args.mib, "hold_s": 0.3, "baseline_s": 0.3 if args.quick else 0.5}
    shm_before = harness.shm_entries()
    data = {"benchmark": "memory_sharing", "date": harness.today(), "quick": args.quick,
            "machine": harness.machine_info(), "config": cfg, "systems": {}}
    array_bytes = args.mib * MiB
    rows = []
    for system in [s for s in SYSTEMS if s in args.only]:
        python = args.python_for_peers if system in PEER_SYSTEMS else sys.executable
        print(f"running {system} ({python}) ...", flush=True)
        sampler = TreeSampler()
        try:
            run = harness.run_child(python, script, system, ["sharing"], cfg,
                                    timeout_for=lambda w: 120.0, on_event=sampler.on_event,
                                    log=lambda s: print(s, flush=True))
        finally:
            sampler.stop()
        res = run["results"].get("sharing") or {}
        if "unavailable" in run["meta"]:
            res = {"skipped": run["meta"]["unavailable"][:200]}
        elif "error" not in res and "skipped" not in res:
            res.update(sampler.analyse(array_bytes))
        run["sharing"] = res
        data["systems"][system] = run
        target, limit = TARGETS[system]
        if "skipped" in res or "error" in res:
            note = res.get("skipped") or str(res.get("error")).strip().splitlines()[-1][:200]
            rows.append([LABELS[system], "–", "–", "–", "–", "–", target, "–",
                         ("skipped: " if "skipped" in res else "error: ") + note])
            print(f"  {system}: {rows[-1][-1]}", flush=True)
            continue
        met = "–" if limit is None else ("yes" if res["ratio"] <= limit else "NO")
        raw = (res["raw_peak_mib"] - res["baseline_mib"]) * MiB / array_bytes
        rows.append([LABELS[system], fmt(res["baseline_mib"]), fmt(res["peak_mib"]),
                     fmt(res["extra_mib"]), f"{res['ratio']:.2f}x", f"{raw:.2f}x", target, met,
                     f"sums {'ok' if res.get('sums_ok') else 'WRONG'}, {res['processes']} processes, "
                     f"{res['seconds']:.2f} s"
                     + ("" if res["consistent_samples"] else ", no steady sample: single-pass max")])
    data["leftover_shm"] = harness.leftover_shm(shm_before, data["systems"])
    headers = ["system", "baseline PSS MiB", "peak PSS MiB", "extra MiB", "extra / array",
               "single-pass max", "target", "met", "notes"]
    lines = [f"# miniray memory sharing, {data['date']}{' (quick)' if args.quick else ''}", "",
             f"4 tasks each read one {args.mib} MiB float64 array and return its sum. Peak extra "
             "memory = max Σ PSS over the driver and all its descendant processes while the array "
             "exists, minus the same sum just before (sampled every ~20 ms).", "",
             *harness.setup_lines(data)]
    lines += ["", harness.markdown_table(headers, rows),
              "\"extra / array\" counts only samples where a forward and a backward pass over the "
              "processes agree (within 1% of the array); \"single-pass max\" is the plain maximum, "
              "inflated when a pass reads one process before and the next after pages became "
              "shared. Each task holds the array 0.3 s after reading it.", ""]
    if data["leftover_shm"]:
        lines.append(f"New /dev/shm entries after the run: {data['leftover_shm']}\n")
    leftovers = {s: r["meta"]["leftovers"] for s, r in data["systems"].items() if r["meta"]["leftovers"]}
    if leftovers:
        lines.append(f"Processes left after the run and killed: {leftovers}\n")
    markdown = "\n".join(lines)
    harness.report(args, "memory-sharing", data, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
