"""The parent side of a benchmark run: one child process per system, timeouts, cleanup, result files.

    run_child(python, script, system, workloads, config)
        │ Popen(start_new_session) ──> child prints "@@BENCH {json}" lines (see child_protocol)
        │ reader thread: stdout lines ──> queue ──> main loop (below), which keeps a deadline per workload
        │ every line and every second: snapshot the child's descendants (Ray's raylet, Dask's nannies)
        │ a workload past its deadline: kill the whole tree, record "timeout", restart the child with
        │   the workloads still to run (init is measured again but the first figure is kept)
        └ at the end: wait for every process ever seen in the tree to exit, kill stragglers, report them

The parent never imports miniray, Ray or Dask; it needs only the standard library and psutil.  An
``on_event(msg)`` callback lets the memory benchmark sample PSS in step with the child's phases.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import queue
import sys
import subprocess
import tempfile
import threading
import time

import psutil

from miniray.bench.child_protocol import MARK

HERE = os.path.dirname(os.path.abspath(__file__))


def default_out_dir() -> str:
    """``benchmarks/results`` of the source checkout when there is one, else ``./benchmark-results``."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
    if os.path.isdir(os.path.join(repo, "benchmarks")):
        return os.path.join(repo, "benchmarks", "results")
    return os.path.abspath("benchmark-results")


class _Tree:
    """Every process seen under the child, kept so that none can outlive the run unnoticed."""

    def __init__(self, proc: subprocess.Popen):
        self.root = psutil.Process(proc.pid)
        self.seen: dict[int, psutil.Process] = {proc.pid: self.root}

    def snapshot(self) -> list[psutil.Process]:
        try:
            kids = self.root.children(recursive=True)
        except psutil.Error:
            kids = []
        for p in kids:
            self.seen.setdefault(p.pid, p)
        return [self.root, *kids]

    def kill_all(self) -> None:
        self.snapshot()
        for p in self.seen.values():
            try:
                p.kill()
            except psutil.Error:
                pass

    def reap(self, timeout: float = 15.0) -> list[str]:
        """Wait for every process ever seen to exit; kill and name those that did not."""
        procs = [p for p in self.seen.values() if p.pid != self.root.pid]
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        names = []
        for p in alive:
            try:
                names.append(f"{p.pid}:{p.name()}")
                p.kill()
            except psutil.Error:
                pass
        return names


