"""The road to real Ray: the magics in a real kernel against real Ray, a 2-node Slurm job on Ray,
and the course on Ray (the seed's examples, every lesson, every exercise solution graded with full
marks for the tasks that apply on Ray, and the grader's time limits and clean-up on Ray).

These tests run only where Ray itself is installed (``.ci/run`` makes a separate venv with
``ray[default]`` and miniray, and runs ``pytest -m ray`` there); elsewhere they are skipped with
the reason.  Ray starts in 5-10 s on this machine, so each test module starts it once.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from miniray import engines

ray = pytest.importorskip("ray", reason="real Ray is not installed here: .ci/run's Ray leg "
                                        "installs it in its own venv (pip install 'ray[default]')")
pytestmark = [pytest.mark.ray, pytest.mark.notebook]


def run_cells(*sources: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    with engines.fresh_ray_env() as env:      # a Ray of its own, whatever else runs Ray here
        NotebookClient(nb, timeout=180, kernel_name="python3").execute(env=env)
    return nb


def outputs(cell) -> dict:
    """Plain text (streams and results) and the MIME types a cell showed."""
    text, mimes = [], set()
    for out in cell.outputs:
        if out.output_type == "stream":
            text.append(out.text)
        elif out.output_type == "error":
            raise AssertionError(f"{out.ename}: {out.evalue}")
        else:
            mimes.update(out.get("data", {}))
            text.append(out.get("data", {}).get("text/plain", ""))
    return {"text": "".join(text), "mimes": mimes}


@pytest.fixture(scope="module")
def magics_on_ray():
    return run_cells(
        "import ray, time\nray.init(num_cpus=2)\n%load_ext miniray_magics",
        "@ray.remote\ndef square(x):\n    time.sleep(0.1)\n    return x * x\n\n"
        "@ray.remote\nclass Counter:\n    def __init__(self):\n        self.n = 0\n"
        "    def add(self):\n        self.n += 1\n        return self.n\n\n"
        "c = Counter.remote()\nbig = ray.put(b'x' * 300_000)\nsmall = ray.put(5)",
        "%%taskgraph\nray.get([square.remote(i) for i in range(4)] + [c.add.remote()])",
        "%timeline",
        "%memory",
        "%dashboard",
        "ray.shutdown()",
    )


def test_taskgraph_draws_the_cells_tasks_from_rays_state(magics_on_ray):
    out = outputs(magics_on_ray.cells[2])
    assert "image/png" in out["mimes"]
    assert "4 × square" in out["text"] and "Counter.add" in out["text"], out["text"]
    assert "finished" in out["text"]


def test_taskgraph_on_ray_says_it_cannot_draw_arrows():
    nb = run_cells("import ray\nray.init(num_cpus=1)\n%load_ext miniray_magics",
                   "@ray.remote\ndef one():\n    return 1\n"
                   "@ray.remote\ndef plus(x):\n    return x + 1",
                   "%%taskgraph\ng = ray.get(plus.remote(one.remote()))",
                   "graph = _\nfrom miniray_magics.draw_graph import _default_title\n"
                   "print(graph.number_of_edges(), '|', _default_title(graph))",
                   "ray.shutdown()")
    text = outputs(nb.cells[3])["text"]
    assert text.startswith("0 |") and "arrows not drawn" in text, text


def test_timeline_has_a_row_per_worker_and_the_actor(magics_on_ray):
    out = outputs(magics_on_ray.cells[3])
    assert "image/png" in out["mimes"]
    assert "Counter" in out["text"] and "6 tasks" in out["text"], out["text"]


def test_memory_lists_rays_objects_once_each(magics_on_ray):
    out = outputs(magics_on_ray.cells[4])
    assert "image/png" in out["mimes"] and "text/html" in out["mimes"]
    assert "293.0 KiB" in out["text"], out["text"]        # the 300,000-byte put, in shared memory
    assert "-1 B" not in out["text"]                       # actor handles are not objects


def test_dashboard_panel_renders_on_ray(magics_on_ray):
    assert "application/vnd.jupyter.widget-view+json" in outputs(magics_on_ray.cells[5])["mimes"]


# ------------------------------------------------------------------------------ Slurm with Ray
RAY_JOB = """\
import os, time
import ray
ray.init()                                   # joins the job's cluster (RAY_ADDRESS)
@ray.remote(scheduling_strategy="SPREAD")
def where(i):
    time.sleep(0.5)
    return ray.get_runtime_context().get_node_id()
