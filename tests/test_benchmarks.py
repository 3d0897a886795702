"""Smoke tests of benchmarks/: both scripts run in quick mode and write JSON of the expected shape.

They check keys and that the figures are positive numbers; they never assert a speed (a benchmark's
figures belong in its table, not in a test).  Each script runs as a subprocess, as a user would run
it, and writes into a temporary folder so that real results in benchmarks/results stay untouched.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "benchmarks")


def _run(script: str, *args: str, out) -> dict:
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = glob.glob(os.path.join(str(out), "*-quick.json"))
    assert len(found) == 1, (found, proc.stdout[-2000:])
    md = found[0][:-len(".json")] + ".md"
    assert os.path.exists(md) and "| " in open(md).read()
    with open(found[0]) as f:
        return json.load(f)


def _positive(d: dict, *keys: str) -> None:
    for k in keys:
        v = d.get(k)
        assert isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, (k, d)


@pytest.mark.timeout(150)
def test_microbenchmark_quick_miniray_and_pool(tmp_path):
    data = _run("microbenchmark.py", "--quick", "--only", "miniray,pool", out=tmp_path)
    assert data["quick"] is True and set(data["systems"]) == {"miniray", "pool"}
    for key in ("date", "machine", "config", "table", "leftover_shm"):
        assert key in data
    _positive(data["machine"], "cores", "ram_gib")
    assert data["leftover_shm"] == []

    mr = data["systems"]["miniray"]
    assert mr["meta"]["leftovers"] == [] and "unavailable" not in mr["meta"]
    res = mr["results"]
    errors = {w: r["error"] for w, r in res.items() if isinstance(r, dict) and "error" in r}
    assert not errors, errors
    _positive(res["init"], "seconds")
    _positive(res["tiny_tasks"], "per_s", "n")
    _positive(res["round_trip"], "median_ms", "p90_ms")
    _positive(res["chain"], "seconds", "n")
    _positive(res["put_100mib"], "cold_gib_s", "warm_gib_s")
    _positive(res["get_800mib"], "first_ms", "median_ms")
    assert isinstance(res["get_800mib"]["zero_copy"], bool) and res["get_800mib"]["correct"] is True
    _positive(res["actor_async"], "per_s")
    _positive(res["actor_sync"], "median_ms")
    _positive(res["actor_nn"], "per_s", "calls")
    _positive(res["big_arg_tasks"], "first_s", "median_s")

    pool = data["systems"]["pool"]["results"]
    for w, key in (("init", "seconds"), ("tiny_tasks", "per_s"), ("round_trip", "median_ms"),
                   ("put_100mib", "warm_gib_s")):
        _positive(pool[w], key)
    assert pool["chain"] is None and pool["actor_async"] is None      # Pool has no refs or actors

    rows = {r["workload"] + "." + r["key"]: r for r in data["table"]}
    assert set(rows["tiny_tasks.per_s"]["values"]) == {"miniray", "pool"}
    assert rows["tiny_tasks.per_s"]["miniray_factor_vs"]["pool"] > 0


@pytest.mark.timeout(150)
def test_memory_sharing_quick_miniray(tmp_path):
    data = _run("memory_sharing.py", "--quick", "--mib", "32", "--only", "miniray", out=tmp_path)
    assert set(data["systems"]) == {"miniray"} and data["config"]["mib"] == 32
    run = data["systems"]["miniray"]
    assert run["meta"]["leftovers"] == []
    res = run["sharing"]
    assert "error" not in res, res
    _positive(res, "baseline_mib", "peak_mib", "extra_mib", "ratio", "array_bytes", "seconds")
    assert res["sums_ok"] is True and res["array_bytes"] == 32 << 20
    assert res["peak_mib"] > res["baseline_mib"]
    assert data["leftover_shm"] == []


@pytest.mark.timeout(150)
def test_cold_paths_quick_miniray(tmp_path):
    data = _run("cold_paths.py", "--quick", "--runs", "1", "--only", "miniray", out=tmp_path)
    assert data["quick"] is True and len(data["rounds"]) == 1
    mr = data["rounds"][0]["miniray"]
    _positive(mr, "puts", "big_arg", "returns", "queued")
    md = open(glob.glob(os.path.join(str(tmp_path), "cold-paths-*-quick.md"))[0]).read()
    assert "5 puts of 100 MiB into fresh pages" in md and "not run" in md    # no Ray here