def _reader(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def _tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def run_child(python: str, script: str, system: str, workloads: list[str], config: dict, *,
              timeout_for=lambda workload: 120.0, on_event=None, log=print) -> dict:
    """Run ``system``'s workloads in child processes; returns {"meta": {...}, "results": {...}}.

    Each result is the workload's dict, or {"error": text} (failed, crashed or timed out), or None
    (the system has no such workload).  ``meta`` has the child's hello line, "unavailable" when the
    system cannot be imported, and "leftovers" naming processes that had to be killed at the end.
    """
    meta: dict = {"interpreter": python, "restarts": 0, "leftovers": []}
    results: dict = {}
    remaining = list(workloads)
    while True:
        stderr = tempfile.NamedTemporaryFile(prefix=f"bench-{system}-", suffix=".err", delete=False)
        cmd = [python, script, "--system", system, "--workloads", ",".join(remaining),
               "--config", json.dumps(config)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                start_new_session=True)
        meta.setdefault("pids", []).append(proc.pid)
        tree = _Tree(proc)
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True).start()
        current, deadline, exited = "startup", time.monotonic() + timeout_for("startup"), False
        progressed, gone_at = False, None
        # Main loop: read event lines until the child says "exit", exits (its stdout may stay open
        # in a grandchild, so EOF is not enough), or the current workload's deadline passes.
        while True:
            try:
                line = q.get(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                line = ""
            tree.snapshot()
            if line is None:
                break
            if line.startswith(MARK):
                msg = json.loads(line[len(MARK):])
                if on_event is not None:
                    on_event(msg)
                ev, w = msg["event"], msg.get("workload")
                if ev == "hello":
                    meta.update({k: v for k, v in msg.items() if k not in ("event", "t")})
                elif ev == "unavailable":
                    meta["unavailable"] = msg["reason"]
                elif ev == "start":
                    current, deadline = w, time.monotonic() + timeout_for(w)
                elif ev in ("result", "error", "skip"):
                    value = {"result": msg.get("data"), "error": {"error": msg.get("error")},
                             "skip": None}[ev]
                    if w not in results or (ev == "result" and "error" in (results[w] or {})):
                        results[w] = value
                    if w in remaining:
                        remaining.remove(w)
                        progressed = True
                    current, deadline = "between", time.monotonic() + timeout_for("between")
                elif ev == "exit":
                    exited = True
                    break
                continue
            if line == "" and proc.poll() is not None:
                gone_at = gone_at or time.monotonic()
                if time.monotonic() - gone_at > 0.5:        # give the pipe time to drain
                    break
            if time.monotonic() > deadline:
                log(f"  [{system}] {current}: timed out after {timeout_for(current):.0f} s; killing")
                tree.kill_all()
                problem = {"error": f"timed out after {timeout_for(current):.0f} s"}
                if current in ("startup", "between"):
                    meta.setdefault("problems", []).append(f"{current}: {problem['error']}")
                else:
                    results.setdefault(current, problem)
                if current in ("startup", "init"):
                    for w in remaining:
                        results.setdefault(w, {"error": f"not run: {current} timed out"})
                    remaining = []
                elif current in remaining:
                    remaining.remove(current)
                    progressed = True
                break
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            tree.kill_all()
            proc.wait()
        meta["leftovers"] += tree.reap()
        stderr.close()
        err_tail = _tail(stderr.name)
        os.unlink(stderr.name)
        if not exited and current not in ("startup", "between", "shutdown") and current in remaining:
            results.setdefault(current, {"error": f"child exited (rc {proc.returncode}) during "
                                                  f"{current}: {err_tail[-1500:]}"})
            remaining.remove(current)
            progressed = True
        if not exited and proc.returncode and not results and "unavailable" not in meta:
            meta["unavailable"] = f"child failed (rc {proc.returncode}): {err_tail[-1500:]}"
        if "unavailable" in meta:
            return {"meta": meta, "results": {}}
        if exited or not remaining or not progressed:
            for w in remaining:
                results.setdefault(w, {"error": f"not run (child rc {proc.returncode}): "
                                                f"{err_tail[-800:]}"})
            return {"meta": meta, "results": results}
        meta["restarts"] += 1
        log(f"  [{system}] restarting the child for: {', '.join(remaining)}")


# -- machine description and result files -------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_info() -> dict:
    return {"hostname": platform.node(), "cpu": _cpu_model(), "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)),
            "ram_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def today() -> str:
    return datetime.date.today().isoformat()


def common_args(p, systems) -> None:
    """The options every benchmark script takes: which systems, which interpreter for the peers,
    where the results go."""
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in seconds")
    p.add_argument("--only", default=",".join(systems), help=f"comma-separated, among {','.join(systems)}")
    p.add_argument("--python-for-peers", default=sys.executable,
                   help="interpreter with ray / dask installed (default: this one)")
    p.add_argument("--out", default=None, help="results folder (default: benchmarks/results)")
    p.add_argument("--no-write", action="store_true", help="print the table only")


def parse_common(p, argv, systems):
    """Parse, and turn --only into a checked list of systems."""
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.only if s not in systems]
    if bad:
        p.error(f"unknown system(s) {bad}; choose among {systems}")
    return args


def report(args, name: str, data: dict, markdown: str) -> None:
    """Print the table; unless --no-write, save it with the JSON as ``<name>-<date>[-quick]``."""
    print()
    print(markdown)
    if args.no_write:
        print("(not saved: add --out DIR to keep the JSON and this table)")
    else:
        stem = f"{name}-{data['date']}" + ("-quick" if args.quick else "")
        paths = write_results(args.out or default_out_dir(), stem, data, markdown)
        print("wrote " + " and ".join(paths))


def write_results(out_dir: str, stem: str, data: dict, markdown: str) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, stem + ".json")
    md_path = os.path.join(out_dir, stem + ".md")
    with open(json_path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    with open(md_path, "w") as f:
        f.write(markdown)
    return json_path, md_path


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table padded to line up in a terminal too."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in rows)]) + "\n"


def fmt(x, digits: int = 3) -> str:
    """Three significant figures, no scientific notation for everyday sizes."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if x == 0:
        return "0"
    mag = abs(x)
    if mag >= 10 ** digits:
        return f"{x:,.0f}"
    decimals = max(0, digits - 1 - int(f"{mag:e}".split("e")[1]))
    return f"{x:.{decimals}f}"


def shm_entries(prefixes=("miniray", "plasma", "ray")) -> set[str]:
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith(prefixes)}
    except FileNotFoundError:
        return set()


def leftover_shm(before: set[str], runs: dict) -> list[str]:
    """New /dev/shm entries that belong to our children (miniray names its arena by the driver pid;
    other sessions on this machine may create and remove their own meanwhile)."""
    pids = [pid for run in runs.values() for pid in run["meta"].get("pids", [])]
    return sorted(n for n in shm_entries() - before
                  if not n.startswith("miniray") or any(f"_{pid}_" in n for pid in pids))


def peer_note(system: str, meta: dict) -> str:
    v = meta.get("versions", {})
    bits = [f"Python {meta.get('python', '?')}"] + [f"{k} {v[k]}" for k in sorted(v)]
    return f"{system}: " + ", ".join(bits)


def setup_lines(data: dict) -> list[str]:
    """The machine line and one line per system that ran, for the top of a results file."""
    m = data["machine"]
    lines = [f"Machine: {m['cpu']}, {m['usable_cores']} usable cores, {m['ram_gib']} GiB RAM.", ""]
    return lines + [f"- {peer_note(s, r['meta'])}" for s, r in data["systems"].items()
                    if "unavailable" not in r["meta"]]
