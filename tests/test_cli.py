"""The ``miniray`` command's own behaviour (issue 20 item 10 and item 8): help that says what each
command does, help requests that never act, and a microbenchmark that leaves the checkout alone."""
from __future__ import annotations

import os
import subprocess
import sys

from helpers import REPO, SRC

from miniray.bench.microbenchmark import build_table, config_for


def _cli(*args, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "miniray.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)


def test_help_says_what_each_command_does_not_where_its_source_is():
    out = _cli("--help").stdout
    for verb in ("slides", "grade", "memory", "microbenchmark", "start", "stop", "status", "slurm"):
        assert f"  {verb}" in out or f"| {verb}" in out, (verb, out)
    assert ".py" not in out and "grade your exercise notebook" in out


def test_help_for_stop_and_memory_prints_usage_and_touches_nothing():
    for verb in ("stop", "memory"):
        run = _cli(verb, "--help")
        assert run.returncode == 0 and run.stdout.startswith(f"usage: miniray {verb}"), run.stdout
        assert "stopped" not in run.stdout and "Object store" not in run.stdout


def test_microbenchmark_writes_nothing_unless_asked(tmp_path):
    results = os.path.join(REPO, "benchmarks", "results")
    before = sorted(os.listdir(results))
    run = _cli("microbenchmark", "--quick", "--only", "miniray", "--workloads", "tiny_tasks",
               cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "(not saved: add --out DIR" in run.stdout
    assert sorted(os.listdir(results)) == before and not list(tmp_path.iterdir())


def test_missing_peers_are_not_missed_targets_and_copies_are_not_ratios():
    runs = {"miniray": {"meta": {}, "results": {
                "tiny_tasks": {"per_s": 30000.0},
                "get_800mib": {"median_ms": 0.02, "first_ms": 0.3, "zero_copy": True, "read_only": True}}},
            "pool": {"meta": {}, "results": {"tiny_tasks": {"per_s": 27000.0}}},
            "dask": {"meta": {}, "results": {
                "tiny_tasks": {"per_s": 500.0},
                "get_800mib": {"median_ms": 1591.0, "first_ms": 777.0, "zero_copy": False}}}}
    headers, rows, _ = build_table(runs, config_for("miniray", True), ["tiny_tasks", "get_800mib"])
    row = {r[0]: dict(zip(headers, r)) for r in rows}
    assert row["init(num_cpus=2)"]["met"] == "Ray not run"
    assert row["tiny tasks, submit all then get"]["met"] == "yes (Ray not run)"
    assert "partial" not in "".join(r["met"] for r in row.values())
    gets = [r for label, r in row.items() if label.startswith("get ") and "zero-copy" not in label]
    assert gets and all(r["miniray vs Dask"] == "n/a (copies)" for r in gets)
    assert row["tiny tasks, submit all then get"]["miniray vs Dask"] == "60.0x"
