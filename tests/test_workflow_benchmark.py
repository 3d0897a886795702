"""benchmarks/workflow.py runs and writes well-formed results (a smoke run; never a speed check)."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, SRC

pytestmark = pytest.mark.timeout(180, method="signal")


def test_workflow_benchmark_quick_run_writes_its_figures(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "workflow.py"), "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=170)
    assert proc.returncode == 0, proc.stderr
    (path,) = glob.glob(str(tmp_path / "workflow-*-quick.json"))
    data = json.load(open(path))
    for shape in ("chain", "fan"):
        assert data[shape]["execute_s"] > 0 and data[shape]["workflow_s"] > 0
    assert data["resume_steps"] == 50 and data["resume_s"] > 0
    assert "overhead per durable step" in open(path.replace(".json", ".md")).read()
