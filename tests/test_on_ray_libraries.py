"""The libraries' lessons on real Ray (issue #23 "Libraries").

Lessons 07 (Data) and 08 (Tune) and their graded solutions run on Ray through ``miniray.engines``
(miniray's names spelt as Ray's; cells tagged ``miniray-only`` left out, each with its reason).
Lessons 09 (Workflows: Ray removed them after 2.47) and 10 (RLlib: Ray's needs PyTorch) are marked
so in their notebook metadata, and the runner and these tests skip them with that reason.

Run where Ray Data and Ray Tune are installed (``pip install 'ray[default,data,tune]'``):
``pytest -m ray tests/test_on_ray_libraries.py``.  Ray Tune's trials take seconds each here, so
lesson 08 takes minutes on Ray (it takes seconds on miniray).
"""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("ray", reason="real Ray is not installed here: .ci/run's Ray leg installs it "
                                  "in its own venv (pip install 'ray[default,data,tune]')")
pytestmark = [pytest.mark.ray, pytest.mark.notebook]

from miniray import engines  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "notebooks"
SOLUTIONS = LESSONS / "exercises" / "solutions"
NOT_ON_RAY = {"09_workflows": "Ray removed Workflows after 2.47", "10_rllib": "RLlib needs PyTorch"}


def _cluster_is_dead(address: str) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=1).close()
        return False
    except (OSError, ValueError):
        return True


@pytest.fixture(autouse=True, scope="module")
def no_stale_ray_address():
    """A ``ray_current_cluster`` file naming a dead cluster makes ``ray.init()`` wait for it."""
    stale = Path("/tmp/ray/ray_current_cluster")
    try:
        if _cluster_is_dead(stale.read_text()):
            stale.unlink()
    except OSError:
        pass


def _library_needs(name: str) -> None:
    module = {"07_data": "ray.data", "08_tune": "ray.tune"}[name]
    pytest.importorskip(module, reason=f"{module} is not installed: pip install "
                                       "'ray[default,data,tune]'")


@pytest.mark.parametrize("name", ["07_data", "08_tune", "09_workflows", "10_rllib"])
def test_library_lesson_runs_on_ray(name):
    path = next(LESSONS.glob(f"{name}.ipynb"))
    why = engines.notebook_skip_reason(nbformat.read(path, as_version=4), "ray")
    if name in NOT_ON_RAY:
        assert why == NOT_ON_RAY[name]
        pytest.skip(why)
    assert why is None
    _library_needs(name)
    nb, skipped, _ = engines.run_notebook(path, "ray", timeout=400)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error" and "raises-exception" not in c.metadata.get("tags", [])]
    assert not errors, errors
    # Every left-out cell says why; the rest is plain Ray API.
    assert all(reason and "miniray" in reason.lower() for _, reason in skipped), skipped


@pytest.mark.parametrize("name", ["07_data", "08_tune", "09_workflows", "10_rllib"])
def test_library_exercise_solution_grades_on_ray(name):
    path = SOLUTIONS / f"{name}.ipynb"
    why = engines.notebook_skip_reason(nbformat.read(path, as_version=4), "ray")
    if name in NOT_ON_RAY:
        assert why == NOT_ON_RAY[name]
        pytest.skip(why)
    _library_needs(name)
    # A Ray of its own, whatever else runs; Ray Tune's trials take seconds each, hence the timeout.
    with engines.fresh_ray_env() as env:
        proc = subprocess.run([sys.executable, "-m", "miniray.grading.cli", "--engine", "ray",
                               "--timeout", "200", str(path)], capture_output=True, text=True, timeout=900, env=env,
                              cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_the_runner_skips_the_lessons_ray_cannot_run_saying_why(capsys):
    paths = [str(LESSONS / f"{name}.ipynb") for name in NOT_ON_RAY]
    assert engines.main(["run", "--engine", "ray", *paths]) == 0
    out = capsys.readouterr().out
    for name, why in NOT_ON_RAY.items():
        assert f"skipped {LESSONS / name}.ipynb on ray: {why}" in out, out