alive = [n for n in ray.nodes() if n["Alive"]]
print("engine:", ray.__name__, "nodes:", len(alive))
print("used:", len(set(ray.get([where.remote(i) for i in range(8)]))))
print("address:", os.environ["RAY_ADDRESS"])
"""


@pytest.mark.slurm
def test_two_node_slurm_job_runs_on_a_real_ray_cluster(slurm_cluster, tmp_path, capsys):
    """A real 2-node job: `ray start --head` on n1, `ray start --address` on n2, the script on the
    head sees both nodes and uses both, and the job leaves nothing running."""
    from slurm_fixtures import wait_for
    from test_slurm import job_processes

    from miniray.launchers.slurm import main

    (tmp_path / "job.py").write_text(RAY_JOB)
    rc = main(["submit", "--engine", "ray", "--nodes", "2", "--cpus-per-task", "1", "--job-name",
               "miniray-test-ray", "--output", str(tmp_path / "out-%j.txt"), "--wait", "--",
               sys.executable, str(tmp_path / "job.py")])
    job_id = re.search(r"submitted job (\d+)", capsys.readouterr().out).group(1)
    text = (tmp_path / f"out-{job_id}.txt").read_text()
    assert rc == 0, text
    assert "engine: ray nodes: 2" in text and "used: 2" in text, text
    assert wait_for(lambda: not job_processes(job_id), timeout=60), job_processes(job_id)


# ------------------------------------------------------------------ the course, run on real Ray
ROOT = Path(__file__).resolve().parents[1]
# The core course (lessons 01-06 and their exercises); the libraries' lessons 07-10 are in
# tests/test_on_ray_libraries.py, since two of them cannot run on Ray (Workflows, RLlib).
CORE = ("01", "02", "03", "04", "05", "06")
LESSONS = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if p.name[:2] in CORE)
SOLUTIONS = sorted(p for p in (ROOT / "notebooks" / "exercises" / "solutions").glob("*.ipynb")
                   if p.name[:2] in CORE)
# Graded tests that only miniray can check (each calls pytest.skip("miniray only: ...") on Ray).
NOT_GRADED_ON_RAY = {
    "01_tasks": {"test_task_1_3_passes_refs_between_tasks"},
    "03_object_store": {"test_task_3_1_every_task_shares_one_reference", "test_task_3_2_ramp_built_in_the_store"},
    "04_dask": {"test_task_4_2_intermediates_are_freed"},
}


def test_seed_examples_run_on_ray():
    proc = engines.run_script(ROOT / "examples" / "seed_examples.py", "ray", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_on_ray(path):
    """Top to bottom in a fresh kernel on real Ray (nbclient raises on any error outside a
    ``raises-exception`` cell), with exactly the tagged cells left out, each with its reason."""
    nb, skipped, _ = engines.run_notebook(path, "ray", timeout=240)
    tagged = [i for i, c in enumerate(nbformat.read(path, as_version=4).cells)
              if c.cell_type == "code" and engines.is_miniray_only(c)]
    assert [i for i, _ in skipped] == tagged and all(why for _, why in skipped), skipped
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*(import|from) miniray\b(?!_)", sources, re.M), "a cell still imports miniray"
    if path.stem == "04_ray_vs_dask":       # Dask collections computed by ray.util.dask
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert "computed by ray.util.dask" in text, text[-1000:]


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_gets_full_marks_on_ray(path):
    """``miniray grade --engine ray``: every test that applies on Ray passes; the miniray-only ones
    are listed as not graded here, never as failures."""
    proc = subprocess.run([sys.executable, "-m", "miniray.grading.cli", "--engine", "ray", str(path)],
                          capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    expected = NOT_GRADED_ON_RAY.get(path.stem, set())
    not_graded = proc.stdout.partition("Not graded here:")[2]
    assert all(name in not_graded for name in expected), proc.stdout
    assert ("skipped: not graded here" in proc.stdout) == bool(expected), proc.stdout


# ---------------------------------------------------------- the grader's time limits on Ray
STARTS_RAY = "import miniray as ray\nray.init(num_cpus=1)\n"
CHECK_CHILDREN = '''\
import psutil

def test_task_1_1_ray_state(nb, expect_up):
    deadlines = [e for _, e in nb.cell_errors.values() if type(e).__name__ == "Deadline"]
    assert bool(deadlines) != expect_up, nb.cell_errors
    assert nb.ray.is_initialized() == expect_up
    if not expect_up:   # nothing of the half-started Ray is left running under the sandbox
        assert psutil.Process().children(recursive=True) == []
'''


@pytest.mark.parametrize("ray_start_s, expect_up", [(60.0, True), (0.0, False)],
                         ids=["start-allowance", "deadline-mid-start"])
def test_sandbox_on_ray_allows_for_the_start_and_cleans_up_a_deadline(tmp_path, monkeypatch,
                                                                      ray_start_s, expect_up):
    """A 2 s cell limit: with the start allowance ``ray.init()`` completes; without it the Deadline
    rings inside ``ray.init()`` and the sandbox ends every process that half-started Ray left."""
    import tempfile

    import psutil
    from nbformat.v4 import new_markdown_cell

    from miniray.grading.runner import Sandbox

    ray_tmp = tempfile.mkdtemp(prefix="mr-")          # short: Ray's socket paths must fit
    monkeypatch.setenv("MINIRAY_ENGINE", "ray")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)         # marks this test's Ray processes
    notebook = tmp_path / "01_tasks.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("### Task 1.1"), new_code_cell(STARTS_RAY)]),
                   notebook)
    (tmp_path / "test_01_tasks.py").write_text(CHECK_CHILDREN)
    with Sandbox(str(notebook), test_timeout=30, cell_timeout=2, ray_start_s=ray_start_s) as box:
        outcome = box.run_test(str(tmp_path / "test_01_tasks.py"), "test_task_1_1_ray_state",
                               {"expect_up": expect_up})
    assert outcome.status == "passed", outcome
    left = [p for p in psutil.process_iter(["cmdline"]) if ray_tmp in " ".join(p.info["cmdline"] or [])]
    assert left == [], [p.info["cmdline"][:3] for p in left]
